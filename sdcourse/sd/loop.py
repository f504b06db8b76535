"""The Stable Diffusion sampling loop, written out by hand (lesson 08).

Latent diffusion (Rombach et al. 2022, arXiv:2112.10752) runs the reverse process of a DDPM
(Ho et al. 2020, arXiv:2006.11239) in the 4 x H/8 x W/8 latent space of a VAE, with a UNet that
attends to CLIP text embeddings (arXiv:2103.00020) and classifier-free guidance
(Ho and Salimans 2022, arXiv:2207.12598) towards the prompt.

``generate(pipe, prompt, ...)`` is the loop in the phases of ``StableDiffusionPipeline.__call__``
(check inputs, encode the prompt, timesteps, prepare latents, denoise with guidance, decode) and
returns the same image as ``pipe(prompt, ..., generator=torch.Generator("cpu").manual_seed(seed))``.
Its pieces are public for the lesson to show one at a time: ``encode_prompt``, ``make_scheduler``,
``predicted_x0`` and ``latents_to_images`` (latents to PIL images through the VAE decoder).
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import torch
from PIL import Image

from .. import validate
from ..guidance import classifier_free_guidance
from .tokenizer import truncated_part

_SCHEDULER_CLASSES = {  # name -> (diffusers class, extra config); all share the pipeline's beta schedule
    "ddim": ("DDIMScheduler", {}),  # lesson 03
    "euler": ("EulerDiscreteScheduler", {}),  # lesson 11: sdcourse.solvers.EulerSampler
    "heun": ("HeunDiscreteScheduler", {}),  # HeunSampler: two UNet calls per step but the last
    "dpmsolver": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),  # (2M)
}
SCHEDULERS = tuple(_SCHEDULER_CLASSES)  # the names of `sdcourse sample --sampler` (lesson 11), DDPM aside
KARRAS = ("euler", "heun", "dpmsolver")  # the ODE solvers, which take Karras et al.'s sigmas (rho = 7)


def make_scheduler(pipe, name: str, karras: bool = False):
    """A fresh scheduler ``name`` (one of ``SCHEDULERS``) on ``pipe``'s noise schedule; ``karras``
    spaces an ODE solver's sigmas as Karras et al. 2022 (arXiv:2206.00364, Eq. 5) do."""
    import diffusers  # lazy: diffusers takes seconds to import

    if name not in _SCHEDULER_CLASSES:
        raise ValueError(f"scheduler must be one of {SCHEDULERS} (or a diffusers scheduler), got {name!r}")
    if karras and name not in KARRAS:
        raise ValueError(f"karras=True needs one of the ODE solvers {KARRAS}, got scheduler {name!r}")
    cls_name, extra = _SCHEDULER_CLASSES[name]
    extra = {**extra, "use_karras_sigmas": True} if karras else extra
    return getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)


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


MAX_INFERENCE_STEPS = 1000  # the training timesteps of SD's schedulers: more steps would repeat timesteps
MAX_SIDE = 4096  # pixels; 4096x4096 already needs tens of GiB of attention memory in SD 1.x


def check_inputs(
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
    validate.number("guidance_scale", guidance_scale, low=0, meaning="(1 = no guidance)")
    validate.integer("num_inference_steps", num_inference_steps, low=1, high=MAX_INFERENCE_STEPS)
    for name, value in (("height", height), ("width", width)):
        if value is not None and (validate.integer(name, value, low=8, high=MAX_SIDE) % 8):
            raise ValueError(
                f"{name} must be a multiple of 8 in [8, {MAX_SIDE}] (the VAE shrinks by 8), got {value!r}"
            )
    if init_image is None:
        return
    validate.number("strength", strength, low=0, high=1, meaning="(0 keeps the image, 1 ignores it)")
    if int(num_inference_steps * strength) < 1:
        raise ValueError(
            f"strength={strength} with num_inference_steps={num_inference_steps} leaves "
            f"int({num_inference_steps} x {strength}) = 0 denoising steps; use strength "
            f">= 1/num_inference_steps"
        )
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
    karras: bool = False,
    on_step=None,
):
    """One image for ``prompt``: the sampling loop of ``StableDiffusionPipeline``, written out.

    ``init_image`` (a PIL RGB image, sides multiples of 8) turns it into img2img: the image is
    encoded, noised to the timestep ``strength`` of the way up, and denoised from there.
    ``scheduler``: None (the pipeline's own), a name of ``SCHEDULERS`` (with ``karras`` for Karras
    sigmas, ``make_scheduler``) or a diffusers scheduler.
    ``on_step(i, t, latents, pred_x0)`` sees each step's latents (1, 4, H/8, W/8) and predicted x_0.
    Returns a PIL image equal to ``pipe(prompt, ..., generator=torch.Generator("cpu").manual_seed(seed))``
    (``StableDiffusionImg2ImgPipeline`` for img2img).
    """
    # 1. Check inputs; defaults from the UNet's training resolution (SD 1.5: 64 latents -> 512 px).
    check_inputs(prompt, negative_prompt, guidance_scale, num_inference_steps, height, width,
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
    if isinstance(scheduler, str):
        scheduler = make_scheduler(pipe, scheduler, karras)
    elif karras:
        raise ValueError("karras=True needs scheduler given by name, one of "
                         f"{KARRAS}; got {'the pipeline' if scheduler is None else 'a'}'s own scheduler")
    if scheduler is None:
        scheduler = pipe.scheduler

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
        pixels = to_pixels(image)[0]  # (H, W, 3)
    return Image.fromarray(pixels)


# ---- pixels and previews -------------------------------------------------------------------------


def to_pixels(image: torch.Tensor) -> np.ndarray:
    """The VAE decoder's output (B, 3, H, W), about [-1, 1] -> 8-bit pixels (B, H, W, 3)."""
    image = (image / 2 + 0.5).clamp(0, 1)
    return (image.cpu().permute(0, 2, 3, 1).float().numpy() * 255).round().astype("uint8")


@torch.no_grad()
def latents_to_images(pipe, latents: torch.Tensor) -> list[Image.Image]:
    """Latents (B, 4, h, w) -> list of B PIL images, through the VAE decoder (previews of x_0)."""
    image = pipe.vae.decode(latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return [Image.fromarray(p) for p in to_pixels(image)]
