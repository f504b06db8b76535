"""Stable Diffusion on captioned digits: the parts of ``checkpoints/sd-mnist`` (lesson 09).

The same three models as SD 1.5 (Rombach et al. 2022, arXiv:2112.10752), sized for digits:

- an ``AutoencoderKL`` with three levels, spatial factor f = 2^(3-1) = 4: 32x32 digits (MNIST's
  28x28 padded with background) <-> 4x8x8 latents; its ``scaling_factor`` is measured on the
  training digits, 1 / std of the latents, as SD's 0.18215 was;
- a ``UNet2DConditionModel`` of about 1.1 M parameters on the 4x8x8 latents, cross-attending to
- a small ``CLIPTextModel`` (``clip.TinyCLIP``'s text tower), read through the course's offline
  CLIP tokenizer.

``assemble`` puts them into a ``StableDiffusionPipeline`` with SD 1.5's scheduler and ``save``
writes the diffusers folder (safetensors, every file under 10 MiB), which
``StableDiffusionPipeline.from_pretrained("checkpoints/sd-mnist")`` and
``sd.load_pipeline("sd-mnist")`` load offline.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from .. import checkpoint
from .builds import SD15_SCHEDULER
from .tokenizer import clip_tokenizer

Tensor = torch.Tensor
NAME = "sd-mnist"
IMAGE_SIZE = 32  # 28x28 digits padded by 2 on each side
LATENT_SIZE = 8
MAX_FILE_BYTES = 10 * 2**20


def pad_digits(images: Tensor) -> Tensor:
    """(N, 1, 28, 28) in [-1, 1] -> (N, 3, 32, 32): padded with background (-1), grey as RGB."""
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[-1] != 28:
        raise ValueError(f"images must be (N, 1, 28, 28), got shape {tuple(images.shape)}")
    return F.pad(images, (2, 2, 2, 2), value=-1.0).expand(-1, 3, -1, -1).contiguous()


def to_grey(images: Tensor) -> Tensor:
    """(N, 3, 32, 32) pipeline output in [-1, 1] -> (N, 1, 28, 28) digits for the classifier."""
    return images.mean(1, keepdim=True)[..., 2:-2, 2:-2]


def vae_config(channels: tuple[int, ...] = (16, 32, 32)) -> dict:
    """``AutoencoderKL`` arguments: 3 -> 4 latent channels, factor 2^(len(channels) - 1) = 4."""
    levels = len(channels)
    return dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=channels,
                down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
                layers_per_block=1, norm_num_groups=16, sample_size=IMAGE_SIZE, scaling_factor=1.0,
                mid_block_add_attention=False)  # no attention at 8x8: a third of the cost on a CPU


def unet_config(cross_attention_dim: int, channels: tuple[int, ...] = (32, 64)) -> dict:
    """``UNet2DConditionModel`` arguments: 4x8x8 latents, every level cross-attending to the text."""
    levels = len(channels)
    return dict(sample_size=LATENT_SIZE, in_channels=4, out_channels=4, block_out_channels=channels,
                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D",) * levels,
                up_block_types=("CrossAttnUpBlock2D",) * levels, cross_attention_dim=cross_attention_dim,
                attention_head_dim=8, norm_num_groups=16)


def build_vae(config: dict | None = None):
    from diffusers import AutoencoderKL  # lazy: diffusers takes seconds to import

    return AutoencoderKL(**(config or vae_config()))


def build_unet(config: dict):
    from diffusers import UNet2DConditionModel  # lazy: diffusers takes seconds to import

    return UNet2DConditionModel(**config)


@torch.no_grad()
def latent_scaling_factor(vae, images: Tensor, batch: int = 500) -> float:
    """1 / std of the posterior means of ``images`` (N, 3, 32, 32): SD's rule for 0.18215."""
    means = torch.cat([vae.encode(images[i:i + batch]).latent_dist.mean for i in range(0, len(images), batch)])
    return 1.0 / means.std().item()


def make_scheduler():
    from diffusers import PNDMScheduler  # lazy: diffusers takes seconds to import

    scheduler = PNDMScheduler(**SD15_SCHEDULER)
    scheduler.register_to_config(clip_sample=False)  # as SD 1.5: DDIM made from this config must not clip
    return scheduler


def assemble(vae, unet, text_encoder, scaling_factor: float):
    """A ``StableDiffusionPipeline`` of the three parts; ``scaling_factor`` goes into the VAE config."""
    from diffusers import StableDiffusionPipeline  # lazy: diffusers takes seconds to import

    vae.register_to_config(scaling_factor=float(scaling_factor))
    return StableDiffusionPipeline(vae=vae.eval(), unet=unet.eval(), text_encoder=text_encoder.eval(),
                                   tokenizer=clip_tokenizer(), scheduler=make_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def save(pipe, folder: str | Path, card: dict | None = None) -> Path:
    """Write the diffusers folder (safetensors) and, if given, its ``card.json``; checks file sizes."""
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    too_big = [f"{p.relative_to(folder)} ({p.stat().st_size / 2**20:.1f} MiB)"
               for p in folder.rglob("*") if p.is_file() and p.stat().st_size >= MAX_FILE_BYTES]
    if too_big:
        raise ValueError(f"files must stay under 10 MiB; too big: {', '.join(too_big)}")
    if card is not None:
        checkpoint.write_card(folder / "card.json", card)
    return folder
