"""The sampling loop: from x_T ~ N(0, I) down to x_0 with any sampler (lesson 03; also 02, 04, 07).

``sample(model, sampler, shape)`` is the loop of a ``diffusers`` pipeline with the denoiser and the
sampler kept apart: it starts from noise scaled by ``sampler.init_noise_sigma``, and at each of
``sampler.timesteps`` asks the model for eps_theta(``sampler.scale_model_input(x, t)``, t, y) and
hands it to ``sampler.step``, which returns the sample at the previous timestep (the samplers
and their equations are in ``samplers.py`` and ``solvers/``). ``return_trajectory`` keeps every x_t and
predicted x_0 for lesson 03's figures and animation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

Tensor = torch.Tensor


@dataclass(frozen=True)
class Trajectory:
    """The states of one run of ``sample`` (on the CPU), for figures and animations.

    ``x_t[i]`` is the sample that entered the step at ``timesteps[i]``; ``x_t[-1]`` is the final
    output x_0. ``pred_x0[i]`` is the predicted x_0 at ``timesteps[i]``.
    """

    timesteps: Tensor  # (S,) int64, descending: the timesteps visited
    x_t: Tensor  # (S + 1, B, C, H, W): x_T, then the output of every step
    pred_x0: Tensor  # (S, B, C, H, W): x0_hat at every step


def _model_device(model) -> torch.device:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


@torch.no_grad()
def sample(
    model,
    sampler,
    shape: tuple[int, ...],
    labels: Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    return_trajectory: bool = False,
    device: torch.device | str | None = None,
):
    """Run the reverse process from x_T ~ N(0, I) down to x_0, as a ``diffusers`` pipeline.

    Args:
        model: ``model(x_t, t, labels) -> eps``: x_t (B, C, H, W), t int64 (B,), labels (B,)/None.
        sampler: ``DDPMSampler``, ``DDIMSampler`` or a solver from ``sdcourse.solvers``: anything
            with ``timesteps``, ``init_noise_sigma``, ``scale_model_input`` and ``step``.
        shape: (B, C, H, W) of the samples.
        labels: int64 class labels (B,), or None for an unconditional model.
        generator: draws x_T (on the generator's device, then moved) and the sampler's noise.
        progress: show a tqdm bar over the timesteps.
        return_trajectory: also return a ``Trajectory`` of every x_t and x0_hat (kept on the CPU).
        device: where to run; default: the model's first parameter's device, else the CPU.
    Returns:
        x_0, (B, C, H, W); with ``return_trajectory``, the pair ``(x_0, trajectory)``.
    """
    if not all(hasattr(sampler, name) for name in ("timesteps", "init_noise_sigma", "scale_model_input", "step")):
        raise ValueError(
            "sampler must follow the scheduler contract (timesteps, init_noise_sigma, scale_model_input, step), "
            f"like DDPMSampler, DDIMSampler or sdcourse.solvers' samplers; got {type(sampler).__name__}"
        )
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be (B, C, ...) with every size >= 1, got {shape}")
    batch = shape[0]
    device = torch.device(device) if device is not None else _model_device(model)
    if labels is not None:
        labels = torch.as_tensor(labels)
        if labels.shape != (batch,):
            raise ValueError(f"labels must have shape (B,) = ({batch},), got {tuple(labels.shape)}")
        labels = labels.to(device)

    rand_device = generator.device if generator is not None else device
    x = torch.randn(shape, generator=generator, device=rand_device).to(device)  # x_T ~ N(0, I)
    x = x * sampler.init_noise_sigma  # 1, or sigma_max for the solvers that work in sigma (lesson 11)
    xs, x0s = [x.cpu()] if return_trajectory else None, []
    name = type(sampler).__name__.replace("Sampler", "")
    for t in tqdm(sampler.timesteps, desc=f"{name} sampling", disable=not progress, leave=False):
        t_batch = t.to(device).expand(batch)  # (B,): int64 for DDPM/DDIM, fractional for Euler/Heun
        eps = model(sampler.scale_model_input(x, t), t_batch, labels)
        out = sampler.step(eps, t, x, generator=generator)
        x = out.prev_sample
        if return_trajectory:
            xs.append(x.cpu())
            x0s.append(out.pred_x0.cpu())
    if not return_trajectory:
        return x
    return x, Trajectory(timesteps=sampler.timesteps.clone(), x_t=torch.stack(xs), pred_x0=torch.stack(x0s))
