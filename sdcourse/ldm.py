"""Latent diffusion: the DDPM of lesson 02 trained on the VAE's scaled latents (lesson 07, ``sdcourse train ldm``).

Rombach et al. 2022 (arXiv:2112.10752), Sec. 3.3: encode every image once, z = E(x) * scaling_factor,
train the epsilon-prediction loss of Ho et al. 2020 (arXiv:2006.11239, Algorithm 1) on z instead of
x, sample z_0 with the same samplers, and decode x = D(z_0 / scaling_factor).

Shapes. The course VAE gives 4x7x7 latents; the toy UNet halves its input once per level, so the
latents are padded with zeros to 4x8x8 on the right and bottom (``pad``) and cropped back to 4x7x7
before decoding (``crop``). The padded row and column are constant zeros the model learns to keep.

Like SD's training, each step uses a fresh sample z ~ q(z | x) (``latent_dist.sample()``): the
encoder's mean and log-variance of every digit are computed once, and the noise eps of the
reparameterization comes from the step's generator, so resume stays exact.

What it buys: the denoiser runs on fewer numbers at every sampling step, the VAE's decoder once per
image. At 28x28 the saving is small; at SD's 512x512 it is the difference between feasible and not.
Lesson 07 measures both (``sdcourse.experiments.latent_vs_pixel``).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import vae as vae_module
from .sampling import sample
from .schedules import NoiseSchedule
from .train import ddpm_loss
from .unet import UNetConfig

Tensor = torch.Tensor
LATENT_SIZE = 7  # the course VAE's 28 / 4
PADDED_SIZE = 8  # divisible by 2 for a two-level UNet


def pad(z: Tensor) -> Tensor:
    """(B, 4, 7, 7) -> (B, 4, 8, 8): zeros on the right and bottom."""
    return F.pad(z, (0, PADDED_SIZE - z.shape[-1], 0, PADDED_SIZE - z.shape[-2]))


def crop(z: Tensor) -> Tensor:
    """(B, 4, 8, 8) -> (B, 4, 7, 7): undo ``pad``."""
    return z[..., :LATENT_SIZE, :LATENT_SIZE]


def to_diffusion_latents(mean: Tensor, logvar: Tensor, eps: Tensor, scaling_factor: float) -> Tensor:
    """What the denoiser is trained on: z0 = pad(scaling_factor * (mean + exp(logvar / 2) * eps)).

    ``mean``, ``logvar``, ``eps`` (B, 4, 7, 7) -> (B, 4, 8, 8). A sample of q(z | x) (Kingma and
    Welling, Eq. 10), scaled to unit variance (Rombach et al. 2022, Sec. 4.3.2), padded for the UNet.
    """
    return pad(vae_module.reparameterize(mean, logvar, eps) * scaling_factor)


def from_diffusion_latents(z0: Tensor, scaling_factor: float) -> Tensor:
    """What the decoder takes: crop(z0) / scaling_factor; (B, 4, 8, 8) -> (B, 4, 7, 7).

    diffusers: ``vae.decode(latents / vae.config.scaling_factor)``.
    """
    return crop(z0) / scaling_factor


@torch.no_grad()
def encode_posteriors(autoencoder: vae_module.VAE, images: Tensor, batch_size: int = 500) -> Tensor:
    """q(z | x) of every image, once: (N, 1, 28, 28) -> (N, 2 * 4, 7, 7), mean and logvar stacked."""
    out = [torch.cat(autoencoder.encode(images[i:i + batch_size]), dim=1) for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def latent_ddpm_loss(model, schedule: NoiseSchedule, posteriors: Tensor, labels: Tensor | None,
                     gen: torch.Generator, scaling_factor: float, label_dropout: float = 0.1) -> Tensor:
    """Ho et al. Algorithm 1 on z0 = pad(sample of q(z | x) * scaling_factor); posteriors (B, 8, 7, 7)."""
    mean, logvar = posteriors.float().chunk(2, dim=1)  # (B, 8, 7, 7) -> 2 x (B, 4, 7, 7)
    eps = torch.randn(mean.shape, generator=gen).to(mean.device, mean.dtype)
    z0 = to_diffusion_latents(mean, logvar, eps, scaling_factor)  # Rombach et al. Sec. 3.3
    return ddpm_loss(model, schedule, z0.contiguous(), labels, gen, label_dropout)


def latent_unet_config() -> UNetConfig:
    """The toy UNet on padded 4x8x8 latents: two levels (8 -> 4), attention at 4x4 (16 tokens)."""
    return UNetConfig(image_size=PADDED_SIZE, in_channels=4, channels=(64, 128), attention_levels=(False, True))


@torch.no_grad()
def sample_and_decode(model, autoencoder: vae_module.VAE, sampler, labels: Tensor,
                      generator: torch.Generator | None = None, progress: bool = True) -> Tensor:
    """Sample latents (B, 4, 8, 8) with ``sampler``, crop, unscale and decode: images (B, 1, 28, 28).

    ``model`` is the latent UNet (or a ``GuidedModel`` around it); its ``config`` gives the latent shape.
    """
    c, s = model.config.in_channels, model.config.image_size
    z0 = sample(model, sampler, (len(labels), c, s, s), labels=labels, generator=generator, progress=progress)
    return autoencoder.decode(from_diffusion_latents(z0, autoencoder.scaling_factor))  # x = D(z0 / scaling_factor)
