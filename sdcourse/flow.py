"""Flow matching and rectified flow: straight paths from data to noise (lesson 12).

The path (Lipman et al. 2022, arXiv:2210.02747, Sec. 4.1 with sigma_min = 0; Liu et al. 2022,
arXiv:2209.03003, Eq. 1), in ``diffusers``' convention (noise at t = 1, sigma = t):

    x_t = (1 - t) x_0 + t eps,        t in [0, 1],  eps ~ N(0, I)

Its velocity dx_t/dt = eps - x_0 is the target a network v_theta(x_t, t) learns with the
conditional flow-matching loss E || v_theta(x_t, t) - (eps - x_0) ||^2 (Lipman et al. Eq. 23), and
sampling integrates dx/dt = v_theta from t = 1 (noise) to t = 0 with Euler's method
(``FlowMatchEulerSampler``, equal to ``diffusers.FlowMatchEulerDiscreteScheduler``). Stable
Diffusion 3 (Esser et al. 2024, arXiv:2403.03206) draws t from a logit-normal (Sec. 3.1) and
shifts the noise levels towards 1 at high resolution (Sec. 5.3.2). The network sees
t * ``num_train_timesteps`` as its timestep, as in ``diffusers``.

Between parameterizations (from x_t = (1 - t) x_0 + t eps and v = eps - x_0):
x_0 = x_t - t v, eps = x_t + (1 - t) v, v = (eps - x_t) / (1 - t) = (x_t - x_0) / t.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import validate
from .samplers import SamplerOutput
from .solvers.sigmas import StepTracker
from .unet import NULL_LABEL

Tensor = torch.Tensor
TIMESTEP_SAMPLING = ("logit_normal", "uniform")


def _per_sample(t: Tensor, like: Tensor) -> Tensor:
    """t (B,) or a scalar, shaped to broadcast over like (B, C, H, W)."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.view(-1, *[1] * (like.ndim - 1)) if t.ndim else t


def _check_t(t) -> Tensor:
    t = validate.floating_tensor("t", torch.as_tensor(t, dtype=torch.float64) if not isinstance(t, Tensor) else t)
    if bool(((t < 0) | (t > 1) | t.isnan()).any()):
        raise ValueError(f"t must lie in [0, 1] (0 = data, 1 = noise), got values from {t.min().item():g} "
                         f"to {t.max().item():g}")
    return t


def interpolate(x0: Tensor, noise: Tensor, t) -> Tensor:
    """x_t = (1 - t) x_0 + t eps: the straight path from the data (t = 0) to the noise (t = 1)."""
    validate.floating_tensor("x0", x0)
    validate.same_shape("noise", noise, "x0", x0)
    t = _per_sample(_check_t(t), x0)
    return (1 - t) * x0 + t * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """v = dx_t/dt = eps - x_0, the same at every t of the path."""
    validate.same_shape("noise", noise, "x0", x0)
    return noise - x0


def velocity_to_x0(x_t: Tensor, velocity: Tensor, t) -> Tensor:
    """x_0 = x_t - t v."""
    return x_t - _per_sample(_check_t(t), x_t) * velocity


def velocity_to_eps(x_t: Tensor, velocity: Tensor, t) -> Tensor:
    """eps = x_t + (1 - t) v."""
    return x_t + (1 - _per_sample(_check_t(t), x_t)) * velocity


def eps_to_velocity(x_t: Tensor, eps: Tensor, t) -> Tensor:
    """v = (eps - x_t) / (1 - t), undefined at t = 1 (pure noise says nothing about x_0)."""
    t = _check_t(t)
    if bool((t >= 1).any()):
        raise ValueError("t must be < 1 to turn a noise prediction into a velocity (at t = 1, x_t = eps)")
    return (eps - x_t) / (1 - _per_sample(t, x_t))


def x0_to_velocity(x_t: Tensor, x0: Tensor, t) -> Tensor:
    """v = (x_t - x_0) / t, undefined at t = 0 (clean data says nothing about eps)."""
    t = _check_t(t)
    if bool((t <= 0).any()):
        raise ValueError("t must be > 0 to turn an x0 prediction into a velocity (at t = 0, x_t = x_0)")
    return (x_t - x0) / _per_sample(t, x_t)


def sample_timesteps(batch: int, generator: torch.Generator, sampling: str = "logit_normal",
                     mean: float = 0.0, std: float = 1.0) -> Tensor:
    """t in (0, 1) for a training batch: logit-normal, t = sigmoid(u) with u ~ N(mean, std^2)
    (Esser et al. 2024, Sec. 3.1, Eq. 19; SD3 trains with mean 0, std 1), or uniform."""
    batch = validate.integer("batch", batch, 1)
    validate.one_of("sampling", sampling, TIMESTEP_SAMPLING)
    if sampling == "uniform":
        return torch.rand(batch, generator=generator)
    std = validate.number("std", std, 0.0, low_open=True)
    return torch.sigmoid(validate.number("mean", mean) + std * torch.randn(batch, generator=generator))


def shift_sigmas(sigmas, shift: float):
    """Esser et al. 2024, Sec. 5.3.2: t -> shift t / (1 + (shift - 1) t), more time near the noise.

    SD3 uses shift = 3 at 1024 x 1024; shift = sqrt(m / n) moves a schedule tuned for n pixels to m
    (``resolution_shift``). Equal to ``FlowMatchEulerDiscreteScheduler``'s ``shift``.
    """
    shift = validate.number("shift", shift, 0.0, low_open=True)
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def resolution_shift(num_pixels: int, base_pixels: int) -> float:
    """The shift sqrt(m / n) that keeps the signal-to-noise ratio of a schedule tuned at n = base_pixels."""
    m = validate.integer("num_pixels", num_pixels, 1)
    n = validate.integer("base_pixels", base_pixels, 1)
    return math.sqrt(m / n)


def flow_matching_loss(model: nn.Module, x0: Tensor, labels: Tensor | None, gen: torch.Generator,
                       label_dropout: float = 0.1, sampling: str = "logit_normal",
                       num_train_timesteps: int = 1000) -> Tensor:
    """The conditional flow-matching loss || v_theta(x_t, t, y) - (eps - x_0) ||^2 (Lipman et al. Eq. 23).

    t from ``sample_timesteps``, eps ~ N(0, I), labels dropped to NULL_LABEL with probability
    ``label_dropout`` (for guidance, lesson 04); the network sees t * ``num_train_timesteps``.
    Drawn in the order t, eps, dropout, like ``train.ddpm_loss``, so it plugs into ``train.fit``.
    """
    t = sample_timesteps(x0.shape[0], gen, sampling)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
    return _velocity_loss(model, x0, noise, t, labels, gen, label_dropout, num_train_timesteps)


def _velocity_loss(model, x0, noise, t, labels, gen, label_dropout: float, num_train_timesteps: int) -> Tensor:
    """|| v_theta(x_t, t, y) - (noise - x0) ||^2 with labels dropped to NULL_LABEL at ``label_dropout``."""
    if labels is not None:
        drop = torch.rand(x0.shape[0], generator=gen) < label_dropout
        labels = labels.masked_fill(drop.to(labels.device), NULL_LABEL)
    t = t.to(x0.device, x0.dtype)
    x_t = interpolate(x0, noise, t)
    return F.mse_loss(model(x_t, t * num_train_timesteps, labels), velocity_target(x0, noise))


def reflow_loss(model: nn.Module, pairs: Tensor, labels: Tensor | None, gen: torch.Generator,
                label_dropout: float = 0.1, sampling: str = "uniform", num_train_timesteps: int = 1000) -> Tensor:
    """Rectified flow's reflow (Liu et al. 2022, Sec. 2.2, Eq. 1 with the coupling (Z_0, Z_1)): the
    flow-matching loss on fixed pairs instead of independent draws.

    ``pairs`` (B, 2C, ...) holds a sample x_0 and the noise eps it was generated from, stacked along
    axis 1 (so that ``train.fit`` can draw them as one batch). Training on pairs the current model
    connects straightens its paths: the 2-rectified flow. t ~ Uniform(0, 1) by default, as there.
    """
    validate.floating_tensor("pairs", pairs)
    if pairs.ndim < 2 or pairs.shape[1] % 2:
        raise ValueError(f"pairs must be (B, 2C, ...): x_0 and its noise along axis 1, got {tuple(pairs.shape)}")
    x0, noise = pairs.chunk(2, dim=1)
    t = sample_timesteps(x0.shape[0], gen, sampling)
    return _velocity_loss(model, x0, noise, t, labels, gen, label_dropout, num_train_timesteps)


@torch.no_grad()
def reflow_pairs(model: nn.Module, noise: Tensor, labels: Tensor | None = None, num_inference_steps: int = 100,
                 batch_size: int = 500, progress: bool = False) -> Tensor:
    """The coupling a trained flow makes (Liu et al. 2022, Sec. 2.2): each noise eps (N, C, ...)
    carried to its sample by the flow's Euler ODE (``FlowMatchEulerSampler``), conditioned on
    ``labels`` (N,) if given, and returned beside it as (N, 2C, ...) = [x_0, eps] along axis 1,
    the layout ``reflow_loss`` takes. Runs ``batch_size`` noises at a time."""
    validate.floating_tensor("noise", noise)
    batch_size = validate.integer("batch_size", batch_size, 1)
    if labels is not None and labels.shape != noise.shape[:1]:
        raise ValueError(f"labels must have shape (N,) = ({noise.shape[0]},), got {tuple(labels.shape)}")
    samples = []
    for start in tqdm(range(0, len(noise), batch_size), desc="reflow pairs", disable=not progress, leave=False):
        x = noise[start:start + batch_size]
        y = None if labels is None else labels[start:start + batch_size]
        sampler = FlowMatchEulerSampler(num_inference_steps)
        for t in sampler.timesteps:
            x = sampler.step(model(x, t.expand(len(x)), y), t, x).prev_sample
        samples.append(x)
    return torch.cat([torch.cat(samples), noise], 1)


class FlowMatchEulerSampler:
    """Euler's method on dx/dt = v_theta(x, t) from t = 1 (noise) to 0, the sampler of SD3.

    ``sigmas`` are the n + 1 values of t visited (the last 0), ``timesteps`` = sigmas * T (the
    network's input). As in ``diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)`` after
    ``set_timesteps(n)``: evenly spaced from 1 to the shifted sigma of the first training timestep
    (1 / T), then shifted (so that end is shifted twice, exactly as there).

    Args:
        num_inference_steps: n >= 1, also the number of network evaluations.
        shift: ``shift_sigmas``' shift (1 = none; SD3 uses 3).
        num_train_timesteps: T, the scale of the network's timestep input.
    """

    init_noise_sigma = 1.0  # x_1 = eps ~ N(0, I)

    def __init__(self, num_inference_steps: int, shift: float = 1.0, num_train_timesteps: int = 1000):
        self.num_inference_steps = validate.integer("num_inference_steps", num_inference_steps, 1)
        self.shift = validate.number("shift", shift, 0.0, low_open=True)
        T = self.num_train_timesteps = validate.integer("num_train_timesteps", num_train_timesteps, 1)
        sigma_min = float(shift_sigmas(torch.tensor(1.0 / T, dtype=torch.float32), self.shift))
        ts = torch.linspace(T, sigma_min * T, self.num_inference_steps, dtype=torch.float64)  # np.linspace
        sigmas = shift_sigmas(ts / T, self.shift).float()
        self.sigmas = torch.cat([sigmas, torch.zeros(1)])  # (n + 1,) float32, t of each step and 0
        self.timesteps = sigmas * T  # (n,)
        self._tracker = StepTracker(self.timesteps)

    def scale_model_input(self, x: Tensor, t) -> Tensor:
        """The network takes x_t as it is (the common contract)."""
        self._tracker.locate(t)
        return x

    def step(self, model_output: Tensor, t, x: Tensor, generator: torch.Generator | None = None) -> SamplerOutput:
        """x_next = x + (t_next - t) v; the predicted x_0 is x - t v."""
        validate.floating_tensor("model_output", model_output)
        validate.floating_tensor("x", x)
        validate.same_shape("model_output", model_output, "x", x)
        i = self._tracker.locate(t)
        sigma, sigma_next = self.sigmas[i].item(), self.sigmas[i + 1].item()
        self._tracker.advance(i)
        return SamplerOutput(prev_sample=x + (sigma_next - sigma) * model_output, pred_x0=x - sigma * model_output)

    def __repr__(self) -> str:
        return f"FlowMatchEulerSampler(num_inference_steps={self.num_inference_steps}, shift={self.shift})"
