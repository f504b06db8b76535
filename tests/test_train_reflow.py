"""`sdcourse train reflow` (lesson 12): the 2-rectified flow of the shipped flow_mnist, trained on
the teacher's own (sample, noise) pairs through the one training loop, resumed exactly on the very
same pairs. The pair count is made small here (the real run makes 4,000)."""

from __future__ import annotations

import json

import pytest
import torch

from sdcourse import checkpoint, flow, reflow_runs
from sdcourse.cli import main
from sdcourse.sampling import sample
from sdcourse.train import TrainConfig

TRAIN = ["train", "reflow", "--batch-size", "4", "--checkpoint-every", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def reflow_run(tmp_path_factory):
    """Four steps in one go, and two plus two with --resume, on 12 pairs of 2 Euler steps."""
    patch = pytest.MonkeyPatch()
    patch.setattr(reflow_runs, "REFLOW_PAIRS", 12)
    patch.setattr(reflow_runs, "REFLOW_ODE_STEPS", 2)
    whole, parts = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("parts")
    try:
        assert main(TRAIN + ["--steps", "4", "--out", str(whole / "r.safetensors"), "--json"]) == 0
        assert main(TRAIN + ["--steps", "2", "--out", str(parts / "r.safetensors"), "--json"]) == 0
        made = (parts / "r.pairs.safetensors").stat().st_mtime_ns
        assert main(TRAIN + ["--steps", "4", "--out", str(parts / "r.safetensors"), "--resume", "--json"]) == 0
        assert (parts / "r.pairs.safetensors").stat().st_mtime_ns == made  # the same pairs, not made again
    finally:
        patch.undo()
    return whole, parts


def test_the_pairs_are_the_teachers_euler_samples_of_their_noise(reflow_run):
    tensors, meta = checkpoint.load(reflow_run[0] / "r.pairs.safetensors")
    teacher = checkpoint.load_model("flow_mnist")
    pairs, labels = tensors["pairs"], tensors["labels"]
    assert pairs.shape == (12, 2, 28, 28) and torch.equal(labels, torch.arange(12) % 10)
    generator = torch.Generator().manual_seed(3)  # the run's seed draws the noise
    expected = sample(teacher.model, flow.FlowMatchEulerSampler(2), (12, 1, 28, 28), labels, generator, progress=False)
    torch.testing.assert_close(pairs[:, :1], expected)
    torch.testing.assert_close(pairs[:, 1:], torch.randn(12, 1, 28, 28, generator=torch.Generator().manual_seed(3)))
    assert meta["recipe"]["num_pairs"] == 12 and meta["recipe"]["ode_steps"] == 2 and meta["seconds"] > 0


def test_the_card_says_it_is_a_reflow_of_the_shipped_flow(reflow_run):
    card = json.loads((reflow_run[0] / "r.json").read_text())
    tensors, _ = checkpoint.load(checkpoint.checkpoint_file("flow_mnist"))
    assert card["kind"] == "flow" and card["timestep_sampling"] == "uniform" and card["steps"] == 4
    assert card["pairs_seconds"] > 0  # the time the teacher took to make the pairs
    assert card["reflow_of"]["teacher"] == "flow_mnist.safetensors"
    assert card["reflow_of"]["teacher_checksum"] == checkpoint.tensor_checksum(tensors)
    assert checkpoint.load_model("r", reflow_run[0]).kind == "flow"


def test_resume_is_exact(reflow_run):
    whole, _ = checkpoint.load(reflow_run[0] / "r.resume.safetensors")
    parts, _ = checkpoint.load(reflow_run[1] / "r.resume.safetensors")
    assert whole.keys() == parts.keys()
    assert all(torch.equal(whole[k], parts[k]) for k in whole)


def test_training_starts_from_the_teachers_weights(reflow_run, tmp_path):
    out = tmp_path / "zero.safetensors"
    reflow_runs.train_reflow(out, TrainConfig(steps=1, batch_size=4, lr=1e-12), progress=False, num_pairs=10,
                             ode_steps=1)
    got = checkpoint.load_model("zero", tmp_path).model.state_dict()
    teacher = checkpoint.load_model("flow_mnist").model.state_dict()
    for k in teacher:  # one step of 1e-12 leaves the starting weights: the teacher's
        torch.testing.assert_close(got[k], teacher[k], rtol=0, atol=1e-8)


def test_a_teacher_that_is_not_a_flow_is_refused(tmp_path):
    with pytest.raises(ValueError, match="kind 'flow'.*ddpm_mnist.*'ddpm'"):
        reflow_runs.train_reflow(tmp_path / "r.safetensors", TrainConfig(steps=1), teacher="ddpm_mnist", progress=False)


@pytest.mark.parametrize("name, value", [("num_pairs", 3), ("ode_steps", 0)])
def test_bad_pair_settings_are_named(name, value, tmp_path):
    with pytest.raises(ValueError, match=name):
        reflow_runs.train_reflow(tmp_path / "r.safetensors", TrainConfig(steps=1), progress=False, **{name: value})
