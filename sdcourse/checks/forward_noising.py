"""Lesson 01 (forward noising): checks for the linear schedule's alpha-bar, ``add_noise`` (the
closed form of q(x_t | x_0), Ho et al. 2020 Eq. 4) and the signal-to-noise ratio."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..schedules import NoiseSchedule
from .core import call, compare, exercise, generator, passed

__all__ = ["check_add_noise", "check_linear_alpha_bar", "check_snr"]


def _random_linear_args(gen: torch.Generator) -> tuple[int, float, float]:
    num_steps = int(torch.randint(2, 1001, (1,), generator=gen))
    beta_start = float(torch.empty(1).uniform_(1e-5, 1e-3, generator=gen))
    beta_end = float(torch.empty(1).uniform_(5e-3, 5e-2, generator=gen))
    return num_steps, beta_start, beta_end


@exercise("linear_alpha_bar")
def check_linear_alpha_bar(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(num_steps, beta_start, beta_end) -> alpha_bar`` (shape (T,)) for the linear schedule."""
    gen = generator(seed)
    for _ in range(trials):
        num_steps, beta_start, beta_end = _random_linear_args(gen)
        ref = NoiseSchedule.linear(num_steps, beta_start, beta_end)
        got = call(fn, num_steps, beta_start, beta_end, what="linear_alpha_bar")
        compare(
            "alpha_bar",
            got,
            ref.alphas_cumprod,
            mistakes={
                "returned alpha_t = 1 - beta_t; alpha-bar_t is the cumulative product of the "
                "alphas (torch.cumprod).": ref.alphas,
                "took the cumulative product of beta_t; it should be of alpha_t = 1 - beta_t.":
                    torch.cumprod(ref.betas, 0),
                "alpha-bar is shifted by one step: alpha-bar_t includes alpha_t itself "
                "(alpha-bar_0 = 1 - beta_1, not 1).": ref.alphas_cumprod_prev,
                "returned 1 - alpha-bar_t (the noise variance) instead of alpha-bar_t.":
                    1 - ref.alphas_cumprod,
                "returned sqrt(alpha-bar_t); the square root belongs in add_noise, not here.":
                    ref.alphas_cumprod.sqrt(),
            },
            atol=1e-6,
            rtol=1e-5,
            context=f"num_steps={num_steps}, beta_start={beta_start:.3g}, beta_end={beta_end:.3g}",
        )
    passed("linear_alpha_bar", trials)


def _random_batch(gen: torch.Generator, num_steps: int):
    batch = int(torch.randint(2, 9, (1,), generator=gen))
    x0 = torch.rand(batch, 1, 28, 28, generator=gen) * 2 - 1
    noise = torch.randn(batch, 1, 28, 28, generator=gen)
    t = torch.randint(0, num_steps, (batch,), generator=gen)
    return x0, noise, t


@exercise("add_noise")
def check_add_noise(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x0, noise, t, schedule) -> x_t`` against the closed form of q(x_t | x_0)."""
    gen = generator(seed)
    for trial in range(trials):
        schedule = (NoiseSchedule.linear, NoiseSchedule.cosine)[trial % 2](1000)
        x0, noise, t = _random_batch(gen, schedule.num_steps)
        if trial == 0:
            t[0], t[-1] = 0, schedule.num_steps - 1  # both ends of the schedule, every run
        got = call(fn, x0, noise, t, schedule, what="add_noise")
        ab = schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1)

        def _mix(alpha_bar):  # Eq. 4 with another alpha-bar (B,)
            alpha_bar = alpha_bar.float().view(-1, 1, 1, 1)
            return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise  # noqa: B023 (called in this trial)

        a = schedule.alphas[t].float().view(-1, 1, 1, 1)
        compare(
            "x_t",
            got,
            schedule.add_noise(x0, noise, t),
            mistakes={
                "used alpha_t (schedule.alphas) where alpha-bar_t (schedule.alphas_cumprod) "
                "belongs.": a.sqrt() * x0 + (1 - a).sqrt() * noise,
                "forgot the square roots: x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps.":
                    ab * x0 + (1 - ab) * noise,
                "swapped the coefficients: x0 gets sqrt(alpha-bar_t), the noise sqrt(1 - alpha-bar_t).":
                    (1 - ab).sqrt() * x0 + ab.sqrt() * noise,
                "used the same t for every image; index alpha-bar with the whole tensor t.":
                    schedule.add_noise(x0, noise, t[:1].expand_as(t)),
                "indexed alphas_cumprod[t - 1]: with 0-based t, alpha-bar_t is alphas_cumprod[t] "
                "(and at t = 0, index -1 is the LAST element in Python).": _mix(schedule.alphas_cumprod[t - 1]),
                "used alphas_cumprod_prev[t], which is alpha-bar_{t-1}; x_t needs alpha-bar_t = "
                "alphas_cumprod[t].": _mix(schedule.alphas_cumprod_prev[t]),
                "the square root only on x0's factor: the noise's factor is sqrt(1 - alpha-bar_t) too "
                "(the variances alpha-bar_t and 1 - alpha-bar_t add up to 1, not the factors).":
                    ab.sqrt() * x0 + (1 - ab) * noise,
                "the square root only on the noise's factor: x0's factor is sqrt(alpha-bar_t).":
                    ab * x0 + (1 - ab).sqrt() * noise,
            },
            context=f"{schedule.name} schedule, t={t.tolist()}",
        )
    passed("add_noise", trials)


@exercise("snr")
def check_snr(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(alpha_bar) -> snr``, the signal-to-noise ratio alpha-bar / (1 - alpha-bar)."""
    gen = generator(seed)
    for _ in range(trials):
        schedule = NoiseSchedule.linear(*_random_linear_args(gen))
        ab = schedule.alphas_cumprod
        got = call(fn, ab.clone(), what="snr")
        compare(
            "snr",
            got,
            schedule.snr(torch.arange(schedule.num_steps)),
            mistakes={
                "inverted: SNR is signal variance over noise variance, alpha-bar / (1 - alpha-bar).":
                    (1 - ab) / ab,
                "took square roots: SNR compares variances, not standard deviations.":
                    ab.sqrt() / (1 - ab).sqrt(),
                "returned decibels; return the plain ratio (the plot converts to dB).":
                    10 * torch.log10(ab / (1 - ab)),
            },
            rtol=1e-4,
        )
    passed("snr", trials)
