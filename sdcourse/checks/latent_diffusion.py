"""Lesson 07 (latent diffusion): checks for the latent scaling factor (Rombach et al. 2022,
Sec. 4.3.2) and the way to and from the diffusion model's latents, against ``sdcourse.ldm``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..ldm import from_diffusion_latents, pad, to_diffusion_latents
from .core import call, compare, exercise, generator, passed

__all__ = ["check_from_diffusion_latents", "check_scaling_factor", "check_to_diffusion_latents"]


def _random_latents(gen: torch.Generator) -> Tensor:
    """Latents (N, 4, 7, 7) with a non-zero mean and a spread far from 1, like an unscaled VAE's."""
    n = int(torch.randint(8, 33, (1,), generator=gen))
    spread = float(torch.empty(1).uniform_(0.2, 6.0, generator=gen))
    offset = float(torch.empty(1).uniform_(1.0, 3.0, generator=gen))
    channel_scale = torch.empty(1, 4, 1, 1).uniform_(0.5, 1.5, generator=gen)  # channels differ, as in SD
    return offset + spread * channel_scale * torch.randn(n, 4, 7, 7, generator=gen)


@exercise("scaling_factor")
def check_scaling_factor(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(latents) -> scaling_factor``: one number, 1 / std of all the latents (N, 4, 7, 7).

    Rombach et al. 2022 (Sec. 4.3.2): one scalar for the whole latent, so that the diffusion model
    sees unit variance (SD 1.5's 0.18215). A Python float or a 0-d tensor are both accepted.
    """
    gen = generator(seed)
    for _ in range(trials):
        z = _random_latents(gen)
        got = call(fn, z.clone(), what="scaling_factor")
        if isinstance(got, (float, int)):
            got = torch.tensor(float(got))
        z64 = z.double()
        compare("scaling_factor", got, 1.0 / z64.std(), context=f"latents of shape {tuple(z.shape)}", mistakes={
            "returned the standard deviation; the factor is its inverse, 1 / std (multiplying by it "
            "brings the spread to 1).": z64.std(),
            "returned 1 / variance; the factor is 1 / standard deviation.": 1.0 / z64.var(),
            "forgot to subtract the mean: 1 / sqrt(mean(z^2)) is not 1 / std when the latents are "
            "not centred (use z.std()).": 1.0 / z64.pow(2).mean().sqrt(),
            "one factor per channel; SD (and this lesson) use one number for the whole latent.":
                1.0 / z64.transpose(0, 1).flatten(1).std(1),
            "returned 1 / std of the first channel only; take the std over all latent numbers.":
                1.0 / z64[:, 0].std(),
        }, rtol=1e-3, atol=1e-6)
    passed("scaling_factor", trials)


def _random_posterior(gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, float]:
    batch = int(torch.randint(2, 7, (1,), generator=gen))
    mean = 3 * torch.randn(batch, 4, 7, 7, generator=gen)
    logvar = torch.empty(batch, 4, 7, 7).uniform_(-4.0, 1.0, generator=gen)
    eps = torch.randn(batch, 4, 7, 7, generator=gen)
    scaling_factor = float(torch.empty(1).uniform_(0.1, 0.6, generator=gen))
    return mean, logvar, eps, scaling_factor


@exercise("to_diffusion_latents")
def check_to_diffusion_latents(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(mean, logvar, eps, scaling_factor) -> z0`` (B, 4, 8, 8) from (B, 4, 7, 7) inputs:
    a sample of q(z | x), times the scaling factor, zero-padded on the right and bottom to 8x8."""
    gen = generator(seed)
    for _ in range(trials):
        mean, logvar, eps, s = _random_posterior(gen)
        got = call(fn, mean.clone(), logvar.clone(), eps.clone(), s, what="to_diffusion_latents")
        z = mean + (0.5 * logvar).exp() * eps
        compare("z0", got, to_diffusion_latents(mean, logvar, eps, s), context=f"scaling_factor={s:.3g}",
                mistakes={
                    "divided by the scaling factor; encoding multiplies (z * scaling_factor), decoding divides.":
                        pad(z / s),
                    "forgot the scaling factor: the denoiser expects unit-variance latents.": pad(z),
                    "used exp(logvar) (the variance) as the standard deviation; sigma = exp(logvar / 2).":
                        pad((mean + logvar.exp() * eps) * s),
                    "used the mean only; training uses a sample of q(z | x): mean + sigma * eps.":
                        pad(mean * s),
                    "padded on the top and left; pad on the right and bottom (F.pad(z, (0, 1, 0, 1))).":
                        torch.nn.functional.pad(z * s, (1, 0, 1, 0)),
                    "forgot to pad 7x7 to 8x8: the toy UNet halves its input once, so it needs an even size.":
                        z * s,
                })
    passed("to_diffusion_latents", trials)


@exercise("from_diffusion_latents")
def check_from_diffusion_latents(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(z0, scaling_factor) -> latents for the decoder``: z0 (B, 4, 8, 8) cropped to its
    top-left 7x7 and divided by the scaling factor, (B, 4, 7, 7)."""
    gen = generator(seed)
    for _ in range(trials):
        _, _, _, s = _random_posterior(gen)
        z0 = torch.randn(int(torch.randint(2, 7, (1,), generator=gen)), 4, 8, 8, generator=gen)
        got = call(fn, z0.clone(), s, what="from_diffusion_latents")
        compare("latents", got, from_diffusion_latents(z0, s), context=f"scaling_factor={s:.3g}", mistakes={
            "multiplied by the scaling factor; decoding undoes the encoding's multiplication: divide.":
                z0[..., :7, :7] * s,
            "forgot to divide by the scaling factor: the decoder was trained on unscaled latents.": z0[..., :7, :7],
            "cropped the wrong corner: the padding is on the right and bottom, keep z0[..., :7, :7].":
                z0[..., 1:, 1:] / s,
            "forgot to crop 8x8 back to the VAE's 7x7.": z0 / s,
        })
    passed("from_diffusion_latents", trials)
