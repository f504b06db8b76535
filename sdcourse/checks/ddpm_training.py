"""Lesson 02 (training a DDPM): the check for ``ddpm_loss``, Ho et al. 2020 Algorithm 1 and the
simple loss (Eq. 14), probed with a fixed random denoiser that records every t it is given."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..schedules import NoiseSchedule
from .core import CheckFailed, call, compare, exercise, generator, passed

__all__ = ["check_ddpm_loss"]


class _ProbeDenoiser(torch.nn.Module):
    """A fixed random eps_theta(x_t, t) = w * x_t + (t / T) v that records every t it is given."""

    def __init__(self, gen: torch.Generator, num_steps: int):
        super().__init__()
        self.w = torch.randn(1, 1, 28, 28, generator=gen) * 0.5
        self.v = torch.randn(1, 1, 28, 28, generator=gen)
        self.num_steps = num_steps
        self.seen: list[Tensor] = []

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        t = torch.as_tensor(t)
        self.seen.append(t.detach().reshape(-1).clone())
        return self.w * x_t + (t.double().reshape(-1, 1, 1, 1) / self.num_steps).to(x_t.dtype) * self.v


def _draws(draw_seed: int, T: int, shape: tuple, eps_first: bool, low: int = 0) -> tuple[Tensor, Tensor]:
    """(t, eps) as the learner's code draws them from ``torch.Generator().manual_seed(draw_seed)``."""
    replay = torch.Generator().manual_seed(draw_seed)
    if eps_first:
        eps = torch.randn(shape, generator=replay)
        return torch.randint(low, T, (shape[0],), generator=replay), eps
    t = torch.randint(low, T, (shape[0],), generator=replay)
    return t, torch.randn(shape, generator=replay)


def _losses(probe, schedule, x0: Tensor, t: Tensor, eps: Tensor) -> dict[str, Tensor]:
    """The simple loss and what each typical mistake gives, for one draw of (t, eps), in float64."""
    ab = schedule.alphas_cumprod.double()[t].reshape(-1, 1, 1, 1)
    a = schedule.alphas.double()[t].reshape(-1, 1, 1, 1)
    x0d, epsd = x0.double(), eps.double()
    x_t = ab.sqrt() * x0d + (1 - ab).sqrt() * epsd  # Eq. 4
    out = probe(x_t, t)
    return {
        "right": F.mse_loss(out, epsd),  # Eq. 14
        "x0": F.mse_loss(out, x0d),
        "x_t": F.mse_loss(out, x_t),
        "alpha": F.mse_loss(probe(a.sqrt() * x0d + (1 - a).sqrt() * epsd, t), epsd),
        "swapped": F.mse_loss(probe((1 - ab).sqrt() * x0d + ab.sqrt() * epsd, t), epsd),
        "sum": (out - epsd).pow(2).sum(),
        "pixel sum": (out - epsd).pow(2).flatten(1).sum(1).mean(),
    }


@exercise("ddpm_loss")
def check_ddpm_loss(fn: Callable, trials: int = 4, seed: int | None = None) -> None:
    """Check ``fn(model, schedule, x0, generator) -> loss``, Ho et al. Algorithm 1 (the simple loss).

    ``x0`` is (B, 1, 28, 28). Expected, drawing from ``generator`` in either order:
    ``t = torch.randint(0, schedule.num_steps, (B,))`` and ``eps = torch.randn(x0.shape)``;
    x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps (Eq. 4) and the mean over all elements
    of (eps - model(x_t, t))^2 (Eq. 14), a scalar.
    """
    gen = generator(seed)
    for trial in range(trials):
        T = (200, 1000)[trial % 2]
        schedule = (NoiseSchedule.cosine, NoiseSchedule.linear)[trial % 2](T)
        # first a large batch, so that every t in 0..T-1 (and any t out of range) almost surely occurs
        b = 2048 if trial == 0 else int(torch.randint(2, 9, (1,), generator=gen))
        x0 = torch.rand(b, 1, 28, 28, generator=gen) * 2 - 1
        draw_seed = int(torch.randint(0, 2**31, (1,), generator=gen))
        probe = _ProbeDenoiser(gen, T)
        got = call(fn, probe, schedule, x0.clone(), torch.Generator().manual_seed(draw_seed), what="ddpm_loss")
        if probe.seen:
            t_seen = torch.cat(probe.seen)
            if t_seen.min() < 0 or t_seen.max() > T - 1 or t_seen.is_floating_point():
                raise CheckFailed(
                    f"ddpm_loss: the model was called with t from {t_seen.min().item()} to {t_seen.max().item()}; "
                    f"t must be an integer tensor in 0..T-1 = 0..{T - 1} (torch.randint(0, schedule.num_steps, "
                    "(B,)), as schedule.alphas_cumprod is indexed from 0).")
        probe = probe.double()
        # both orders of the two draws are valid: t then eps, or eps then t
        orders = [_losses(probe, schedule, x0, *_draws(draw_seed, T, x0.shape, first)) for first in (False, True)]
        shifted = [_losses(probe, schedule, x0, *_draws(draw_seed, T, x0.shape, first, low=1))["right"]
                   for first in (False, True)]
        if any(isinstance(got, Tensor) and got.shape == () and torch.allclose(got.detach().double(), o["right"],
                                                                                rtol=1e-4, atol=1e-6)
               for o in orders):
            continue

        def both(key):
            return tuple(o[key] for o in orders)  # noqa: B023 (called in this trial)

        compare("ddpm loss", got, orders[0]["right"], context=f"B={b}, T={T}", rtol=1e-4, atol=1e-6, mistakes={
            "compared the prediction with x0; the network predicts the noise eps (Eq. 14).": both("x0"),
            "compared the prediction with x_t; the target is the noise eps that made x_t.": both("x_t"),
            "used alpha_t where Eq. 4 needs alpha-bar_t = schedule.alphas_cumprod[t] (the product up to t).":
                both("alpha"),
            "sampled t from 1..T-1; with 0-based indexing t runs over 0..T-1 (torch.randint(0, T, ...)).":
                tuple(shifted),
            "swapped the weights: x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps.": both("swapped"),
            "returned the sum of squares; the simple loss is their mean.": both("sum"),
            "summed the squared errors over each image's pixels (then averaged over the batch); the simple "
            "loss is the mean over every element, F.mse_loss(prediction, eps).": both("pixel sum"),
        })
    passed("ddpm_loss", trials)
