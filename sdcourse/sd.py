"""Stable Diffusion: loading a pipeline, and the sampling loop written out by hand (lesson 08).

Latent diffusion (Rombach et al. 2022, arXiv:2112.10752) runs the reverse process of a DDPM
(Ho et al. 2020, arXiv:2006.11239) in the 4 x H/8 x W/8 latent space of a VAE, with a UNet that
attends to CLIP text embeddings (arXiv:2103.00020) and classifier-free guidance
(Ho and Salimans 2022, arXiv:2207.12598) towards the prompt.

``load_pipeline(model)`` returns a ``diffusers.StableDiffusionPipeline``: from a hub id or a local
folder (real weights), or built offline from configuration with seeded random weights (``"tiny"``
for a CPU in a second; ``"sd15-random"`` with SD 1.5's exact shapes, for speed and memory).

``generate(pipe, prompt, ...)`` is the loop in the phases of ``StableDiffusionPipeline.__call__``
(check inputs, encode the prompt, timesteps, prepare latents, denoise with guidance, decode) and
returns the same image as ``pipe(prompt, ..., generator=torch.Generator("cpu").manual_seed(seed))``.
"""

from __future__ import annotations

import inspect
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from . import config
from .guidance import classifier_free_guidance
from .tokenizer import clip_tokenizer, truncated_part

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
HUB_MODELS = {  # the ids the course knows; any other SD 1.x/2.x diffusers repository works too
    DEFAULT_MODEL: "SD 1.5, 512x512, the course's reference model",
    "CompVis/stable-diffusion-v1-4": "SD 1.4, 512x512",
    "stabilityai/stable-diffusion-2-1": "SD 2.1, 768x768, v-prediction, OpenCLIP ViT-H text encoder",
    "stabilityai/sd-turbo": "SD 2.1 distilled (ADD), 512x512 in 1 to 4 steps: the CPU-friendly choice",
}
RANDOM_BUILDS = ("tiny", "sd15-random")
SCHEDULERS = ("ddim", "euler", "dpmsolver++")
SD_SCALING_FACTOR = 0.18215  # Rombach et al. 2022: 1 / std of SD's VAE latents on its training set


class ModelNotAvailable(RuntimeError):
    """The weights are neither cached nor downloadable; the message names them and the fix."""


# ---- configurations of the two offline builds ----------------------------------------------------


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
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49_408,
        max_position_embeddings=77,
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
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

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


# ---- memory options for small GPUs ---------------------------------------------------------------


@dataclass(frozen=True)
class MemoryOptions:
    """Which of diffusers' memory savers to switch on (each trades a little speed for memory)."""

    attention_slicing: bool = (
        False  # attention one head-slice at a time: peak memory of 512 px halves
    )
    vae_tiling: bool = False  # decode in overlapping tiles: images above 512 px fit
    cpu_offload: bool = (
        False  # keep each model on the CPU until it runs: about 2 GiB GPU peak for SD 1.5
    )


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


# ---- loading -------------------------------------------------------------------------------------


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = (
        os.environ.get("HF_HOME")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    )
    return Path(home).expanduser() / "hub"


def hub_offline(timeout: float = 1.0) -> bool:
    """True when HF_HUB_OFFLINE=1 or the hub's host cannot be reached within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    import socket

    host = (
        urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
        or "huggingface.co"
    )
    reached = []

    def probe():  # in a thread: DNS lookups ignore socket timeouts
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            reached.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return not reached


def missing_message(model: str, revision: str | None = None) -> str:
    """The one message for weights that are not here: what is missing, where we looked, the fix."""
    rev = f" --revision {revision}" if revision else ""
    return (
        f"Stable Diffusion weights for {model!r} are not in the Hugging Face cache ({hf_cache_dir()}) "
        f"and the hub cannot be reached (offline). Run `sdcourse prefetch --model {model}{rev}` while "
        "online, or `sdcourse prefetch --from DIR` with a folder your instructor copied; meanwhile "
        "load_pipeline('tiny') runs with random weights."
    )


def cached_snapshot(model: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of hub id ``model`` holding a model_index.json, or None."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(
            snapshot_download(
                model, revision=revision, cache_dir=hf_cache_dir(), local_files_only=True
            )
        )
    except Exception:  # not cached (LocalEntryNotFoundError), or an invalid id
        return None
    return path if (path / "model_index.json").exists() else None


def resolve_model(model: str, revision: str | None = None) -> Path:
    """A local folder for ``model``: the folder itself, the cached snapshot, or a fresh download."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "model_index.json").exists():
            raise ModelNotAvailable(
                f"{folder} has no model_index.json: it is not a diffusers pipeline folder"
            )
        return folder
    if model.count("/") != 1 or model.startswith(("/", ".", "~")):
        raise ValueError(
            f"model must be one of {RANDOM_BUILDS}, a hub id such as {DEFAULT_MODEL!r}, "
            f"or an existing folder; got {model!r}"
        )
    snapshot = cached_snapshot(model, revision)
    if snapshot is not None:
        return snapshot
    if hub_offline():
        os.environ["HF_HUB_OFFLINE"] = (
            "1"  # nothing else in this process should wait on the network
        )
        raise ModelNotAvailable(missing_message(model, revision))
    from .prefetch import download_model

    return download_model(model, revision)


def load_pipeline(
    model: str = DEFAULT_MODEL, device=None, dtype=None, memory: MemoryOptions | str = "auto"
):
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
        from diffusers import StableDiffusionPipeline

        folder = resolve_model(model)
        variant = "fp16" if any(folder.glob("unet/*.fp16.safetensors")) else None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*safety checker.*")
            # torch_dtype is called dtype from diffusers 0.36; the old name still works
            warnings.filterwarnings("ignore", message=".*torch_dtype.*")
            pipe = StableDiffusionPipeline.from_pretrained(
                folder, torch_dtype=dtype, variant=variant, local_files_only=True
            )
    options = recommend_memory_options(free_gpu_gib(device)) if memory == "auto" else memory
    pipe.sdcourse_model = model  # what the lesson labels its figures with
    return apply_memory_options(pipe, options, device)


def has_real_weights(pipe) -> bool:
    """False for the offline random builds (figures must say "random weights")."""
    return getattr(pipe, "sdcourse_model", None) not in RANDOM_BUILDS


def weights_label(pipe) -> str:
    """What every figure of lesson 08 says about the weights: the model id, or "random weights"."""
    model = getattr(pipe, "sdcourse_model", "?")
    return model if has_real_weights(pipe) else f"random weights ({model}): noise by design"


def lesson_pipeline(device=None):
    """Lesson 08's pipeline: ``$SDCOURSE_SD_MODEL`` if set, else the first cached SD model, else "tiny".

    Never waits on the network; the fallback says so in one line.
    """
    chosen = os.environ.get("SDCOURSE_SD_MODEL")
    if chosen:
        return load_pipeline(chosen, device=device)
    for model in HUB_MODELS:
        if cached_snapshot(model) is not None:
            return load_pipeline(model, device=device)
    print(
        "No Stable Diffusion weights cached: using 'tiny' with random weights (the shapes and the loop "
        f"are real, the pictures are noise). For real images run `sdcourse prefetch` online "
        f"(about 2.6 GB for {DEFAULT_MODEL})."
    )
    return load_pipeline("tiny", device=device)


@torch.no_grad()
def decode_latents(pipe, latents: torch.Tensor):
    """Latents (B, 4, h, w) -> list of B PIL images, through the VAE decoder (previews of x_0)."""
    from PIL import Image

    image = pipe.vae.decode(
        latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor, return_dict=False
    )[0]
    pixels = ((image / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy() * 255).round()
    return [Image.fromarray(p.astype("uint8")) for p in pixels]


# ---- the loop ------------------------------------------------------------------------------------


def make_scheduler(pipe, name: str):
    """A fresh scheduler ``name`` ("ddim", "euler", "dpmsolver++") on ``pipe``'s noise schedule."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    kinds = {
        "ddim": (DDIMScheduler, {}),
        "euler": (EulerDiscreteScheduler, {}),
        "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    }
    if name not in kinds:
        raise ValueError(
            f"scheduler must be one of {SCHEDULERS} (or a diffusers scheduler), got {name!r}"
        )
    cls, extra = kinds[name]
    return cls.from_config(pipe.scheduler.config, **extra)


def encode_prompt(pipe, prompt: str, device) -> torch.Tensor:
    """CLIP text embeddings of ``prompt``: (1, 77, d) with d = 768 for SD 1.5."""
    ids = pipe.tokenizer(
        prompt,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids  # (1, 77)
    embeds = pipe.text_encoder(ids.to(device))[0]  # last hidden state, (1, 77, d)
    return embeds.to(dtype=pipe.text_encoder.dtype, device=device)


def predicted_x0(scheduler, x_t: torch.Tensor, model_output: torch.Tensor, t) -> torch.Tensor:
    """x_0 from a scaled model input x_t and the UNet's output (eps or v) at timestep t."""
    alpha_bar = scheduler.alphas_cumprod.to(x_t.device)[int(t)].to(x_t.dtype)
    if scheduler.config.prediction_type == "v_prediction":  # Salimans & Ho 2022, arXiv:2202.00512
        return alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * model_output
    return (x_t - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()  # Ho et al. 2020, Eq. 15


def _check_inputs(
    prompt,
    negative_prompt,
    guidance_scale,
    num_inference_steps,
    height,
    width,
    init_image,
    strength,
):
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise ValueError(
            f"negative_prompt must be a str or None, got {type(negative_prompt).__name__}"
        )
    if not guidance_scale >= 0:
        raise ValueError(f"guidance_scale must be >= 0 (1 = no guidance), got {guidance_scale!r}")
    if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ValueError(
            f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}"
        )
    for name, value in (("height", height), ("width", width)):
        if value is not None and (not isinstance(value, int) or value < 8 or value % 8):
            raise ValueError(
                f"{name} must be a positive multiple of 8 (the VAE shrinks by 8), got {value!r}"
            )
    if init_image is None:
        return
    if not 0 <= strength <= 1:
        raise ValueError(
            f"strength must be in [0, 1] (0 keeps the image, 1 ignores it), got {strength!r}"
        )
    if int(num_inference_steps * strength) < 1:
        raise ValueError(
            f"strength={strength} with num_inference_steps={num_inference_steps} leaves "
            f"int({num_inference_steps} x {strength}) = 0 denoising steps; use strength "
            f">= 1/num_inference_steps"
        )
    from PIL import Image

    if not isinstance(init_image, Image.Image):
        raise ValueError(f"init_image must be a PIL image, got {type(init_image).__name__}")
    if init_image.mode != "RGB":
        raise ValueError(
            f"init_image must be an RGB image, got mode {init_image.mode!r}; "
            "use init_image.convert('RGB')"
        )
    w, h = init_image.size
    if w % 8 or h % 8:
        raise ValueError(
            f"init_image size must be a multiple of 8 on both sides, got {w}x{h}; "
            f"resize it, e.g. to {w - w % 8}x{h - h % 8}"
        )
    if (height or h, width or w) != (h, w):
        raise ValueError(
            f"init_image is {w}x{h} (width x height) but width={width}, height={height} "
            "were asked for; resize the image or leave height and width out"
        )


def _step_kwargs(scheduler, generator) -> dict:
    # DDIM takes eta (0: deterministic); stochastic samplers take the generator. Others take neither.
    accepted = inspect.signature(scheduler.step).parameters
    kwargs = {"eta": 0.0} if "eta" in accepted else {}
    return {**kwargs, "generator": generator} if "generator" in accepted else kwargs


@torch.no_grad()
def generate(
    pipe,
    prompt: str,
    negative_prompt: str | None = None,
    guidance_scale: float = 7.5,
    num_inference_steps: int = 50,
    height: int | None = None,
    width: int | None = None,
    seed: int | None = None,
    init_image=None,
    strength: float = 0.8,
    scheduler=None,
    on_step=None,
):
    """One image for ``prompt``: the sampling loop of ``StableDiffusionPipeline``, written out.

    ``init_image`` (a PIL RGB image, sides multiples of 8) turns it into img2img: the image is
    encoded, noised to the timestep ``strength`` of the way up, and denoised from there.
    ``scheduler``: None (the pipeline's own), "ddim", "euler", "dpmsolver++" or a diffusers scheduler.
    ``on_step(i, t, latents, pred_x0)`` sees each step's latents (1, 4, H/8, W/8) and predicted x_0.
    Returns a PIL image equal to ``pipe(prompt, ..., generator=torch.Generator("cpu").manual_seed(seed))``
    (``StableDiffusionImg2ImgPipeline`` for img2img).
    """
    # 1. Check inputs; defaults from the UNet's training resolution (SD 1.5: 64 latents -> 512 px).
    _check_inputs(prompt, negative_prompt, guidance_scale, num_inference_steps, height, width,
                  init_image, strength)
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)  # 8: each VAE level halves the side
    if init_image is not None:
        width, height = init_image.size
    height = height or pipe.unet.config.sample_size * factor
    width = width or pipe.unet.config.sample_size * factor
    if dropped := truncated_part(pipe.tokenizer, prompt):
        warnings.warn(
            f"prompt is longer than CLIP's {pipe.tokenizer.model_max_length} tokens; "
            f"this part was dropped: {dropped!r}",
            stacklevel=2,
        )
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()))
    # noise drawn on the CPU: the same image on any device
    generator = torch.Generator("cpu").manual_seed(seed)
    device = pipe._execution_device
    if scheduler is None:
        scheduler = pipe.scheduler
    elif isinstance(scheduler, str):
        scheduler = make_scheduler(pipe, scheduler)

    # 2. Encode the prompt; guidance also needs the negative (by default the empty) prompt.
    # guidance_scale 1 is the conditional prediction itself: one UNet pass is enough
    do_guidance = guidance_scale > 1
    text = encode_prompt(pipe, prompt, device)  # (1, 77, d)
    if do_guidance:
        text = torch.cat([encode_prompt(pipe, negative_prompt or "", device), text])  # (2, 77, d)
    dtype = text.dtype

    # 3. Timesteps: num_inference_steps of the 1000 training steps, descending.
    scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = scheduler.timesteps
    if init_image is not None:  # img2img starts strength of the way up the schedule
        t_start = num_inference_steps - int(num_inference_steps * strength)
        timesteps = timesteps[t_start * scheduler.order :]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(t_start * scheduler.order)

    # 4. Prepare latents z_T (1, 4, H/8, W/8) at the scheduler's starting scale.
    shape = (1, pipe.unet.config.in_channels, height // factor, width // factor)
    if init_image is None:
        noise = torch.randn(shape, generator=generator, dtype=dtype).to(device)
        latents = noise * scheduler.init_noise_sigma  # 1 for DDIM/DPM-Solver, sigma_max for Euler
    else:
        pixels = torch.from_numpy(np.array(init_image)).float()[None] / 255  # (1, H, W, 3), [0, 1]
        pixels = 2 * pixels - 1  # [-1, 1], the VAE's range
        pixels = pixels.permute(0, 3, 1, 2).to(device=device, dtype=dtype)  # -> (1, 3, H, W)
        z0 = pipe.vae.encode(pixels).latent_dist.sample(generator) * pipe.vae.config.scaling_factor
        noise = torch.randn(z0.shape, generator=generator, dtype=dtype).to(device)
        # q(z_t | z_0) at the first kept timestep, Ho et al. 2020, Eq. 4
        latents = scheduler.add_noise(z0, noise, timesteps[:1])

    # 5. Denoise: predict the noise twice (negative, prompt), guide, and step to the previous timestep.
    step_kwargs = _step_kwargs(scheduler, generator)
    for i, t in enumerate(timesteps):
        x_in = torch.cat([latents] * 2) if do_guidance else latents  # (2 or 1, 4, h, w)
        x_in = scheduler.scale_model_input(x_in, t)  # Euler: / sqrt(sigma^2 + 1); DDIM: as is
        eps = pipe.unet(x_in, t, encoder_hidden_states=text, return_dict=False)[0]
        if do_guidance:
            eps_uncond, eps_cond = eps.chunk(2)
            eps = classifier_free_guidance(eps_uncond, eps_cond, guidance_scale)
        out = scheduler.step(eps, t, latents, **step_kwargs)
        if on_step is not None:
            pred_x0 = getattr(out, "pred_original_sample", None)
            if pred_x0 is None:
                pred_x0 = predicted_x0(scheduler, x_in[-1:], eps, t)
            on_step(i, t, out.prev_sample, pred_x0)
        latents = out.prev_sample

    # 6. Decode: undo the latent scaling, run the VAE decoder, map [-1, 1] to 8-bit pixels.
    z0 = latents / pipe.vae.config.scaling_factor
    image = pipe.vae.decode(z0, return_dict=False)[0]  # (1, 3, H, W) in about [-1, 1]
    # real SD repositories ship a filter; the random builds have none
    image, nsfw = pipe.run_safety_checker(image, device, dtype)
    if nsfw is not None and nsfw[0]:
        warnings.warn("the safety checker flagged this image; it is returned black", stacklevel=2)
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
    else:
        image = (image / 2 + 0.5).clamp(0, 1)
        pixels = (image.cpu().permute(0, 2, 3, 1).float().numpy()[0] * 255).round().astype("uint8")
    from PIL import Image

    return Image.fromarray(pixels)
