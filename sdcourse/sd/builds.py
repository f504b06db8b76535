"""Stable Diffusion pipelines built offline from configuration, with seeded random weights (lesson 08).

Two builds need no download: ``"tiny"`` (a CPU runs the whole loop in a second) and
``"sd15-random"`` (SD 1.5's exact shapes: 860 M UNet parameters, for speed and memory
measurements). Their UNet, VAE and CLIP text encoder follow the configuration files of SD 1.5
(Rombach et al. 2022, arXiv:2112.10752; CLIP, Radford et al. 2021, arXiv:2103.00020), and
lesson 05 and 07 reuse ``vae_config``/``unet_config`` to show SD's VAE and count its FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tokenizer import MODEL_MAX_LENGTH, VOCAB_SIZE, clip_tokenizer

SD_SCALING_FACTOR = 0.18215  # Rombach et al. 2022: 1 / std of SD's VAE latents on its training set


@dataclass(frozen=True)
class RandomBuild:
    """Sizes for a pipeline built from configuration with random weights (no download)."""

    unet_channels: tuple[int, ...]  # UNet width per resolution level (SD 1.5: 320/640/1280/1280)
    unet_attention: tuple[bool, ...]  # which down levels cross-attend to the text (SD 1.5: first 3)
    unet_layers: int  # ResNet blocks per level (SD 1.5: 2)
    head_dim: int | tuple[int, ...]  # diffusers' attention_head_dim: heads per level (SD 1.5: 8)
    vae_channels: tuple[int, ...]  # VAE width per level; 4 levels give the factor 8 (SD: 128..512)
    vae_layers: int  # ResNet blocks per VAE level (SD: 2)
    text_width: int  # CLIP text transformer width = the UNet's cross-attention dim (SD 1.5: 768)
    text_layers: int  # transformer layers (CLIP ViT-L/14 text tower: 12)
    text_heads: int  # attention heads (12)
    text_mlp: int  # MLP hidden width (3072 = 4 x 768)
    latent_size: int  # default latent side: images are 8x larger (SD 1.5: 64 -> 512 px)
    groups: int = 32  # GroupNorm groups (SD: 32)


BUILDS = {
    "tiny": RandomBuild(
        unet_channels=(32, 64),
        unet_attention=(False, True),
        unet_layers=1,
        head_dim=(2, 4),
        vae_channels=(32, 32, 64, 64),
        vae_layers=1,
        text_width=32,
        text_layers=2,
        text_heads=4,
        text_mlp=37,
        latent_size=8,
    ),
    "sd15-random": RandomBuild(
        unet_channels=(320, 640, 1280, 1280),
        unet_attention=(True, True, True, False),
        unet_layers=2,
        head_dim=8,
        vae_channels=(128, 256, 512, 512),
        vae_layers=2,
        text_width=768,
        text_layers=12,
        text_heads=12,
        text_mlp=3072,
        latent_size=64,
    ),
}
RANDOM_BUILDS = tuple(BUILDS)  # the model names load_pipeline builds offline: ("tiny", "sd15-random")
SD15_SCHEDULER = dict(  # SD 1.5's scheduler/scheduler_config.json (PNDM, the pipeline's default)
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
)


def unet_config(build: RandomBuild) -> dict:
    """``UNet2DConditionModel`` arguments for ``build`` (SD 1.5's unet/config.json for sd15-random)."""
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in build.unet_attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(build.unet_attention))
    return dict(
        sample_size=build.latent_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=build.unet_channels,
        layers_per_block=build.unet_layers,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=build.text_width,
        attention_head_dim=build.head_dim,
        norm_num_groups=build.groups,
    )


def vae_config(build: RandomBuild) -> dict:
    """``AutoencoderKL`` arguments: 3 -> 4 channels, spatial factor 2^(levels - 1) = 8."""
    levels = len(build.vae_channels)
    return dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=build.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        layers_per_block=build.vae_layers,
        norm_num_groups=build.groups,
        sample_size=8 * build.latent_size,
        scaling_factor=SD_SCALING_FACTOR,
    )


def text_encoder_config(build: RandomBuild):
    """``CLIPTextConfig`` with CLIP's 49,408-token vocabulary and 77 positions."""
    from transformers import CLIPTextConfig  # lazy: transformers takes seconds to import

    return CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=MODEL_MAX_LENGTH,
        hidden_size=build.text_width,
        intermediate_size=build.text_mlp,
        num_hidden_layers=build.text_layers,
        num_attention_heads=build.text_heads,
        hidden_act="quick_gelu",
        bos_token_id=49_406,
        eos_token_id=49_407,
        pad_token_id=49_407,
    )


def build_random_pipeline(name: str = "tiny", seed: int = 0):
    """A ``StableDiffusionPipeline`` with random weights, the same for the same ``seed`` (float32, CPU)."""
    if name not in BUILDS:
        raise ValueError(f"name must be one of {tuple(BUILDS)}, got {name!r}")
    from diffusers import (  # lazy: diffusers takes seconds to import
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel  # lazy: transformers takes seconds to import

    build = BUILDS[name]
    parts = {}
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state untouched
        for offset, (key, make) in enumerate(
            (
                ("unet", lambda: UNet2DConditionModel(**unet_config(build))),
                ("vae", lambda: AutoencoderKL(**vae_config(build))),
                ("text_encoder", lambda: CLIPTextModel(text_encoder_config(build))),
            )
        ):
            torch.manual_seed(seed + offset)  # each part reproducible on its own
            parts[key] = make().eval()
    scheduler = PNDMScheduler(**SD15_SCHEDULER)
    # as in SD 1.5's file: a DDIM scheduler made from this config must not clip x_0
    scheduler.register_to_config(clip_sample=False)
    return StableDiffusionPipeline(
        **parts,
        tokenizer=clip_tokenizer(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
