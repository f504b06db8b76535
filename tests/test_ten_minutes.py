"""Issue 18: `sdcourse train ddpm --preset ten-minutes --checkpoints DIR` (v-prediction on a 9-minute
budget, accuracy estimates on the bar), a v-model served as eps by load_model, and fit's monitor."""

from __future__ import annotations

import json

import pytest
import torch

from sdcourse import checkpoint
from sdcourse.cli import main
from sdcourse.samplers import DDIMSampler
from sdcourse.sampling import sample
from sdcourse.schedules import EpsFromV
from sdcourse.train import TrainConfig, fit
from sdcourse.train_command import TEN_MINUTES

RUN = ["train", "ddpm", "--preset", "ten-minutes", "--steps", "2", "--batch-size", "8", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def ten_minute_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tm")
    assert main(RUN + ["--checkpoints", str(folder)]) == 0
    return folder


def test_the_preset_writes_a_v_model_with_its_budget_into_the_folder(ten_minute_run):
    card = json.loads((ten_minute_run / "ddpm_mnist.json").read_text())
    assert card["prediction"] == "v" and card["kind"] == "ddpm"
    assert card["train_config"]["minutes"] == TEN_MINUTES["train"]["minutes"] == 9.0
    assert card["train_config"]["lr"] == TEN_MINUTES["train"]["lr"] and card["steps"] == 2  # --steps given wins


def test_a_v_model_is_loaded_behind_eps_from_v_and_samples_as_its_conversion(ten_minute_run):
    loaded = checkpoint.load_model("ddpm_mnist", ten_minute_run)
    assert isinstance(loaded.model, EpsFromV)
    labels = torch.tensor([3, 8])
    got = sample(loaded.model, DDIMSampler(loaded.schedule, 3), (2, 1, 28, 28), labels,
                 torch.Generator().manual_seed(0), progress=False)
    raw, schedule = loaded.model.model, loaded.schedule

    def by_hand(x, t, y):  # eps = sqrt(ab) v + sqrt(1 - ab) x_t, written out
        ab = schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        return ab.sqrt() * raw(x, t, y) + (1 - ab).sqrt() * x

    expected = sample(by_hand, DDIMSampler(schedule, 3), (2, 1, 28, 28), labels, torch.Generator().manual_seed(0),
                      progress=False)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not isinstance(checkpoint.load_model("ddpm_mnist").model, EpsFromV)  # the shipped eps model is as it was


def test_the_preset_is_refused_for_other_models(tmp_path, capsys):
    assert main(["train", "flow", "--preset", "ten-minutes", "--checkpoints", str(tmp_path)]) == 2
    assert "--preset ten-minutes is a recipe of `sdcourse train ddpm`" in capsys.readouterr().err


def test_out_and_checkpoints_together_are_refused(tmp_path, capsys):
    assert main(RUN + ["--out", str(tmp_path / "a.safetensors"), "--checkpoints", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err


def test_fit_calls_the_monitor_at_every_checkpoint():
    seen = []
    model = torch.nn.Linear(4, 4)
    data = (torch.randn(16, 4), torch.zeros(16, dtype=torch.long))

    def loss(m, x, y, gen):
        return m(x).pow(2).mean()

    def monitor(step, ema):
        seen.append((step, isinstance(ema, torch.nn.Linear)))
        return {"watched": step}

    fit(model, loss, data, TrainConfig(steps=6, batch_size=4, checkpoint_every=2), progress=False, monitor=monitor)
    assert seen == [(2, True), (4, True), (6, True)]
