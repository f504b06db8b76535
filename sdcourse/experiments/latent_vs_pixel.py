"""Lesson 07's comparison: what latent diffusion costs and gives, against the same DDPM on pixels.

Rombach et al. 2022 (arXiv:2112.10752), Sec. 3: a diffusion model on an autoencoder's
latents runs its denoiser on fewer numbers at every sampling step and pays for the decoder once per
image. ``compare_spaces`` measures both shipped course models (``checkpoints/ddpm_mnist`` and
``checkpoints/ldm_mnist``, each with the noise schedule from its card): FLOPs per denoiser call
(``measure.flops``), training images per second (``train.fit`` in memory), sampling time with DDIM
and decoding, conditional accuracy and FID (``evaluate``). ``sd15_costs`` counts the same question
at Stable Diffusion 1.5's size on the ``meta`` device. ``notebooks/07`` runs it small,
``bench/latent_vs_pixel.py`` at full size.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from .. import checkpoint, evaluate, measure, sd, validate
from ..checkpoint import LoadedModel
from ..data import load_mnist
from ..ldm import encode_posteriors, latent_ddpm_loss, sample_and_decode
from ..samplers import DDIMSampler
from ..sampling import sample
from ..train import TrainConfig, ddpm_loss, fit
from ..vae import VAE

Tensor = torch.Tensor


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
    fid_floor: float  # real training vs test digits at the same n, mean over disjoint subsets
    n: int  # digits sampled
    fid_floor_sd: float  # the floor's sd over those subsets
    classifier_real_accuracy: float  # the classifier on real digits: the accuracy ceiling

    def as_dict(self) -> dict:
        return asdict(self)


def training_images_per_second(model, loss_fn, data: Tensor, labels: Tensor, batch_size: int = 64,
                               steps: int = 5, seed: int = 0) -> float:
    """Images/s of full training steps on a copy of ``model``: ``train.fit`` in memory for
    1 + ``steps`` steps, the median of the step times after the first (the warm-up).

    ``loss_fn(model, x, y, gen)`` as in ``train.fit``; ``data`` (N, ...) and ``labels`` (N,).
    """
    steps, batch_size = validate.integer("steps", steps, low=1), validate.integer("batch_size", batch_size, low=1)
    config = TrainConfig(steps=1 + steps, batch_size=batch_size, lr=1e-4, ema_decay=0.0, seed=seed)
    copied = copy.deepcopy(model).train().requires_grad_(True)
    result = fit(copied, loss_fn, (data, labels), config, path=None, progress=False)
    return batch_size / statistics.median(result.step_seconds[1:])


def _schedule(loaded: LoadedModel, name: str):
    if loaded.schedule is None:
        raise ValueError(f"the {name} model {loaded.path} has no noise schedule in its card")
    return loaded.schedule


def compare_spaces(pixel: LoadedModel, latent: LoadedModel, autoencoder: VAE | None = None, n: int = 500,
                   num_inference_steps: int = 50, train_steps: int = 5, batch_size: int = 64, seed: int = 0,
                   progress: bool = True) -> tuple[list[SpaceCost], dict[str, Tensor]]:
    """Lesson 07's table: the pixel-space DDPM against the latent one, both from ``checkpoint.load_model``.

    Each model trains and samples with the noise schedule of its own card. ``autoencoder`` None loads
    the VAE named in the latent model's card from the same folder. Both sample the same labels (0..9
    repeated, n digits) with DDIM (clipping x0_hat to [-1, 1] only in pixel space: scaled latents
    are not in [-1, 1]) and are scored by ``evaluate``.
    Returns the two rows and the samples {"pixel": (n, 1, 28, 28), "latent": (n, 1, 28, 28)}.
    """
    n = validate.integer("n", n, low=2)  # FID needs two samples
    if autoencoder is None:
        autoencoder = checkpoint.load_model(latent.card["vae"], directory=latent.path.parent).model
    digits = load_mnist("train", verbose=False)
    labels = torch.arange(n) % 10
    speed_digits = slice(0, 8 * batch_size)  # enough to draw the timed batches from; the data do not matter
    posteriors = encode_posteriors(autoencoder, digits.images[speed_digits])  # once, as runs.train_ldm does
    rows, samples = [], {}
    for name, loaded in (("pixel", pixel), ("latent", latent)):
        model, schedule, in_latent_space = loaded.model, _schedule(loaded, name), name == "latent"
        c, s = model.config.in_channels, model.config.image_size
        device = next(model.parameters()).device
        one = (torch.zeros(1, c, s, s, device=device), torch.tensor([500], device=device),
               torch.tensor([0], device=device))  # one digit: x_t, t, label
        z = torch.zeros(1, *autoencoder.config.latent_shape, device=next(autoencoder.parameters()).device)
        with torch.no_grad():
            step_flops = measure.flops(lambda m=model, one=one: m(*one))
            decode_flops = measure.flops(lambda z=z: autoencoder.decode(z))

        def loss(m, x, y, gen, schedule=schedule, latent_space=in_latent_space):
            if latent_space:
                return latent_ddpm_loss(m, schedule, x, y, gen, autoencoder.scaling_factor)
            return ddpm_loss(m, schedule, x, y, gen)

        data = posteriors if in_latent_space else digits.images[speed_digits]
        speed = training_images_per_second(model, loss, data, digits.labels[speed_digits], batch_size, train_steps,
                                           seed)
        sampler = DDIMSampler(schedule, num_inference_steps, clip_sample=not in_latent_space)
        gen = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        if in_latent_space:
            images = sample_and_decode(model, autoencoder, sampler, labels, gen, progress)
        else:
            images = sample(model, sampler, (n, c, s, s), labels=labels, generator=gen, progress=progress)
        images = images.cpu()  # on a GPU this also waits for the work to finish
        seconds = time.perf_counter() - start
        quality = evaluate.evaluate_samples(images, labels)
        samples[name] = images
        rows.append(SpaceCost(name, (c, s, s), sum(p.numel() for p in model.parameters()), step_flops / 1e6,
                              decode_flops / 1e6 if in_latent_space else 0.0, speed, seconds, quality.accuracy,
                              quality.fid, quality.fid_floor, n, quality.fid_floor_sd,
                              quality.classifier_real_accuracy))
    return rows, samples


def format_table(rows: list[SpaceCost], num_inference_steps: int) -> str:
    """The rows as a text table, one column per space, plus the latent/pixel ratio."""
    lines = [("", *(r.name for r in rows), "latent / pixel" if len(rows) == 2 else "")]

    def ratio(get) -> str:
        if len(rows) != 2:
            return ""
        return f"{get(rows[1]) / get(rows[0]):.2f}x" if get(rows[0]) else "n/a"

    spec = [
        ("numbers the denoiser sees", lambda r: "x".join(map(str, r.shape)), lambda r: math.prod(r.shape)),
        ("parameters", lambda r: f"{r.parameters / 1e6:.2f} M", lambda r: r.parameters),
        ("MFLOPs per denoising step", lambda r: f"{r.mflops_per_step:.1f}", lambda r: r.mflops_per_step),
        (f"MFLOPs per digit ({num_inference_steps} steps + decode)",
         lambda r: f"{r.mflops_per_step * num_inference_steps + r.decode_mflops:.0f}",
         lambda r: r.mflops_per_step * num_inference_steps + r.decode_mflops),
        ("training images / s", lambda r: f"{r.train_images_per_s:.0f}", lambda r: r.train_images_per_s),
        (f"sampling seconds (n digits, DDIM-{num_inference_steps})", lambda r: f"{r.sampling_seconds:.1f}",
         lambda r: r.sampling_seconds),
        (f"conditional accuracy (classifier on real digits: {100 * rows[0].classifier_real_accuracy:.1f} %)",
         lambda r: f"{100 * r.accuracy:.1f} %", lambda r: r.accuracy),
        ("FID (real floor mean +/- sd)", lambda r: f"{r.fid:.1f} ({r.fid_floor:.1f} +/- {r.fid_floor_sd:.1f})",
         lambda r: r.fid),
    ]
    for label, show, value in spec:
        lines.append((label, *(show(r) for r in rows), ratio(value)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join([out[0], "-" * len(out[0]), *out[1:]]) + f"\n(n = {rows[0].n} digits per space)"


def sd15_costs() -> dict[str, float]:
    """TFLOPs of SD 1.5's UNet per step on its 4x64x64 latent and on 3x512x512 pixels, and of its
    VAE decoder once; counted on the ``meta`` device (no memory, no weights, about 3 s)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel  # lazy: diffusers takes seconds to import

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
