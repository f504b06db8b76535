"""Loading a Stable Diffusion pipeline, and diffusers' memory savers for small GPUs (lesson 08).

``load_pipeline(model)`` returns a ``diffusers.StableDiffusionPipeline`` (Rombach et al. 2022,
arXiv:2112.10752): from a hub id or a local folder (real weights, found by ``hub.resolve_model``),
or built offline from configuration with seeded random weights (``builds``: ``"tiny"`` for a CPU
in a second; ``"sd15-random"`` with SD 1.5's exact shapes, for speed and memory). It returns the
pipeline and nothing else: which model it is, and whether its weights are real, stay with the
caller (``model in RANDOM_BUILDS``).

``recommend_memory_options`` picks attention slicing, VAE tiling and model CPU offload from the
free GPU memory; ``apply_memory_options`` switches them on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .. import config
from .builds import RANDOM_BUILDS, build_random_pipeline
from .hub import DEFAULT_MODEL, refuse_pickles, resolve_model


@dataclass(frozen=True)
class MemoryOptions:
    """Which of diffusers' memory savers to switch on (each trades a little speed for memory)."""

    attention_slicing: bool = False  # attention one head-slice at a time: peak memory of 512 px halves
    vae_tiling: bool = False  # decode in overlapping tiles: images above 512 px fit
    cpu_offload: bool = False  # keep each model on the CPU until it runs: about 2 GiB GPU peak for SD 1.5


def recommend_memory_options(free_gib: float | None) -> MemoryOptions:
    """What to switch on for ``free_gib`` of free GPU memory (None: not a CUDA GPU, nothing to save).

    SD 1.5 in fp16 needs about 3.5 GiB at 512x512 with none of them: 8 GiB or more runs plain;
    from 4 GiB slicing and tiling keep the peak comfortably below the free memory; below that,
    model CPU offload moves the UNet, VAE and text encoder onto the GPU one at a time.
    """
    if free_gib is None or free_gib >= 8:
        return MemoryOptions()
    if free_gib >= 4:
        return MemoryOptions(attention_slicing=True, vae_tiling=True)
    return MemoryOptions(attention_slicing=True, vae_tiling=True, cpu_offload=True)


def free_gpu_gib(device: torch.device) -> float | None:
    """Free memory of a CUDA ``device`` in GiB (None for other devices)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free / 2**30


def apply_memory_options(pipe, options: MemoryOptions, device: torch.device):
    """Switch the chosen options on and move ``pipe`` to ``device`` (offload moves it itself)."""
    if options.attention_slicing:
        pipe.enable_attention_slicing()
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    if options.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


def load_pipeline(model: str = DEFAULT_MODEL, device=None, dtype=None, memory: MemoryOptions | str = "auto"):
    """A ``diffusers.StableDiffusionPipeline`` for ``model``, on ``device`` in ``dtype``.

    ``model``: "tiny" or "sd15-random" (offline, random weights), a hub id, or a pipeline folder.
    ``device``: default ``config.device()``. ``dtype``: default float16 on CUDA, else float32.
    ``memory``: "auto" picks ``recommend_memory_options`` from free VRAM; or pass ``MemoryOptions``.
    Raises ``ModelNotAvailable`` (one message naming the weights and ``sdcourse prefetch``) when a hub
    model is neither cached nor downloadable.
    """
    device = config.device(device) if device is None or isinstance(device, str) else device
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    if model in RANDOM_BUILDS:
        pipe = build_random_pipeline(model)
        if dtype != torch.float32:
            pipe.to(dtype=dtype)
    else:
        from diffusers import StableDiffusionPipeline  # lazy: diffusers takes seconds to import

        folder = resolve_model(model)
        refuse_pickles(folder)
        variant = "fp16" if any(folder.glob("unet/*.fp16.safetensors")) else None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*safety checker.*")
            # torch_dtype is called dtype from diffusers 0.36; the old name still works
            warnings.filterwarnings("ignore", message=".*torch_dtype.*")
            pipe = StableDiffusionPipeline.from_pretrained(
                folder, torch_dtype=dtype, variant=variant, local_files_only=True, use_safetensors=True
            )
    options = recommend_memory_options(free_gpu_gib(device)) if memory == "auto" else memory
    return apply_memory_options(pipe, options, device)
