"""Issue 18's recipe search: a v-model samples through EpsFromV, and accuracy_curve trains and checks."""

from __future__ import annotations

import pytest
import torch

from sdcourse.experiments import ddpm_recipe as dr
from sdcourse.schedules import NoiseSchedule
from sdcourse.unet import UNetConfig


def test_eps_from_v_turns_the_true_v_into_the_true_eps():
    schedule = NoiseSchedule.linear(1000)
    x0, eps = torch.randn(2, 5, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0, 10, 300, 700, 999])
    x_t = schedule.add_noise(x0, eps, t)

    class TrueV(torch.nn.Module):
        def forward(self, x, t, labels=None):
            return schedule.v_target(x0, eps, t)

    torch.testing.assert_close(dr.EpsFromV(TrueV(), schedule)(x_t, t), eps, rtol=1e-4, atol=1e-4)
    assert isinstance(dr.eps_model(TrueV(), "v", schedule), dr.EpsFromV)
    assert not isinstance(dr.eps_model(TrueV(), "eps", schedule), dr.EpsFromV)


def test_every_recipe_changes_one_thing_of_the_baseline_or_as_many_as_its_name_joins():
    base = dr.RECIPES["baseline"].__dict__
    for name, recipe in dr.RECIPES.items():
        changed = [k for k, v in recipe.__dict__.items() if k != "name" and v != base[k]]
        assert len(changed) == (0 if name == "baseline" else len(name.split("+"))), (name, changed)


@pytest.mark.parametrize("name", ["baseline", "v-prediction", "min-snr-5"])
def test_accuracy_curve_checks_after_each_chunk(name):
    rows = dr.accuracy_curve(dr.RECIPES[name], [1, 3], eval_n=10, model_config=UNetConfig.tiny(), progress=False)
    assert [r["step"] for r in rows] == [1, 3]
    assert all(0 <= r["accuracy"] <= 1 and r["train_seconds"] > 0 for r in rows)
    assert rows[1]["train_seconds"] > rows[0]["train_seconds"]  # the second chunk continued the first


def test_accuracy_curve_names_bad_checks():
    with pytest.raises(ValueError, match="checks must be increasing"):
        dr.accuracy_curve(dr.RECIPES["baseline"], [3, 1], eval_n=10, model_config=UNetConfig.tiny())
