"""Stable Diffusion, piece by piece (lesson 08; lessons 05 and 07 reuse its configurations).

Latent diffusion (Rombach et al. 2022, arXiv:2112.10752): a DDPM (Ho et al. 2020,
arXiv:2006.11239) in the latent space of a VAE, with a UNet that attends to CLIP text embeddings
(Radford et al. 2021, arXiv:2103.00020) and classifier-free guidance (Ho and Salimans 2022,
arXiv:2207.12598). One module per part:

- ``tokenizer``: CLIP's byte-level BPE, built offline from the vocabulary ``open_clip`` ships;
- ``builds``: the offline random-weight pipelines ``"tiny"`` and ``"sd15-random"`` and their configs;
- ``hub``: model ids (``HUB_MODELS``), the Hugging Face cache, offline, ``sdcourse prefetch``;
- ``pipeline``: ``load_pipeline(model)`` and diffusers' memory savers;
- ``mnist``: the parts of ``sd-mnist``, Stable Diffusion trained on captioned digits (lesson 09);
- ``loop``: ``generate(pipe, prompt, ...)``, the sampling loop written out, equal to ``diffusers``.

    from sdcourse import sd
    pipe = sd.load_pipeline("tiny")
    image = sd.generate(pipe, "a lighthouse", num_inference_steps=4, seed=0)

Importing this package is cheap: ``diffusers`` and ``transformers`` load on first use.
"""

from .builds import (
    BUILDS,
    RANDOM_BUILDS,
    SD15_SCHEDULER,
    SD_SCALING_FACTOR,
    RandomBuild,
    build_random_pipeline,
    text_encoder_config,
    unet_config,
    vae_config,
)
from .hub import (
    COURSE_MODELS,
    DEFAULT_MODEL,
    HUB_MODELS,
    ModelNotAvailable,
    cached_snapshot,
    hf_cache_dir,
    hub_offline,
    missing_message,
    resolve_model,
)
from .loop import SCHEDULERS, encode_prompt, generate, latents_to_images, make_scheduler, predicted_x0, to_pixels
from .pipeline import MemoryOptions, apply_memory_options, free_gpu_gib, load_pipeline, recommend_memory_options
from .tokenizer import clip_tokenizer, load_tokenizer, truncated_part

__all__ = [
    "COURSE_MODELS",
    "BUILDS",
    "DEFAULT_MODEL",
    "HUB_MODELS",
    "RANDOM_BUILDS",
    "SCHEDULERS",
    "SD15_SCHEDULER",
    "SD_SCALING_FACTOR",
    "MemoryOptions",
    "ModelNotAvailable",
    "RandomBuild",
    "apply_memory_options",
    "build_random_pipeline",
    "cached_snapshot",
    "clip_tokenizer",
    "encode_prompt",
    "free_gpu_gib",
    "generate",
    "hf_cache_dir",
    "hub_offline",
    "latents_to_images",
    "load_pipeline",
    "load_tokenizer",
    "make_scheduler",
    "missing_message",
    "predicted_x0",
    "recommend_memory_options",
    "resolve_model",
    "text_encoder_config",
    "to_pixels",
    "truncated_part",
    "unet_config",
    "vae_config",
]
