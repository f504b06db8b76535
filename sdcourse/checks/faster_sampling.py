"""Lesson 11 (faster sampling): checks for one Euler step in sigma (Karras et al. 2022,
Algorithm 1) and one DPM-Solver++(2M) step (Lu et al. 2022, Algorithm 2), each against a float64
recomputation that the tests hold equal to ``EulerSampler`` and ``DPMSolverSampler``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..schedules import NoiseSchedule
from ..solvers import schedule_sigmas
from .core import call, compare, exercise, generator, passed

__all__ = ["check_dpm_solver_step", "check_euler_step"]


def _pair(gen: torch.Generator, batch: int = 3):
    return torch.randn(batch, 1, 8, 8, generator=gen), torch.randn(batch, 1, 8, 8, generator=gen)


@exercise("euler_step")
def check_euler_step(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(model_output, sigma, sigma_next, x) -> x_next``: one Euler step of dx/dsigma.

    ``x`` is the sample in the sigma view, x = x_0 + sigma eps; ``model_output`` is eps_theta;
    ``sigma`` > ``sigma_next`` >= 0 are Python floats. Expected: x0_hat = x - sigma eps, the slope
    d = (x - x0_hat) / sigma, and x + (sigma_next - sigma) d.
    """
    gen = generator(seed)
    sigmas = schedule_sigmas(NoiseSchedule.linear(1000))
    for trial in range(trials):
        i = int(torch.randint(1, 1000, (1,), generator=gen))
        sigma = float(sigmas[i])
        sigma_next = 0.0 if trial == 0 else float(sigmas[int(torch.randint(0, i, (1,), generator=gen))])
        x, eps = _pair(gen)
        got = call(fn, eps.clone(), sigma, sigma_next, x.clone(), what="euler_step")
        x, eps = x.double(), eps.double()
        pred_x0 = x - sigma * eps
        expected = x + (sigma_next - sigma) * (x - pred_x0) / sigma
        mistakes = {
            "the step goes the wrong way: it is (sigma_next - sigma) times the slope, a negative "
            "number, since the noise level falls.": x + (sigma - sigma_next) * eps,
            "returned the predicted x0 (x - sigma eps) instead of stepping to sigma_next.": pred_x0,
            "the slope is (x - x0_hat) / sigma, not (x - x0_hat) / sigma^2.":
                x + (sigma_next - sigma) * (x - pred_x0) / sigma**2,
            "the slope is (x - x0_hat) / sigma (which is eps), not x0_hat.": x + (sigma_next - sigma) * pred_x0,
            "stepped by sigma_next alone; the step is sigma_next - sigma.": x + sigma_next * eps,
            "only rescaled x by sigma_next / sigma; the clean part x0_hat does not shrink.": x * sigma_next / sigma,
        }
        compare("x_next", got, expected, mistakes=mistakes, context=f"sigma={sigma:.4g} -> {sigma_next:.4g}")
    passed("euler_step", trials)


def dpm_solver_2m_reference(x, x0, x0_prev, t_prev: int, t: int, t_next: int, schedule: NoiseSchedule):
    """DPM-Solver++(2M) from t to t_next (Lu et al. 2022, Algorithm 2), float64, with the x0 of t_prev."""
    ab = schedule.alphas_cumprod.double()
    alpha = {k: math.sqrt(float(ab[k])) for k in (t_prev, t, t_next)}
    sigma = {k: math.sqrt(1 - float(ab[k])) for k in (t_prev, t, t_next)}
    lam = {k: math.log(alpha[k] / sigma[k]) for k in (t_prev, t, t_next)}  # half log-SNR
    h, h_prev = lam[t_next] - lam[t], lam[t] - lam[t_prev]
    r = h_prev / h
    data = x0 + (x0 - x0_prev) / (2 * r)
    return (sigma[t_next] / sigma[t]) * x - alpha[t_next] * math.expm1(-h) * data, dict(
        alpha=alpha, sigma=sigma, lam=lam, h=h, r=r)


@exercise("dpm_solver_step")
def check_dpm_solver_step(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x, x0, x0_prev, t_prev, t, t_next, schedule) -> x at t_next``: DPM-Solver++(2M).

    ``x`` is x_t; ``x0`` and ``x0_prev`` the model's predicted x_0 at t and at the previous
    timestep t_prev (> t > t_next, integers). With alpha_k = sqrt(alpha-bar_k), sigma_k =
    sqrt(1 - alpha-bar_k) and lambda_k = log(alpha_k / sigma_k): h = lambda_next - lambda_t,
    r = (lambda_t - lambda_prev) / h, D = x0 + (x0 - x0_prev) / (2 r), and the step is
    (sigma_next / sigma_t) x - alpha_next (e^{-h} - 1) D.
    """
    gen = generator(seed)
    for trial in range(trials):
        schedule = (NoiseSchedule.linear, NoiseSchedule.scaled_linear)[trial % 2](1000)
        t_next, t, t_prev = sorted(int(v) for v in torch.randperm(999, generator=gen)[:3] + 1)
        x, x0 = _pair(gen)
        x0_prev = x0 + 0.3 * torch.randn(x0.shape, generator=gen)
        got = call(fn, x.clone(), x0.clone(), x0_prev.clone(), t_prev, t, t_next, schedule, what="dpm_solver_step")
        x, x0, x0_prev = x.double(), x0.double(), x0_prev.double()
        expected, q = dpm_solver_2m_reference(x, x0, x0_prev, t_prev, t, t_next, schedule)
        a, s, h, r = q["alpha"], q["sigma"], q["h"], q["r"]
        ratio, lead = s[t_next] / s[t], -a[t_next] * math.expm1(-h)
        mistakes = {
            "used no history (D = x0): that is the first-order step (DDIM); 2M adds (x0 - x0_prev) / (2 r).":
                ratio * x + lead * x0,
            "r is h_prev / h = (lambda_t - lambda_prev) / (lambda_next - lambda_t); you used its inverse.":
                ratio * x + lead * (x0 + r * (x0 - x0_prev) / 2),
            "the correction is (x0 - x0_prev) / (2 r): the factor 1/2 is missing.":
                ratio * x + lead * (x0 + (x0 - x0_prev) / r),
            "wrong sign in front of D: the step is ... - alpha_next (e^{-h} - 1) D, and e^{-h} - 1 < 0.":
                ratio * x - lead * (x0 + (x0 - x0_prev) / (2 * r)),
            "used alpha_t where alpha_next belongs in front of D.":
                ratio * x - a[t] * math.expm1(-h) * (x0 + (x0 - x0_prev) / (2 * r)),
        }
        # lambda taken as the full log-SNR log(alpha^2 / sigma^2): every h doubles, r stays the same
        mistakes["lambda is the HALF log-SNR, log(alpha / sigma); log(alpha-bar / (1 - alpha-bar)) doubles h."] = (
            ratio * x - a[t_next] * math.expm1(-2 * h) * (x0 + (x0 - x0_prev) / (2 * r)))
        compare("x at t_next", got, expected, mistakes=mistakes,
                context=f"{schedule.name} schedule, t_prev={t_prev}, t={t}, t_next={t_next}")
    passed("dpm_solver_step", trials)
