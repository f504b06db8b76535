"""Lesson 05's experiments with the VAE (``sdcourse.vae``; Kingma and Welling 2014, arXiv:1312.6114).

- ``train_briefly``: a short in-memory run of the one training loop ``train.fit`` for the lesson's
  beta sweep (Higgins et al. 2017, beta-VAE); ``sdcourse train vae`` is the full run.
- ``elbo_terms``: the two terms of the negative ELBO (Eq. 3) averaged over held-out digits.
- ``decode_grid``: the decoder of a 2-D VAE on a grid over the prior's bulk (the learned manifold
  the paper draws for a 2-D latent).
- ``interpolate``: a walk between two images in latent space, next to the same walk in pixels.
"""

from __future__ import annotations

import torch

from ..train import TrainConfig, fit
from ..vae import VAE, vae_loss

Tensor = torch.Tensor


def train_briefly(model: VAE, images: Tensor, steps: int, batch_size: int = 128, lr: float = 1e-3,
                  beta: float | None = None, seed: int = 0, progress: bool = True) -> list[float]:
    """Train ``model`` in place for ``steps`` AdamW steps on ``images`` (N, C, H, W); returns the losses.

    ``train.fit`` in memory (no checkpoints, no EMA): batches and eps come from the step generators
    of ``seed``. ``beta`` None uses ``model.config.beta``.
    """
    def loss_fn(m, x, y, gen):
        return vae_loss(m, x.contiguous(), gen, beta).loss

    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, ema_decay=0.0, seed=seed)
    labels = torch.zeros(len(images), dtype=torch.long)  # the VAE ignores labels
    return fit(model.train(), loss_fn, (images, labels), config, path=None, progress=progress).losses


@torch.no_grad()
def elbo_terms(model: VAE, images: Tensor, beta: float | None = None, seed: int = 0) -> dict[str, float]:
    """Mean reconstruction error (SSE per image), KL (nats per image) and negative ELBO on ``images``."""
    terms = vae_loss(model.eval(), images, torch.Generator().manual_seed(seed), beta)
    return {"reconstruction": terms.reconstruction.mean().item(), "kl": terms.kl.mean().item(),
            "negative_elbo": terms.loss.item()}


@torch.no_grad()
def decode_grid(model: VAE, n: int = 15, extent: float = 3.0) -> tuple[Tensor, Tensor]:
    """Decode an n x n grid of 2-D latents over [-extent, extent]^2 (the prior's bulk).

    Returns (images (n*n, C, H, W), row by row with z_2 decreasing downwards, and the latents (n*n, 2)).
    """
    if tuple(model.config.latent_shape) != (2,):
        raise ValueError(f"decode_grid needs a 2-D latent, this VAE has latent shape {model.config.latent_shape}")
    axis = torch.linspace(-extent, extent, n)
    z2, z1 = torch.meshgrid(axis.flip(0), axis, indexing="ij")  # rows: z_2 from top (high) to bottom
    z = torch.stack([z1, z2], dim=-1).reshape(-1, 2)  # (n, n, 2) -> (n*n, 2)
    return model.eval().decode(z), z


@torch.no_grad()
def interpolate(model: VAE, x_a: Tensor, x_b: Tensor, n: int = 8) -> tuple[Tensor, Tensor]:
    """Blend two images (1, C, H, W) in n steps: (decoded latent blends, pixel blends), each (n, C, H, W)."""
    w = torch.linspace(0, 1, n)
    (m_a, _), (m_b, _) = model.eval().encode(x_a), model.encode(x_b)
    wz = w.view(-1, *[1] * (m_a.ndim - 1))  # (n, 1, ...) to broadcast over the latent
    wx = w.view(-1, *[1] * (x_a.ndim - 1))  # (n, 1, 1, 1)
    latent = model.decode((1 - wz) * m_a + wz * m_b)  # walk between the two means
    return latent, (1 - wx) * x_a + wx * x_b
