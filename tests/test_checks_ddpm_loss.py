"""The lesson 02 check passes a correct training loss and names the cause of typical wrong ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sdcourse.checks import CheckFailed, check_ddpm_loss
from sdcourse.train import ddpm_loss


def reference(model, schedule, x0, gen):
    t = torch.randint(0, schedule.num_steps, (x0.shape[0],), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    ab = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # Eq. 4
    return F.mse_loss(model(x_t, t), eps)


def wrong(target="eps", use_alpha=False, t_low=0, t_high_extra=0):
    def loss(model, schedule, x0, gen):
        t = torch.randint(t_low, schedule.num_steps + t_high_extra, (x0.shape[0],), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        table = schedule.alphas if use_alpha else schedule.alphas_cumprod
        ab = table[t.clamp(max=schedule.num_steps - 1)].reshape(-1, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        out = model(x_t, t)
        return F.mse_loss(out, {"eps": eps, "x0": x0, "x_t": x_t}[target])
    return loss


def test_reference_passes(capsys):
    check_ddpm_loss(reference, seed=0)
    assert "✓ ddpm_loss" in capsys.readouterr().out


def test_library_loss_passes():
    # sdcourse.train.ddpm_loss draws in the same order (no labels: no label-dropout draw)
    check_ddpm_loss(lambda m, s, x0, g: ddpm_loss(m, s, x0, None, g), seed=1)


@pytest.mark.parametrize("mistake, cause", [
    (wrong(target="x0"), "with x0"),
    (wrong(target="x_t"), "with x_t"),
    (wrong(use_alpha=True), "alpha-bar_t"),
    (wrong(t_low=1), "1..T-1"),
])
def test_mistakes_are_named(mistake, cause):
    with pytest.raises(CheckFailed, match="Likely cause") as err:
        check_ddpm_loss(mistake, seed=2)
    assert cause in str(err.value)


def test_t_out_of_range_is_named():
    # t drawn from 1..T (Algorithm 1's 1-based range) reaches T, one past the last index
    with pytest.raises(CheckFailed, match="0..T-1"):
        check_ddpm_loss(wrong(t_low=1, t_high_extra=1), seed=3)

