"""Lesson 10 (claims checked): a check for the articles' reverse step, the algebraic inverse of one
forward step (Ho et al. 2020, arXiv:2006.11239, Eq. 2), x_{t-1} = (x_t - sqrt(beta_t) eps) /
sqrt(1 - beta_t), against a float64 recomputation (``sdcourse.experiments.claims`` is tested equal)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import call, compare, exercise, generator, passed

__all__ = ["check_naive_reverse_step"]


@exercise("naive_reverse_step")
def check_naive_reverse_step(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x_t, eps, beta_t) -> x_{t-1}``: x_t and eps (B, C, H, W), beta_t a float in (0, 1);
    expected the x_{t-1} that one forward step x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps came from."""
    gen = generator(seed)
    for _ in range(trials):
        x_t = torch.randn(4, 1, 6, 6, generator=gen, dtype=torch.float64)
        eps = torch.randn(4, 1, 6, 6, generator=gen, dtype=torch.float64)
        beta = float(torch.empty(1, dtype=torch.float64).uniform_(1e-3, 0.5, generator=gen))
        got = call(fn, x_t, eps, beta, what="naive_reverse_step")
        root, keep = beta ** 0.5, (1.0 - beta) ** 0.5
        compare(
            "x_{t-1}",
            got,
            (x_t - root * eps) / keep,
            mistakes={
                "forgot to divide by sqrt(1 - beta_t): the forward step scaled x_{t-1} down first.":
                    x_t - root * eps,
                "subtracted beta_t * eps; the forward step adds sqrt(beta_t) * eps.": (x_t - beta * eps) / keep,
                "multiplied by sqrt(1 - beta_t) instead of dividing: that is another forward step's scaling.":
                    (x_t - root * eps) * keep,
                "added the noise instead of removing it.": (x_t + root * eps) / keep,
            },
            atol=1e-9,
            rtol=1e-9,
            context=f"beta_t={beta:.3g}",
        )
    passed("naive_reverse_step", trials)
