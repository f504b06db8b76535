"""Lesson 03 (reverse denoising): checks for one DDPM step (Ho et al. 2020 Algorithm 2, Eq. 11)
and one deterministic DDIM step (Song et al. 2020 Eq. 12, eta = 0), against ``DDPMSampler`` and
``DDIMSampler``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..samplers import DDIMSampler, DDPMSampler
from ..schedules import NoiseSchedule
from .core import call, compare, exercise, generator, passed

__all__ = ["check_ddim_step", "check_ddpm_step"]


def _random_step_inputs(gen: torch.Generator, batch: int = 3):
    x_t = torch.randn(batch, 1, 28, 28, generator=gen)
    eps = torch.randn(batch, 1, 28, 28, generator=gen)  # the model's output eps_theta(x_t, t)
    return x_t, eps


@exercise("ddpm_step")
def check_ddpm_step(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(model_output, t, x_t, schedule, noise) -> x_{t-1}``, Ho et al. Algorithm 2.

    ``model_output`` (eps_theta) and ``x_t`` are (B, 1, 28, 28), ``t`` a Python int, ``noise`` (z)
    x_t's shape. Expected: the mean 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha-bar_t) eps)
    (Eq. 11, no clipping) plus sqrt(beta-tilde_t) z, and no noise at the last step t = 0.
    The first three trials are always t = 0, T - 1 and 1 (0-based ends of the chain, where
    off-by-one mistakes show); ``trials`` below 3 still runs those three.
    """
    gen = generator(seed)
    T = 1000
    trials = max(trials, 3)
    for trial in range(trials):
        schedule = (NoiseSchedule.linear, NoiseSchedule.cosine)[trial % 2](T)
        # t = 0, T - 1, 1 (the off-by-one meets t = 1 after passing the others), then a small t
        # (where beta-tilde_t and beta_t differ most), then any t
        fixed = [0, T - 1, 1, int(torch.randint(2, 30, (1,), generator=gen))]
        t = fixed[trial] if trial < len(fixed) else int(torch.randint(0, T, (1,), generator=gen))
        x_t, eps = _random_step_inputs(gen)
        z = torch.randn(x_t.shape, generator=gen)
        got = call(fn, eps.clone(), t, x_t.clone(), schedule, z.clone(), what="ddpm_step")
        sampler = DDPMSampler(schedule, clip_sample=False)
        expected = sampler.step(eps.double(), t, x_t.double(), noise=z.double()).prev_sample
        x_t, eps, z = x_t.double(), eps.double(), z.double()
        a, b = schedule.alphas[t].item(), schedule.betas[t].item()
        ab = schedule.alphas_cumprod[t].item()
        var = schedule.posterior_variance[t].item()  # beta-tilde_t
        mean = (x_t - b / (1 - ab) ** 0.5 * eps) / a**0.5  # Eq. 11
        mistakes = {}
        if t == 0:
            wrapped = b * (1 - schedule.alphas_cumprod[-1].item()) / (1 - ab)
            mistakes.update({
                "added noise at the last step: at t = 0 Algorithm 2 sets z = 0, so return the mean "
                "alone (if t > 0: add noise).": mean + b**0.5 * z,
                "at t = 0, alphas_cumprod[t - 1] is alphas_cumprod[-1], the LAST element in "
                "Python; alpha-bar before the first step is 1 (use schedule.posterior_variance[t], "
                "and add no noise at t = 0).": mean + wrapped**0.5 * z,
            })
        if t == 1:
            mistakes["no noise at t = 1: Algorithm 2's \"z ~ N(0, I) if t > 1\" counts t from 1 to T; with "
                     "0-based t (0..T-1) the last step is t = 0, so add the noise if t > 0."] = mean
        clipped = DDPMSampler(schedule, clip_sample=True).step(eps, t, x_t, noise=z).prev_sample
        mistakes.update({
            "clipped x0_hat to [-1, 1] (DDPMSampler's default, clip_sample=True); this exercise is Eq. 11 "
            "as written, without clipping.": clipped,
            "used beta_t as the noise variance; DDPM here uses the posterior variance "
            "beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) beta_t "
            "(schedule.posterior_variance).":
                mean + (b**0.5 * z if t > 0 else 0),
            "multiplied the noise by the variance beta-tilde_t; the noise is scaled by the "
            "standard deviation sqrt(beta-tilde_t).": mean + var * z,
            "forgot to add the noise sqrt(beta-tilde_t) z for t > 0 (only t = 0 has none).":
                mean,
            "used alpha_t (schedule.alphas) where alpha-bar_t (schedule.alphas_cumprod) belongs in "
            "beta_t / sqrt(1 - alpha-bar_t).":
                (x_t - b / (1 - a) ** 0.5 * eps) / a**0.5 + var**0.5 * z,
            "used alpha-bar_t where alpha_t belongs in the factor 1 / sqrt(alpha_t).":
                (x_t - b / (1 - ab) ** 0.5 * eps) / ab**0.5 + var**0.5 * z,
            "wrong sign: the noise is subtracted, x_t - beta_t / sqrt(1 - alpha-bar_t) eps.":
                (x_t + b / (1 - ab) ** 0.5 * eps) / a**0.5 + var**0.5 * z,
            "forgot the factor 1 / sqrt(alpha_t) in front of the mean.":
                x_t - b / (1 - ab) ** 0.5 * eps + var**0.5 * z,
            "forgot the square root: the coefficient of eps is beta_t / sqrt(1 - alpha-bar_t).":
                (x_t - b / (1 - ab) * eps) / a**0.5 + var**0.5 * z,
        })
        compare("x_{t-1}", got, expected, mistakes=mistakes,
                context=f"{schedule.name} schedule, t={t}")
    passed("ddpm_step", trials)


def _ddim_eta0(x_t, eps, ab_t, ab_prev, sign=1.0, clip=False, direction_ab=None):
    """Eq. 12 with eta = 0 and knobs for the typical mistakes of ``check_ddim_step``."""
    x0 = (x_t - sign * (1 - ab_t) ** 0.5 * eps) / ab_t**0.5
    x0 = x0.clamp(-1, 1) if clip else x0
    d = ab_prev if direction_ab is None else direction_ab
    return ab_prev**0.5 * x0 + (1 - d) ** 0.5 * eps


@exercise("ddim_step")
def check_ddim_step(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(model_output, t, t_prev, x_t, schedule) -> x_{t_prev}`` (Song et al. Eq. 12).

    ``model_output`` (eps_theta) and ``x_t`` are (B, 1, 28, 28); ``t`` and ``t_prev`` Python ints,
    ``t_prev`` < 0 meaning the last step (alpha-bar = 1 there). Expected, without clipping:
    sqrt(alpha-bar_prev) x0_hat + sqrt(1 - alpha-bar_prev) eps with
    x0_hat = (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t).
    """
    gen = generator(seed)
    T = 1000
    for trial in range(trials):
        schedule = (NoiseSchedule.linear, NoiseSchedule.cosine)[trial % 2](T)
        n = (10, 20, 25, 50, 100)[int(torch.randint(0, 5, (1,), generator=gen))]
        sampler = DDIMSampler(schedule, n, eta=0.0, clip_sample=False)
        # the first step, the last step (t_prev < 0), then any step of this sampler's grid
        index = (0, n - 1)[trial] if trial < 2 else int(torch.randint(0, n, (1,), generator=gen))
        t = int(sampler.timesteps[index])
        t_prev = sampler.prev_timestep(t)
        x_t, eps = _random_step_inputs(gen)
        got = call(fn, eps.clone(), t, t_prev, x_t.clone(), schedule, what="ddim_step")
        expected = sampler.step(eps.double(), t, x_t.double()).prev_sample
        x_t, eps = x_t.double(), eps.double()
        ac = schedule.alphas_cumprod

        def ddim(ab_t, ab_prev, **kwargs):
            return _ddim_eta0(x_t, eps, ab_t, ab_prev, **kwargs)  # noqa: B023 (called in this trial)

        ab_t = ac[t].item()
        ab_prev = ac[t_prev].item() if t_prev >= 0 else 1.0
        a_prev = schedule.alphas[t_prev].item() if t_prev >= 0 else 1.0
        mistakes = {}
        if t_prev < 0:
            mistakes.update({
                f"at the last step t_prev = {t_prev} < 0, and alphas_cumprod[t_prev] counts from "
                "the END in Python; after the last step alpha-bar is 1 (the step returns x0_hat).":
                    ddim(ab_t, ac[t_prev].item()),
                "used alpha-bar_0 after the last step; there alpha-bar is 1, so the step returns "
                "x0_hat.": ddim(ab_t, ac[0].item()),
            })
        mistakes.update({
            "used alpha_t (schedule.alphas) where alpha-bar_t (schedule.alphas_cumprod) belongs; "
            "Song et al. write alpha_t for what we call alpha-bar_t.":
                ddim(schedule.alphas[t].item(), a_prev),
            "wrong sign in x0_hat: it is (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t).":
                ddim(ab_t, ab_prev, sign=-1.0),
            "used alpha-bar_{t-1}, one training step back; DDIM jumps to alpha-bar_{t_prev}.":
                ddim(ab_t, ac[t - 1].item() if t > 0 else 1.0),
            "the direction term uses sqrt(1 - alpha-bar_t); Eq. 12 has sqrt(1 - alpha-bar_prev).":
                ddim(ab_t, ab_prev, direction_ab=ab_t),
            "forgot the \"direction pointing to x_t\", sqrt(1 - alpha-bar_prev) eps.":
                ab_prev**0.5 * (x_t - (1 - ab_t) ** 0.5 * eps) / ab_t**0.5,
            "returned x0_hat; the step goes to x at t_prev: sqrt(alpha-bar_prev) x0_hat + "
            "sqrt(1 - alpha-bar_prev) eps.": (x_t - (1 - ab_t) ** 0.5 * eps) / ab_t**0.5,
            "clipped x0_hat to [-1, 1]; this exercise does not clip.":
                ddim(ab_t, ab_prev, clip=True),
        })
        compare("x_{t_prev}", got, expected, mistakes=mistakes,
                context=f"{schedule.name} schedule, {n} steps, t={t}, t_prev={t_prev}")
    passed("ddim_step", trials)
