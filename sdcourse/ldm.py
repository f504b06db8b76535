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
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import vae as vae_module
from .schedules import NoiseSchedule
from .train import ddpm_loss

Tensor = torch.Tensor
LATENT_SIZE = 7  # the course VAE's 28 / 4
PADDED_SIZE = 8  # divisible by 2 for a two-level UNet


def pad(z: Tensor) -> Tensor:
    """(B, 4, 7, 7) -> (B, 4, 8, 8): zeros on the right and bottom."""
    return F.pad(z, (0, PADDED_SIZE - z.shape[-1], 0, PADDED_SIZE - z.shape[-2]))


def crop(z: Tensor) -> Tensor:
    """(B, 4, 8, 8) -> (B, 4, 7, 7): undo ``pad``."""
    return z[..., :LATENT_SIZE, :LATENT_SIZE]


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
    z0 = pad(vae_module.reparameterize(mean, logvar, eps) * scaling_factor)  # Rombach et al. Sec. 3.3
    return ddpm_loss(model, schedule, z0.contiguous(), labels, gen, label_dropout)


@torch.no_grad()
def sample_digits(model, autoencoder: vae_module.VAE, sampler, labels: Tensor,
                  generator: torch.Generator | None = None, progress: bool = True) -> Tensor:
    """Sample latents (B, 4, 8, 8) with ``sampler``, crop, unscale and decode: images (B, 1, 28, 28)."""
    from .samplers import sample

    c, s = model.config.in_channels, model.config.image_size
    z0 = sample(model, sampler, (len(labels), c, s, s), labels=labels, generator=generator, progress=progress)
    return vae_module.decode_latents(autoencoder, crop(z0))  # x = D(z0 / scaling_factor)
