"""Classifier-free guidance (Ho and Salimans 2022, arXiv:2207.12598), lessons 04 and 08.

One model predicts the noise twice, with and without the condition, and the sampler extrapolates
from the unconditional prediction towards the conditional one:

    eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)

Convention (``diffusers``'): ``guidance_scale`` = 1 is the plain conditional prediction (no
guidance), 0 the unconditional one. The paper writes eps = (1 + w) eps_cond - w eps_uncond, so its
w equals ``guidance_scale - 1``: Stable Diffusion's default 7.5 is the paper's w = 6.5.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def classifier_free_guidance(eps_uncond: Tensor, eps_cond: Tensor, guidance_scale: float) -> Tensor:
    """The guided prediction eps_uncond + guidance_scale (eps_cond - eps_uncond); shapes must match."""
    if eps_uncond.shape != eps_cond.shape:
        raise ValueError(
            f"eps_uncond and eps_cond must have the same shape, got {tuple(eps_uncond.shape)} "
            f"and {tuple(eps_cond.shape)}"
        )
    if not guidance_scale >= 0:
        raise ValueError(f"guidance_scale must be >= 0 (1 = no guidance), got {guidance_scale!r}")
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)
