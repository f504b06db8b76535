"""Checks for the exercises: call the learner's function on fresh random inputs, compare with the
library's reference, and say precisely what differs.

``core`` holds what every check shares (``CheckFailed``, ``compare``, the likely-cause machinery);
each lesson's checks live in a module named by what they check, in lesson order:

- 01 ``forward_noising``: ``check_linear_alpha_bar``, ``check_add_noise``, ``check_snr``
- 02 ``ddpm_training``: ``check_ddpm_loss``
- 03 ``reverse_denoising``: ``check_ddpm_step``, ``check_ddim_step``
- 04 ``guidance``: ``check_guidance``, ``check_guided_eps``, ``ToyConditionalEps``
- 05 ``vae``: ``check_reparameterize``, ``check_kl_divergence``, ``check_negative_elbo``
- 06 ``attention``: ``check_attention``, ``check_split_heads``, ``check_merge_heads``,
  ``check_cross_attention``
- 07 ``latent_diffusion``: ``check_scaling_factor``, ``check_to_diffusion_latents``,
  ``check_from_diffusion_latents``
- 08 ``sd_pipeline``: ``check_guided_noise``, ``check_prepare_latents``, ``check_decode``,
  ``check_img2img_timesteps``
- 09 ``sd_on_digits``: ``check_info_nce``
- 10 ``claims``: ``check_naive_reverse_step``
- 11 ``faster_sampling``: ``check_euler_step``, ``check_dpm_solver_step``
- 12 ``flow_matching``: ``check_flow_interpolate``, ``check_velocity_target``, ``check_flow_euler_step``

All of them are re-exported here, so notebooks write ``from sdcourse import checks`` and
``checks.check_add_noise(add_noise)``. A passing check prints one line; a failing one raises
``CheckFailed`` naming the first element that differs and, when the answer matches a typical
mistake, its likely cause, and says where to find a hint: ``checks.hint("add_noise")`` asks what
to think about, ``checks.hint("add_noise", 2)`` gives the recipe after a first attempt (``hints``).
"""

from __future__ import annotations

from .attention import check_attention, check_cross_attention, check_merge_heads, check_split_heads
from .claims import check_naive_reverse_step
from .core import CheckFailed, call, compare, generator, passed
from .ddpm_training import check_ddpm_loss
from .faster_sampling import check_dpm_solver_step, check_euler_step
from .flow_matching import check_flow_euler_step, check_flow_interpolate, check_velocity_target
from .forward_noising import check_add_noise, check_linear_alpha_bar, check_snr
from .guidance import ToyConditionalEps, check_guidance, check_guided_eps
from .hints import hint
from .latent_diffusion import check_from_diffusion_latents, check_scaling_factor, check_to_diffusion_latents
from .reverse_denoising import check_ddim_step, check_ddpm_step
from .sd_on_digits import check_info_nce
from .sd_pipeline import check_decode, check_guided_noise, check_img2img_timesteps, check_prepare_latents
from .vae import check_kl_divergence, check_negative_elbo, check_reparameterize

__all__ = [
    # core
    "CheckFailed",
    "call",
    "compare",
    "generator",
    "passed",
    "hint",
    # 01 forward noising
    "check_linear_alpha_bar",
    "check_add_noise",
    "check_snr",
    # 02 training a DDPM
    "check_ddpm_loss",
    # 03 reverse denoising
    "check_ddpm_step",
    "check_ddim_step",
    # 04 guidance
    "ToyConditionalEps",
    "check_guidance",
    "check_guided_eps",
    # 05 the VAE
    "check_reparameterize",
    "check_kl_divergence",
    "check_negative_elbo",
    # 06 attention
    "check_attention",
    "check_split_heads",
    "check_merge_heads",
    "check_cross_attention",
    # 07 latent diffusion
    "check_scaling_factor",
    "check_to_diffusion_latents",
    "check_from_diffusion_latents",
    # 08 the Stable Diffusion pipeline
    "check_guided_noise",
    "check_prepare_latents",
    "check_decode",
    "check_img2img_timesteps",
    # 09 Stable Diffusion on digits
    "check_info_nce",
    # 10 claims checked
    "check_naive_reverse_step",
    # 11 faster sampling
    "check_euler_step",
    "check_dpm_solver_step",
    # 12 flow matching
    "check_flow_interpolate",
    "check_velocity_target",
    "check_flow_euler_step",
]
