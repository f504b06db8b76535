"""Lesson 02 (training a DDPM): the check for ``ddpm_loss``, Ho et al. 2020 Algorithm 1 and the
simple loss (Eq. 14), probed with a fixed random denoiser that records every t it is given."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..schedules import NoiseSchedule
from .core import CheckFailed, call, compare, generator, passed

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


def check_ddpm_loss(fn: Callable, trials: int = 4, seed: int | None = None) -> None:
    """Check ``fn(model, schedule, x0, generator) -> loss``, Ho et al. Algorithm 1 (the simple loss).

    ``x0`` is (B, 1, 28, 28). Expected, drawing in this order from ``generator``:
    ``t = torch.randint(0, schedule.num_steps, (B,))``, then ``eps = torch.randn(x0.shape)``;
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
        replay = torch.Generator().manual_seed(draw_seed)
        t = torch.randint(0, T, (b,), generator=replay)
        eps = torch.randn(x0.shape, generator=replay)
        replay = torch.Generator().manual_seed(draw_seed)
        t_shifted = torch.randint(1, T, (b,), generator=replay)  # Algorithm 1's 1..T read as 1..T-1
        eps_shifted = torch.randn(x0.shape, generator=replay)
        ab = schedule.alphas_cumprod.double()[t].reshape(-1, 1, 1, 1)
        a = schedule.alphas.double()[t].reshape(-1, 1, 1, 1)
        x0d, epsd = x0.double(), eps.double()
        x_t = ab.sqrt() * x0d + (1 - ab).sqrt() * epsd  # Eq. 4
        probe = probe.double()
        out = probe(x_t, t)
        x_t_alpha = a.sqrt() * x0d + (1 - a).sqrt() * epsd
        ab_s = schedule.alphas_cumprod.double()[t_shifted].reshape(-1, 1, 1, 1)
        x_t_s = ab_s.sqrt() * x0d + (1 - ab_s).sqrt() * eps_shifted.double()
        compare("ddpm loss", got, F.mse_loss(out, epsd), context=f"B={b}, T={T}", rtol=1e-4, atol=1e-6, mistakes={
            "compared the prediction with x0; the network predicts the noise eps (Eq. 14).": F.mse_loss(out, x0d),
            "compared the prediction with x_t; the target is the noise eps that made x_t.": F.mse_loss(out, x_t),
            "used alpha_t where Eq. 4 needs alpha-bar_t = schedule.alphas_cumprod[t] (the product up to t).":
                F.mse_loss(probe(x_t_alpha, t), epsd),
            "sampled t from 1..T-1; with 0-based indexing t runs over 0..T-1 (torch.randint(0, T, ...)).":
                F.mse_loss(probe(x_t_s, t_shifted), eps_shifted.double()),
            "swapped the weights: x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps.":
                F.mse_loss(probe((1 - ab).sqrt() * x0d + ab.sqrt() * epsd, t), epsd),
            "returned the sum of squares; the simple loss is their mean.": (out - epsd).pow(2).sum(),
        })
    passed("ddpm_loss", trials)
