"""The lesson 03 checks pass a learner's correct step and name the cause of typical wrong ones."""

from __future__ import annotations

import pytest
import torch

from sdcourse.checks import CheckFailed, check_ddim_step, check_ddpm_step

# ---- DDPM: what a learner might write -----------------------------------------------------------


def ddpm_reference(eps, t, x_t, schedule, noise):
    a, b, ab = schedule.alphas[t], schedule.betas[t], schedule.alphas_cumprod[t]
    mean = (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt()  # Eq. 11
    if t == 0:
        return mean
    return mean + schedule.posterior_variance[t].sqrt() * noise


def ddpm_via_x0(
    eps, t, x_t, schedule, noise
):  # also correct: x0_hat, then the posterior mean (Eq. 7)
    x0 = schedule.predict_x0(x_t, eps, torch.tensor(t))
    mean = schedule.posterior_mean(x0, x_t, torch.tensor(t))
    return mean + (schedule.posterior_var(torch.tensor(t), like=x_t).sqrt() * noise if t > 0 else 0)


def _ddpm(eps, t, x_t, schedule, noise, *, var="tilde", noise_at_0=False, use_alpha=False, sign=1):
    a, b, ab = schedule.alphas[t], schedule.betas[t], schedule.alphas_cumprod[t]
    if use_alpha:
        ab = a
    mean = (x_t - sign * b / (1 - ab).sqrt() * eps) / a.sqrt()
    if t == 0 and not noise_at_0:
        return mean
    sigma2 = {
        "tilde": schedule.posterior_variance[t],
        "beta": b,
        # alpha-bar_{t-1} by plain indexing: wraps to the last element at t = 0
        "wrapped": b * (1 - schedule.alphas_cumprod[t - 1]) / (1 - schedule.alphas_cumprod[t]),
    }[var]
    return mean + sigma2.sqrt() * noise


DDPM_WRONG = {
    "noise at the last step": (
        lambda *args: _ddpm(*args, var="beta", noise_at_0=True),
        "added noise at the last step",
    ),
    "beta-tilde from wrapped index": (
        lambda *args: _ddpm(*args, var="wrapped", noise_at_0=True),
        r"alphas_cumprod\[-1\], the LAST element",
    ),
    "beta_t as variance": (
        lambda *args: _ddpm(*args, var="beta"),
        "used beta_t as the noise variance",
    ),
    "alpha_t for alpha-bar_t": (
        lambda *args: _ddpm(*args, use_alpha=True),
        r"used alpha_t \(schedule.alphas\) where alpha-bar_t",
    ),
    "wrong sign": (lambda *args: _ddpm(*args, sign=-1), "wrong sign"),
    "no noise": (lambda eps, t, x_t, s, z: _ddpm(eps, t, x_t, s, z * 0), "forgot to add the noise"),
    "variance as std": (
        lambda eps, t, x_t, s, z: _ddpm(eps, t, x_t, s, z * s.posterior_variance[t].sqrt()),
        "multiplied the noise by the variance",
    ),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fn", [ddpm_reference, ddpm_via_x0])
def test_check_ddpm_step_passes_correct(fn, seed, capsys):
    check_ddpm_step(fn, seed=seed)
    assert "ddpm_step: matches the reference" in capsys.readouterr().out


@pytest.mark.parametrize("case", list(DDPM_WRONG))
def test_check_ddpm_step_rejects_mistake(case):
    fn, cause = DDPM_WRONG[case]
    with pytest.raises(CheckFailed, match=r"(?s)x_\{t-1\}.*should be.*Likely cause: .*" + cause):
        check_ddpm_step(fn, seed=0)


def test_check_ddpm_step_reports_errors_and_shapes():
    with pytest.raises(CheckFailed, match="ddpm_step raised ZeroDivisionError"):
        check_ddpm_step(lambda *args: 1 / 0, seed=0)
    with pytest.raises(CheckFailed, match="expected shape"):
        check_ddpm_step(lambda eps, t, x_t, s, z: x_t[0], seed=0)


# ---- DDIM ---------------------------------------------------------------------------------------


def ddim_reference(eps, t, t_prev, x_t, schedule):
    ab_t = schedule.alphas_cumprod[t]
    ab_prev = schedule.alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()  # "predicted x_0", Eq. 12
    return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps  # Eq. 12 with sigma_t = 0


def _ddim(
    eps, t, t_prev, x_t, schedule, *, ac=None, sign=1, wrap=False, direction=True, clip=False
):
    ac = schedule.alphas_cumprod if ac is None else ac
    ab_t = ac[t]
    ab_prev = ac[t_prev] if (t_prev >= 0 or wrap) else torch.tensor(1.0)
    x0 = (x_t - sign * (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    x0 = x0.clamp(-1, 1) if clip else x0
    return ab_prev.sqrt() * x0 + ((1 - ab_prev).sqrt() * eps if direction else 0)


DDIM_WRONG = {
    "alpha_t for alpha-bar_t": (
        lambda *args: _ddim(*args, ac=args[-1].alphas),
        r"used alpha_t \(schedule.alphas\) where alpha-bar_t",
    ),
    "wrong sign": (lambda *args: _ddim(*args, sign=-1), "wrong sign in x0_hat"),
    "negative index wraps": (lambda *args: _ddim(*args, wrap=True), "counts from the END"),
    "no direction term": (lambda *args: _ddim(*args, direction=False), 'forgot the "direction'),
    "clipped": (lambda *args: _ddim(*args, clip=True), "clipped x0_hat"),
    "one training step back": (
        lambda eps, t, t_prev, x_t, s: ddim_reference(eps, t, t - 1, x_t, s),
        r"used alpha-bar_\{t-1\}, one training step back",
    ),
    "returned x0_hat": (
        lambda eps, t, t_prev, x_t, s: s.predict_x0(x_t, eps, torch.tensor(t)),
        "returned x0_hat",
    ),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_check_ddim_step_passes_correct(seed, capsys):
    check_ddim_step(ddim_reference, seed=seed)
    assert "ddim_step: matches the reference" in capsys.readouterr().out


@pytest.mark.parametrize("case", list(DDIM_WRONG))
def test_check_ddim_step_rejects_mistake(case):
    fn, cause = DDIM_WRONG[case]
    with pytest.raises(CheckFailed, match=r"(?s)x_\{t_prev\}.*should be.*Likely cause: .*" + cause):
        check_ddim_step(fn, seed=0)
