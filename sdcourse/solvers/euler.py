"""Euler's and Heun's methods on the probability-flow ODE, in sigma (lesson 11).

In the sigma view (``sigmas.py``) a sample at noise level sigma is x = x_0 + sigma eps, and the
probability-flow ODE (Song et al. 2021, arXiv:2011.13456, Eq. 13) becomes, with the network's
denoised estimate D(x; sigma) = x - sigma eps_theta (Karras et al. 2022, arXiv:2206.00364, Eq. 3
with sigma(t) = t and s(t) = 1):

    dx / dsigma = (x - D(x; sigma)) / sigma = eps_theta

* ``EulerSampler``: one Euler step per sigma, x_next = x + (sigma_next - sigma) d (Karras et al.,
  Algorithm 1, lines 3-5). On DDIM's timesteps it *is* deterministic DDIM (Song et al. 2020,
  arXiv:2010.02502, Sec. 4.3): see ``tests/test_solvers.py``.
* ``HeunSampler``: Heun's second-order method (Algorithm 1, lines 6-7): an Euler step to
  sigma_next, a second network evaluation there, and the step redone with the average of the two
  slopes. The last step, to sigma = 0, stays Euler (the slope there would divide by zero).

The network was trained on x_t = sqrt(alpha_bar) x, so it is fed ``scale_model_input(x, t)`` =
x / sqrt(sigma^2 + 1), at the (fractional) timestep t of that sigma. Both follow ``diffusers``'
scheduler contract and equal ``EulerDiscreteScheduler`` and ``HeunDiscreteScheduler`` (epsilon
prediction, no churn) configured with the same schedule, including their defaults.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import validate
from ..samplers import SamplerOutput
from .sigmas import (
    StepTracker,
    check_schedule,
    karras_sigmas,
    sigma_to_timestep,
    spaced_timesteps,
    timestep_sigmas,
)

Tensor = torch.Tensor


def _sigma_grid(schedule, num_inference_steps, use_karras_sigmas, timestep_spacing):
    """The n timesteps and n + 1 sigmas (the last 0) both solvers visit, as ``diffusers`` picks them."""
    T = check_schedule(schedule).num_steps
    n = validate.integer("num_inference_steps", num_inference_steps, 1, T)
    timesteps = spaced_timesteps(T, n, timestep_spacing)
    sigmas = timestep_sigmas(timesteps, schedule)
    if use_karras_sigmas:  # Karras et al. Eq. 5 between the grid's own ends, then back to timesteps
        sigmas = karras_sigmas(sigmas[-1], sigmas[0], n)
        timesteps = sigma_to_timestep(sigmas, schedule)
    return n, torch.tensor(timesteps, dtype=torch.float32), np.append(sigmas, 0.0)


def _init_noise_sigma(sigma_max: float, timestep_spacing: str) -> float:
    # x_T / sqrt(alpha_bar_T) has standard deviation sqrt(sigma_max^2 + 1); diffusers uses that for
    # "leading" spacing and sigma_max itself (0.003 % smaller at sigma_max = 157) for the others.
    return sigma_max if timestep_spacing in ("linspace", "trailing") else math.sqrt(sigma_max**2 + 1)


def _check_step(model_output, x) -> None:
    validate.floating_tensor("model_output", model_output)
    validate.floating_tensor("x", x)
    validate.same_shape("model_output", model_output, "x", x)


class EulerSampler:
    """Euler's method on dx/dsigma = (x - D(x; sigma)) / sigma (Karras et al. 2022, Algorithm 1).

    Args:
        schedule: the ``NoiseSchedule`` the model was trained with.
        num_inference_steps: n, 1 to T; also the number of network evaluations.
        use_karras_sigmas: visit Karras et al.'s sigmas (Eq. 5, rho = 7) instead of the grid's.
        timestep_spacing: "linspace" (``diffusers``' default), "leading" (our DDIM's) or "trailing".

    Equal to ``diffusers.EulerDiscreteScheduler(beta_schedule=..., prediction_type="epsilon",
    use_karras_sigmas=..., timestep_spacing=...)`` after ``set_timesteps(n)``.
    """

    def __init__(self, schedule, num_inference_steps: int, use_karras_sigmas: bool = False,
                 timestep_spacing: str = "linspace"):
        self.schedule = schedule
        self.use_karras_sigmas = bool(use_karras_sigmas)
        self.timestep_spacing = timestep_spacing
        self.num_inference_steps, self.timesteps, self.sigmas = _sigma_grid(
            schedule, num_inference_steps, use_karras_sigmas, timestep_spacing
        )
        self.init_noise_sigma = _init_noise_sigma(float(self.sigmas[0]), timestep_spacing)
        self._tracker = StepTracker(self.timesteps)

    def scale_model_input(self, x: Tensor, t) -> Tensor:
        """x / sqrt(sigma^2 + 1): the x_t = sqrt(alpha_bar) x the network was trained on."""
        return x / math.sqrt(self.sigmas[self._tracker.locate(t)] ** 2 + 1)

    def step(self, model_output: Tensor, t, x: Tensor, generator: torch.Generator | None = None) -> SamplerOutput:
        """x_next = x + (sigma_next - sigma) d, d = (x - x0_hat) / sigma, x0_hat = x - sigma eps.

        ``generator`` is accepted for the common contract; Euler's method draws nothing.
        """
        _check_step(model_output, x)
        i = self._tracker.locate(t)
        sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
        pred_x0 = x - sigma * model_output  # D(x; sigma), from x = x_0 + sigma eps
        slope = (x - pred_x0) / sigma  # dx/dsigma (Karras et al. Eq. 3); equals eps
        self._tracker.advance(i)
        return SamplerOutput(prev_sample=x + (sigma_next - sigma) * slope, pred_x0=pred_x0)

    def __repr__(self) -> str:
        return (f"EulerSampler({self.schedule!r}, num_inference_steps={self.num_inference_steps}, "
                f"use_karras_sigmas={self.use_karras_sigmas}, timestep_spacing={self.timestep_spacing!r})")


class HeunSampler:
    """Heun's second-order method on the same ODE (Karras et al. 2022, Algorithm 1, lines 6-7).

    ``timesteps`` lists every network evaluation, so it has 2n - 1 entries: t_0, then t_1, t_1,
    ..., t_{n-1}, t_{n-1}. At the first of a pair the step is an Euler predictor from sigma_i to
    sigma_{i+1}; at the second the network is evaluated at the predicted point and the step is
    redone with the mean of the two slopes. The last step (to sigma = 0) is a plain Euler step.
    Arguments as ``EulerSampler``; equal to ``diffusers.HeunDiscreteScheduler`` (no clipping, its
    default) after ``set_timesteps(n)``.
    """

    def __init__(self, schedule, num_inference_steps: int, use_karras_sigmas: bool = False,
                 timestep_spacing: str = "linspace"):
        self.schedule = schedule
        self.use_karras_sigmas = bool(use_karras_sigmas)
        self.timestep_spacing = timestep_spacing
        self.num_inference_steps, steps, self.sigmas = _sigma_grid(
            schedule, num_inference_steps, use_karras_sigmas, timestep_spacing
        )
        self.timesteps = torch.cat([steps[:1], steps[1:].repeat_interleave(2)])  # (2n - 1,)
        self.init_noise_sigma = _init_noise_sigma(float(self.sigmas[0]), timestep_spacing)
        self._tracker = StepTracker(self.timesteps)
        self._predictor = None  # (x_i, slope at sigma_i) between the two halves of a step

    def _stage(self, position: int) -> tuple[int, bool]:
        """Evaluation ``position`` -> (step i, is it the corrector of step i - 1?)."""
        return (position + 1) // 2, position % 2 == 1

    def scale_model_input(self, x: Tensor, t) -> Tensor:
        """x / sqrt(sigma^2 + 1) at the sigma this evaluation is at."""
        i, _ = self._stage(self._tracker.locate(t))
        return x / math.sqrt(self.sigmas[i] ** 2 + 1)

    def step(self, model_output: Tensor, t, x: Tensor, generator: torch.Generator | None = None) -> SamplerOutput:
        """The predictor or the corrector half of one Heun step, whichever ``t``'s position is."""
        _check_step(model_output, x)
        position = self._tracker.locate(t)
        i, correcting = self._stage(position)
        sigma = self.sigmas[i]
        pred_x0 = x - sigma * model_output  # D(x; sigma)
        slope = (x - pred_x0) / sigma
        if correcting:  # x is the Euler prediction at sigma_i; redo the step from sigma_{i-1}
            x_start, first_slope = self._predictor
            prev_sample = x_start + (sigma - self.sigmas[i - 1]) * (first_slope + slope) / 2
            self._predictor = None
        else:  # the Euler predictor to sigma_{i+1}, remembered for the corrector (none after the last)
            prev_sample = x + (self.sigmas[i + 1] - sigma) * slope
            self._predictor = (x, slope) if self.sigmas[i + 1] > 0 else None
        self._tracker.advance(position)
        return SamplerOutput(prev_sample=prev_sample, pred_x0=pred_x0)

    def __repr__(self) -> str:
        return (f"HeunSampler({self.schedule!r}, num_inference_steps={self.num_inference_steps}, "
                f"use_karras_sigmas={self.use_karras_sigmas}, timestep_spacing={self.timestep_spacing!r})")
