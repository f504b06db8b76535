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

What it buys (lesson 07's table, ``compare_spaces``): the denoiser runs on fewer numbers at every
sampling step, the VAE's decoder runs once per image. At 28x28 the saving is small; at SD's 512x512
it is the difference between feasible and not (``sd15_costs``: the same UNet on pixels).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

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


def to_diffusion_latents(mean: Tensor, logvar: Tensor, eps: Tensor, scaling_factor: float) -> Tensor:
    """What the denoiser is trained on: z0 = pad(scaling_factor * (mean + exp(logvar / 2) * eps)).

    ``mean``, ``logvar``, ``eps`` (B, 4, 7, 7) -> (B, 4, 8, 8). A sample of q(z | x) (Kingma and
    Welling, Eq. 10), scaled to unit variance (Rombach et al. 2022, Sec. 4.3.2), padded for the UNet.
    """
    return pad(vae_module.reparameterize(mean, logvar, eps) * scaling_factor)


def from_diffusion_latents(z0: Tensor, scaling_factor: float) -> Tensor:
    """What the decoder takes: crop(z0) / scaling_factor; (B, 4, 8, 8) -> (B, 4, 7, 7).

    diffusers: ``vae.decode(latents / vae.config.scaling_factor)``.
    """
    return crop(z0) / scaling_factor


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
    z0 = to_diffusion_latents(mean, logvar, eps, scaling_factor)  # Rombach et al. Sec. 3.3
    return ddpm_loss(model, schedule, z0.contiguous(), labels, gen, label_dropout)


@torch.no_grad()
def sample_digits(model, autoencoder: vae_module.VAE, sampler, labels: Tensor,
                  generator: torch.Generator | None = None, progress: bool = True) -> Tensor:
    """Sample latents (B, 4, 8, 8) with ``sampler``, crop, unscale and decode: images (B, 1, 28, 28)."""
    from .samplers import sample

    c, s = model.config.in_channels, model.config.image_size
    z0 = sample(model, sampler, (len(labels), c, s, s), labels=labels, generator=generator, progress=progress)
    return autoencoder.decode(from_diffusion_latents(z0, autoencoder.scaling_factor))  # x = D(z0 / scaling_factor)


# ---- lesson 07: what latent diffusion costs, against pixel space ------------------------------


@dataclass(frozen=True)
class SpaceCost:
    """One row of lesson 07's table: a class-conditional DDPM in pixel or latent space."""

    name: str  # "pixel" or "latent"
    shape: tuple[int, ...]  # what the denoiser sees per digit, (C, H, W)
    parameters: int  # of the denoiser
    mflops_per_step: float  # one denoiser call on one digit (measure.flops)
    decode_mflops: float  # the VAE decoder, once per digit (0 in pixel space)
    train_images_per_s: float  # full training steps: loss, backward, AdamW (the encoder ran once, before)
    sampling_seconds: float  # n digits with DDIM, decoding included
    accuracy: float  # conditional accuracy of the n digits (evaluate.py)
    fid: float  # classifier-feature FID against n real test digits
    fid_floor: float  # real-vs-real FID at the same n
    n: int  # digits sampled

    def as_dict(self) -> dict:
        return asdict(self)


def training_images_per_second(model, loss_fn, data: Tensor, labels: Tensor, batch_size: int = 64,
                               steps: int = 5, seed: int = 0) -> float:
    """Median images/s of ``steps`` full training steps (after one warm-up) on a copy of ``model``.

    ``loss_fn(model, x, y, gen)`` as in ``train.fit``; ``data`` (N, ...) and ``labels`` (N,).
    """
    from .measure import median_time

    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    model = copy.deepcopy(model).train().requires_grad_(True)
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    counter = iter(range(10**9))

    def step() -> None:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + next(counter))
        index = torch.randint(0, len(data), (batch_size,), generator=gen)
        x = data[index].to(device).contiguous(memory_format=torch.channels_last)  # as train.fit does
        loss = loss_fn(model, x, labels[index].to(device), gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    return batch_size / median_time(step, device, budget_s=0.0, min_repeats=steps, max_repeats=steps)


def compare_spaces(pixel, latent, autoencoder: vae_module.VAE, n: int = 500, num_inference_steps: int = 50,
                   train_steps: int = 5, batch_size: int = 64, seed: int = 0,
                   progress: bool = True) -> tuple[list[SpaceCost], dict[str, Tensor]]:
    """Lesson 07's table: the pixel-space DDPM ``pixel`` against the latent one ``latent`` (+ its VAE).

    Both sample the same labels (0..9 repeated, n digits) with DDIM (clipping x0_hat to [-1, 1]
    only in pixel space: scaled latents are not in [-1, 1]) and are scored by ``evaluate.py``.
    Returns the two rows and the samples {"pixel": (n, 1, 28, 28), "latent": (n, 1, 28, 28)}.
    """
    from . import evaluate, measure
    from .data import load_mnist
    from .runs import ddpm_schedule
    from .samplers import DDIMSampler, sample

    if n < 2:
        raise ValueError(f"n must be >= 2 (FID needs two samples), got {n}")
    digits = load_mnist("train", verbose=False)
    schedule = ddpm_schedule()
    labels = torch.arange(n) % 10
    speed_digits = slice(0, 8 * batch_size)  # enough to draw the timed batches from; the data do not matter
    posteriors = encode_posteriors(autoencoder, digits.images[speed_digits])  # once, as runs.train_ldm does
    rows, samples = [], {}
    for name, model in (("pixel", pixel), ("latent", latent)):
        in_latent_space = name == "latent"
        c, s = model.config.in_channels, model.config.image_size
        device = next(model.parameters()).device
        one = (torch.zeros(1, c, s, s, device=device), torch.tensor([500], device=device),
               torch.tensor([0], device=device))  # one digit: x_t, t, label
        z = torch.zeros(1, *autoencoder.config.latent_shape, device=next(autoencoder.parameters()).device)
        with torch.no_grad():
            step_flops = measure.flops(lambda m=model, one=one: m(*one))
            decode_flops = measure.flops(lambda z=z: autoencoder.decode(z))

        def loss(m, x, y, gen, latent_space=in_latent_space):
            if latent_space:
                return latent_ddpm_loss(m, schedule, x, y, gen, autoencoder.scaling_factor)
            return ddpm_loss(m, schedule, x, y, gen)

        speed = training_images_per_second(model, loss, posteriors if in_latent_space else digits.images[speed_digits],
                                           digits.labels[speed_digits], batch_size, train_steps, seed)
        sampler = DDIMSampler(schedule, num_inference_steps, clip_sample=not in_latent_space)
        gen = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        if in_latent_space:
            images = sample_digits(model, autoencoder, sampler, labels, gen, progress)
        else:
            images = sample(model, sampler, (n, c, s, s), labels=labels, generator=gen, progress=progress)
        images = images.cpu()  # on a GPU this also waits for the work to finish
        seconds = time.perf_counter() - start
        quality = evaluate.evaluate_samples(images, labels)
        samples[name] = images
        rows.append(SpaceCost(name, (c, s, s), sum(p.numel() for p in model.parameters()), step_flops / 1e6,
                              decode_flops / 1e6 if in_latent_space else 0.0, speed, seconds, quality.accuracy,
                              quality.fid, quality.fid_floor, n))
    return rows, samples


def format_table(rows: list[SpaceCost], num_inference_steps: int) -> str:
    """The rows as a text table, one column per space, plus the latent/pixel ratio."""
    lines = [("", *(r.name for r in rows), "latent / pixel" if len(rows) == 2 else "")]

    def ratio(get) -> str:
        if len(rows) != 2:
            return ""
        return f"{get(rows[1]) / get(rows[0]):.2f}x" if get(rows[0]) else "n/a"

    spec = [
        ("numbers the denoiser sees", lambda r: "x".join(map(str, r.shape)), lambda r: _numel(r.shape)),
        ("parameters", lambda r: f"{r.parameters / 1e6:.2f} M", lambda r: r.parameters),
        ("MFLOPs per denoising step", lambda r: f"{r.mflops_per_step:.1f}", lambda r: r.mflops_per_step),
        (f"MFLOPs per digit ({num_inference_steps} steps + decode)",
         lambda r: f"{r.mflops_per_step * num_inference_steps + r.decode_mflops:.0f}",
         lambda r: r.mflops_per_step * num_inference_steps + r.decode_mflops),
        ("training images / s", lambda r: f"{r.train_images_per_s:.0f}", lambda r: r.train_images_per_s),
        (f"sampling seconds (n digits, DDIM-{num_inference_steps})", lambda r: f"{r.sampling_seconds:.1f}",
         lambda r: r.sampling_seconds),
        ("conditional accuracy", lambda r: f"{100 * r.accuracy:.1f} %", lambda r: r.accuracy),
        ("FID (real-vs-real floor)", lambda r: f"{r.fid:.1f} ({r.fid_floor:.1f})", lambda r: r.fid),
    ]
    for label, show, value in spec:
        lines.append((label, *(show(r) for r in rows), ratio(value)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join([out[0], "-" * len(out[0]), *out[1:]]) + f"\n(n = {rows[0].n} digits per space)"


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for size in shape:
        out *= size
    return out


def sd15_costs() -> dict[str, float]:
    """TFLOPs of SD 1.5's UNet per step on its 4x64x64 latent and on 3x512x512 pixels, and of its
    VAE decoder once; counted on the ``meta`` device (no memory, no weights, about 3 s)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from . import measure, sd

    build = sd.BUILDS["sd15-random"]
    unet_args = sd.unet_config(build)
    out = {}
    with torch.device("meta"):
        context = torch.empty(1, 77, unet_args["cross_attention_dim"])  # the text encoder's 77 tokens
        for key, channels, size in (("unet_step_latent_4x64x64", 4, 64), ("unet_step_pixel_3x512x512", 3, 512)):
            unet = UNet2DConditionModel(**{**unet_args, "in_channels": channels, "out_channels": channels,
                                           "sample_size": size})
            x = torch.empty(1, channels, size, size)
            call = lambda u=unet, x=x: u(x, torch.tensor([500]), encoder_hidden_states=context)  # noqa: E731
            out[key] = measure.flops(call) / 1e12
        decoder = AutoencoderKL(**sd.vae_config(build))
        out["vae_decode_once"] = measure.flops(lambda: decoder.decode(torch.empty(1, 4, 64, 64))) / 1e12
    return out
