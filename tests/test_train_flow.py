"""`sdcourse train flow` (lesson 12): the DDPM's UNet trained on the flow-matching loss through the
one training loop, resumed exactly, and sampled with its own Euler method by `sample`/`evaluate`."""

from __future__ import annotations

import json

import pytest
import torch

from sdcourse import checkpoint, digits
from sdcourse.cli import main
from sdcourse.flow import FlowMatchEulerSampler
from sdcourse.sampling import sample

TRAIN = ["train", "flow", "--preset", "tiny", "--batch-size", "8", "--checkpoint-every", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    """Four steps in one go, and two plus two with --resume, in two folders."""
    whole, parts = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("parts")
    assert main(TRAIN + ["--steps", "4", "--out", str(whole / "flow.safetensors"), "--json"]) == 0
    assert main(TRAIN + ["--steps", "2", "--out", str(parts / "flow.safetensors"), "--json"]) == 0
    assert main(TRAIN + ["--steps", "4", "--out", str(parts / "flow.safetensors"), "--resume", "--json"]) == 0
    return whole, parts


def test_the_card_says_what_was_trained(flow_run):
    card = json.loads((flow_run[0] / "flow.json").read_text())
    assert card["kind"] == "flow" and card["timestep_sampling"] == "logit_normal" and card["steps"] == 4
    assert len(card["commands"]) == 1  # (what pytest ran; from the shell, the sdcourse command)
    loaded = checkpoint.load_model("flow", flow_run[0])
    assert loaded.kind == "flow" and loaded.schedule is None  # a flow has no noise schedule


def test_resume_is_exact(flow_run):
    whole, _ = checkpoint.load(flow_run[0] / "flow.resume.safetensors")
    parts, meta = checkpoint.load(flow_run[1] / "flow.resume.safetensors")
    assert whole.keys() == parts.keys()
    assert all(torch.equal(whole[k], parts[k]) for k in whole)


def test_sampling_a_flow_checkpoint_is_flow_matching_euler(flow_run):
    labels = torch.tensor([1, 7])
    got = digits.from_checkpoint("flow", labels, steps=3, seed=5, directory=flow_run[0], progress=False)
    model = checkpoint.load_model("flow", flow_run[0]).model
    expected = sample(model, FlowMatchEulerSampler(3), (2, 1, 28, 28), labels, torch.Generator().manual_seed(5),
                      progress=False)
    assert torch.equal(got, expected)
    assert digits.sampler_for("flow", flow_run[0]) == "euler"


@pytest.mark.parametrize("extra", [["--sampler", "ddim"], ["--sampler", "euler", "--karras"]])
def test_a_flow_checkpoint_refuses_diffusion_samplers(extra, flow_run, tmp_path, capsys):
    argv = ["sample", "--model", "flow", "--checkpoints", str(flow_run[0]), "--n", "2",
            "--out", str(tmp_path / "x.png")] + extra
    assert main(argv) == 2
    assert "--sampler euler" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_sample_writes_png_with_the_default_sampler(flow_run, tmp_path, capsys):
    out = tmp_path / "flow.png"
    argv = ["sample", "--model", "flow", "--checkpoints", str(flow_run[0]), "--n", "2", "--steps", "2",
            "--out", str(out), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["sampler"] == "euler"
    assert out.stat().st_size > 0
