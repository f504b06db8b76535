"""The lesson 11 checks pass correct steps (two ways of writing each), reject typical mistakes
naming their cause, and their references equal the library's solvers."""

from __future__ import annotations

import math
import re

import pytest
import torch

from sdcourse.checks import CheckFailed, check_dpm_solver_step, check_euler_step
from sdcourse.checks.faster_sampling import dpm_solver_2m_reference
from sdcourse.schedules import NoiseSchedule
from sdcourse.solvers import DPMSolverSampler, EulerSampler

# ---- Euler ----------------------------------------------------------------------------------------


def euler(eps, sigma, sigma_next, x):
    pred_x0 = x - sigma * eps
    return x + (sigma_next - sigma) * (x - pred_x0) / sigma


def euler_as_renoising(eps, sigma, sigma_next, x):  # also right: x0_hat, then noise of size sigma_next
    return (x - sigma * eps) + sigma_next * eps


EULER_MISTAKES = {
    "wrong way": (lambda e, s, n, x: x + (s - n) * e, "wrong way"),
    "pred x0": (lambda e, s, n, x: x - s * e, "returned the predicted x0"),
    "sigma squared": (lambda e, s, n, x: x + (n - s) * (s * e) / s**2, "not (x - x0_hat) / sigma^2"),
    "slope is x0": (lambda e, s, n, x: x + (n - s) * (x - s * e), "not x0_hat"),
    "sigma_next alone": (lambda e, s, n, x: x + n * e, "stepped by sigma_next alone"),
    "rescaled": (lambda e, s, n, x: x * n / s, "only rescaled x"),
}


@pytest.mark.parametrize("fn", [euler, euler_as_renoising])
def test_euler_check_passes_correct_answers(fn, capsys):
    check_euler_step(fn, seed=0)
    assert "✓ euler_step" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(EULER_MISTAKES))
@pytest.mark.parametrize("seed", range(4))
def test_euler_check_names_the_mistake(name, seed):
    fn, cause = EULER_MISTAKES[name]
    with pytest.raises(CheckFailed, match="Likely cause: .*" + re.escape(cause)):
        check_euler_step(fn, seed=seed)


def test_euler_reference_is_the_sampler():
    sampler = EulerSampler(NoiseSchedule.linear(1000), 7)
    gen = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 1, 4, 4, generator=gen), torch.randn(2, 1, 4, 4, generator=gen)
    out = sampler.step(eps, sampler.timesteps[0], x).prev_sample
    torch.testing.assert_close(out, euler(eps, float(sampler.sigmas[0]), float(sampler.sigmas[1]), x))


# ---- DPM-Solver++(2M) -----------------------------------------------------------------------------


def _terms(t_prev, t, t_next, schedule):
    ab = schedule.alphas_cumprod
    a = {k: ab[k].sqrt().item() for k in (t_prev, t, t_next)}
    s = {k: (1 - ab[k]).sqrt().item() for k in (t_prev, t, t_next)}
    lam = {k: math.log(a[k] / s[k]) for k in a}
    return a, s, lam


def dpm(x, x0, x0_prev, t_prev, t, t_next, schedule, *, r_inverse=False, half=True, sign=1, alpha_at="next",
        history=True, full_log_snr=False):
    a, s, lam = _terms(t_prev, t, t_next, schedule)
    scale = 2 if full_log_snr else 1
    h, h_prev = scale * (lam[t_next] - lam[t]), scale * (lam[t] - lam[t_prev])
    r = h / h_prev if r_inverse else h_prev / h
    d = x0 + ((x0 - x0_prev) / (2 * r if half else r) if history else 0)
    return (s[t_next] / s[t]) * x - sign * a[t_next if alpha_at == "next" else t] * math.expm1(-h) * d


def dpm_from_exponentials(x, x0, x0_prev, t_prev, t, t_next, schedule):  # also right, written in e^lambda
    a, s, lam = _terms(t_prev, t, t_next, schedule)
    h = lam[t_next] - lam[t]
    d = x0 + (x0 - x0_prev) * h / (2 * (lam[t] - lam[t_prev]))
    return s[t_next] * (x / s[t] + (math.exp(lam[t_next]) - math.exp(lam[t])) * d)


DPM_MISTAKES = {
    "no history": (dict(history=False), "first-order step"),
    "r inverted": (dict(r_inverse=True), "its inverse"),
    "no half": (dict(half=False), "factor 1/2 is missing"),
    "sign": (dict(sign=-1), "wrong sign in front of D"),
    "alpha_t": (dict(alpha_at="t"), "used alpha_t where alpha_next"),
    "log snr": (dict(full_log_snr=True), "HALF log-SNR"),
}


@pytest.mark.parametrize("fn", [dpm, dpm_from_exponentials])
def test_dpm_check_passes_correct_answers(fn, capsys):
    check_dpm_solver_step(fn, seed=0)
    assert "✓ dpm_solver_step" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(DPM_MISTAKES))
@pytest.mark.parametrize("seed", range(4))
def test_dpm_check_names_the_mistake(name, seed):
    kwargs, cause = DPM_MISTAKES[name]
    with pytest.raises(CheckFailed, match="Likely cause: .*" + re.escape(cause)):
        check_dpm_solver_step(lambda *args: dpm(*args, **kwargs), seed=seed)


def test_dpm_reference_is_the_sampler():
    """Two steps of DPMSolverSampler: the second is 2M with the first's x0 as history."""
    schedule = NoiseSchedule.linear(1000)
    sampler = DPMSolverSampler(schedule, 6)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 4, 4, generator=gen, dtype=torch.float64)
    eps0, eps1 = (torch.randn(2, 1, 4, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    first = sampler.step(eps0, sampler.timesteps[0], x)
    second = sampler.step(eps1, sampler.timesteps[1], first.prev_sample)
    t_prev, t, t_next = (int(v) for v in sampler.timesteps[:3])
    expected, _ = dpm_solver_2m_reference(first.prev_sample, second.pred_x0, first.pred_x0, t_prev, t, t_next,
                                          schedule)
    torch.testing.assert_close(second.prev_sample, expected, rtol=1e-10, atol=1e-10)
