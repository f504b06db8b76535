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


def test_random_shift_moves_each_image_by_its_own_offset_within_max_shift():
    x = torch.full((64, 1, 12, 12), -1.0)
    x[:, 0, 5, 6] = 1.0  # one bright pixel, away from the border
    moved = dr.random_shift(x, 2, torch.Generator().manual_seed(0))
    assert moved.shape == x.shape and (moved == 1.0).sum() == 64 and (moved == -1.0).sum() == 64 * 143
    where = (moved[:, 0] == 1.0).nonzero()[:, 1:] - torch.tensor([5, 6])  # (dy, dx) of each image
    assert where.abs().max() == 2 and len({tuple(o) for o in where.tolist()}) > 10  # 25 offsets, each drawn
    for i, (dy, dx) in enumerate(where.tolist()):
        torch.testing.assert_close(moved[i], torch.roll(x[i], (dy, dx), dims=(1, 2)))


def test_random_shift_fills_the_uncovered_border_with_the_background():
    x = torch.ones(8, 1, 6, 6)
    moved = dr.random_shift(x, 3, torch.Generator().manual_seed(1))
    assert set(moved.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(dr.random_shift(x, 0, torch.Generator()), x)
    with pytest.raises(ValueError, match="max_shift"):
        dr.random_shift(x, -1, torch.Generator())


@pytest.mark.parametrize("name", ["baseline", "v-prediction", "min-snr-5", "shift-2"])
def test_accuracy_curve_checks_after_each_chunk(name):
    rows = dr.accuracy_curve(dr.RECIPES[name], [1, 3], eval_n=10, model_config=UNetConfig.tiny(), progress=False)
    assert [r["step"] for r in rows] == [1, 3]
    assert all(0 <= r["accuracy"] <= 1 and r["train_seconds"] > 0 for r in rows)
    assert rows[1]["train_seconds"] > rows[0]["train_seconds"]  # the second chunk continued the first


def test_the_width_recipe_builds_a_wider_unet():
    assert dr.RECIPES["baseline"].model_config() == UNetConfig.cpu()
    assert dr.RECIPES["width-24"].model_config().channels == (24, 48, 96)


def test_accuracy_curve_stops_at_the_accuracy_or_the_time_asked():
    tiny = UNetConfig.tiny()
    assert len(dr.accuracy_curve(dr.RECIPES["baseline"], [1, 2, 3], 10, model_config=tiny, stop_at=0.0,
                                 progress=False)) == 1
    assert len(dr.accuracy_curve(dr.RECIPES["baseline"], [1, 2, 3], 10, model_config=tiny, max_seconds=0.0,
                                 progress=False)) == 1


def test_accuracy_curve_names_bad_checks():
    with pytest.raises(ValueError, match="checks must be increasing"):
        dr.accuracy_curve(dr.RECIPES["baseline"], [3, 1], eval_n=10, model_config=UNetConfig.tiny())
