"""Lesson 07's checks pass the reference answers and reject typical wrong ones, naming the cause."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from sdcourse import checks, ldm


def test_checks_pass_the_reference_and_handwritten_answers():
    checks.check_scaling_factor(lambda z: 1 / z.std(), seed=0)
    checks.check_scaling_factor(lambda z: float(1 / z.flatten().std(unbiased=False)), seed=1)  # float, population std
    checks.check_to_diffusion_latents(ldm.to_diffusion_latents, seed=0)
    checks.check_to_diffusion_latents(lambda m, lv, e, s: F.pad(s * (m + torch.exp(lv / 2) * e), (0, 1, 0, 1)), seed=1)
    checks.check_from_diffusion_latents(ldm.from_diffusion_latents, seed=0)
    checks.check_from_diffusion_latents(lambda z, s: z[:, :, :7, :7] / s, seed=1)


@pytest.mark.parametrize("wrong,cause", [
    (lambda z: z.std(), "returned the standard deviation"),
    (lambda z: 1 / z.var(), "1 / variance"),
    (lambda z: 1 / z.pow(2).mean().sqrt(), "forgot to subtract the mean"),
    (lambda z: 1 / z.transpose(0, 1).flatten(1).std(1), "one factor per channel"),
    (lambda z: 1 / z[:, 0].std(), "first channel only"),
])
def test_check_scaling_factor_rejects_and_names_mistake(wrong, cause):
    with pytest.raises(checks.CheckFailed) as err:
        checks.check_scaling_factor(wrong, seed=2)
    assert cause in str(err.value)


def _z(m, lv, e):
    return m + torch.exp(lv / 2) * e


@pytest.mark.parametrize("wrong,cause", [
    (lambda m, lv, e, s: ldm.pad(_z(m, lv, e) / s), "divided by the scaling factor"),
    (lambda m, lv, e, s: ldm.pad(_z(m, lv, e)), "forgot the scaling factor"),
    (lambda m, lv, e, s: ldm.pad(s * (m + lv.exp() * e)), "exp(logvar) (the variance)"),
    (lambda m, lv, e, s: ldm.pad(s * m), "used the mean only"),
    (lambda m, lv, e, s: F.pad(s * _z(m, lv, e), (1, 0, 1, 0)), "padded on the top and left"),
    (lambda m, lv, e, s: s * _z(m, lv, e), "forgot to pad"),
])
def test_check_to_diffusion_latents_rejects_and_names_mistake(wrong, cause):
    with pytest.raises(checks.CheckFailed) as err:
        checks.check_to_diffusion_latents(wrong, seed=2)
    assert cause in str(err.value)


@pytest.mark.parametrize("wrong,cause", [
    (lambda z, s: z[..., :7, :7] * s, "multiplied by the scaling factor"),
    (lambda z, s: z[..., :7, :7], "forgot to divide"),
    (lambda z, s: z[..., 1:, 1:] / s, "cropped the wrong corner"),
    (lambda z, s: z / s, "forgot to crop"),
])
def test_check_from_diffusion_latents_rejects_and_names_mistake(wrong, cause):
    with pytest.raises(checks.CheckFailed) as err:
        checks.check_from_diffusion_latents(wrong, seed=2)
    assert cause in str(err.value)


def test_to_and_from_diffusion_latents_invert_each_other():
    mean, logvar = torch.randn(3, 4, 7, 7), torch.randn(3, 4, 7, 7)
    eps = torch.zeros(3, 4, 7, 7)  # the mean itself
    z0 = ldm.to_diffusion_latents(mean, logvar, eps, 0.18215)
    assert z0.shape == (3, 4, 8, 8)
    torch.testing.assert_close(ldm.from_diffusion_latents(z0, 0.18215), mean)
