"""Digits from one of the course's checkpoints: ``sdcourse sample`` and ``sdcourse evaluate``.

``from_checkpoint("ddpm_mnist", labels)`` loads the checkpoint once (``checkpoint.load_model``:
the model, its card and the schedule it was trained with), builds the sampler of lesson 03,
wraps the model in lesson 04's classifier-free guidance when asked, and for a latent model
(lesson 07) samples latents and decodes them with the VAE named in its card, taken from the
same folder as the checkpoint. A flow-matching model (lesson 12) predicts a velocity and samples
with ``FlowMatchEulerSampler``, its own ODE's Euler method.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import checkpoint, ldm, validate
from .flow import FlowMatchEulerSampler
from .guidance import GuidedModel
from .samplers import DDIMSampler, DDPMSampler, sample
from .schedules import NoiseSchedule
from .solvers import DPMSolverSampler, EulerSampler, HeunSampler

SAMPLERS = ("ddim", "ddpm", "euler", "heun", "dpmsolver")
DEFAULT_DDIM_STEPS = 50
SOLVERS = {"euler": EulerSampler, "heun": HeunSampler, "dpmsolver": DPMSolverSampler}  # lesson 11


def default_sampler(kind: str) -> str:
    """What ``sdcourse sample`` uses without --sampler: DDIM for a diffusion model, Euler for a flow."""
    return "euler" if kind == "flow" else "ddim"


def sampler_for(name: str, directory: str | Path | None = None, sampler: str | None = None) -> str:
    """``sampler``, or without one the default for checkpoint ``name``'s kind (from its card)."""
    card = checkpoint.read_card(checkpoint.checkpoint_file(name, directory)) if sampler is None else {}
    return sampler or default_sampler(card.get("kind", "ddpm"))


def make_flow_sampler(name: str = "euler", steps: int | None = None, eta: float = 0.0, karras: bool = False):
    """A flow-matching model integrates dx/dt = v with Euler (``FlowMatchEulerSampler``): only "euler"."""
    if name != "euler" or karras or eta:
        raise ValueError(f"a flow-matching checkpoint samples with --sampler euler (no --karras, --eta 0), "
                         f"got sampler {name!r}, karras={karras}, eta={eta}")
    return FlowMatchEulerSampler(DEFAULT_DDIM_STEPS if steps is None else steps)


def make_sampler(schedule: NoiseSchedule, name: str = "ddim", steps: int | None = None, eta: float = 0.0,
                 clip_sample: bool = True, karras: bool = False):
    """The sampler ``name`` on ``schedule``: "ddpm" visits every timestep; "ddim" (lesson 03) and the
    ODE solvers "euler", "heun", "dpmsolver" (lesson 11, ``karras`` for Karras sigmas) ``steps`` of them."""
    validate.one_of("sampler", name, SAMPLERS)
    if karras and name not in SOLVERS:
        raise ValueError(f"--karras needs one of the ODE solvers {tuple(SOLVERS)}, got sampler {name!r}")
    if name == "ddpm":
        if steps not in (None, schedule.num_steps):
            raise ValueError(f"--steps must be {schedule.num_steps} (or omitted) with the DDPM sampler, got {steps}")
        return DDPMSampler(schedule, clip_sample=clip_sample)
    steps = DEFAULT_DDIM_STEPS if steps is None else steps
    if name in SOLVERS:
        return SOLVERS[name](schedule, steps, use_karras_sigmas=karras)
    return DDIMSampler(schedule, steps, eta=eta, clip_sample=clip_sample)


@torch.no_grad()
def from_checkpoint(name: str, labels: torch.Tensor, sampler: str | None = None, steps: int | None = None,
                    eta: float = 0.0, seed: int = 0, guidance_scale: float = 1.0, negative_label: int | None = None,
                    directory: str | Path | None = None, progress: bool = True, karras: bool = False) -> torch.Tensor:
    """Sample one digit per entry of ``labels`` (N,) from checkpoint ``name``: images (N, 1, 28, 28) in [-1, 1].

    ``sampler`` None is ``default_sampler`` of the checkpoint's kind. Guidance (``guidance_scale``
    != 1 or a ``negative_label``) runs through ``GuidedModel`` (for a flow, on the velocity). A
    latent model is sampled without clipping (scaled latents are not in [-1, 1]) and decoded.
    """
    loaded = checkpoint.load_model(name, directory)
    model = loaded.model
    if guidance_scale != 1.0 or negative_label is not None:
        model = GuidedModel(model, guidance_scale, negative_label)  # classifier-free guidance (lesson 04)
    latent = loaded.kind == "ldm"
    sampler = sampler or default_sampler(loaded.kind)
    if loaded.kind == "flow":
        chosen = make_flow_sampler(sampler, steps, eta, karras)
    else:
        chosen = make_sampler(loaded.schedule, sampler, steps, eta, clip_sample=not latent, karras=karras)
    gen = torch.Generator().manual_seed(seed)
    if latent:
        autoencoder = checkpoint.load_model(loaded.card["vae"], loaded.path.parent).model
        return ldm.sample_and_decode(model, autoencoder, chosen, labels, gen, progress)
    cfg = loaded.model.config
    shape = (len(labels), cfg.in_channels, cfg.image_size, cfg.image_size)
    return sample(model, chosen, shape, labels=labels, generator=gen, progress=progress)
