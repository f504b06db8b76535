"""DPM-Solver++(2M): a second-order multistep solver of the diffusion ODE (lesson 11).

Lu et al. 2022, "DPM-Solver++" (arXiv:2211.01095). Write the sample as x_t = alpha_t x_0 +
sigma_t eps with alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t) (their notation:
sigma_t is the noise's standard deviation here, not the sigma of ``sigmas.py``), and the
half-log-SNR lambda_t = log(alpha_t / sigma_t). The exact solution of the ODE in the data
prediction x0_theta (their Eq. 9) is

    x_t = (sigma_t / sigma_s) x_s + sigma_t * integral_{lambda_s}^{lambda_t} e^lambda x0_theta dlambda

so the linear part is solved exactly and only x0_theta is approximated:

* first order (x0_theta constant over the step, their Eq. 10; = DDIM):
      x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0_s,              h = lambda_t - lambda_s
* second order multistep (2M, their Algorithm 2): x0_theta linear in lambda, its slope taken
  from the previous step's x0 (no extra network evaluation), with r = h_prev / h:
      D = x0_s + (x0_s - x0_prev) / (2 r)
      x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D

The first step has no history and the last (to sigma = 0, where the solution is x0 itself) is
first order too, as in ``diffusers.DPMSolverMultistepScheduler`` (``lower_order_final``,
``final_sigmas_type="zero"``), which this equals with ``algorithm_type="dpmsolver++"``,
``solver_order=2`` and ``solver_type="midpoint"`` (all its defaults), Karras sigmas or not.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import validate
from ..samplers import SamplerOutput
from .sigmas import (
    SPACINGS,
    StepTracker,
    check_schedule,
    karras_sigmas,
    schedule_sigmas,
    sigma_to_timestep,
    timestep_sigmas,
)

Tensor = torch.Tensor


def dpm_timesteps(num_train_timesteps: int, num_inference_steps: int, spacing: str) -> np.ndarray:
    """The n integer timesteps, descending, ``DPMSolverMultistepScheduler`` visits.

    Unlike Euler's grid, "linspace" and "leading" divide [0, T-1] into n + 1 points and drop the
    last (t = 0): the solver reaches x_0 through sigma = 0 instead of visiting t = 0.
    """
    T, n = num_train_timesteps, num_inference_steps
    spacing = validate.one_of("timestep_spacing", spacing, SPACINGS)
    if spacing == "linspace":
        return np.linspace(0, T - 1, n + 1).round()[::-1][:-1].astype(np.int64)
    if spacing == "leading":
        return (np.arange(0, n + 1) * (T // (n + 1))).round()[::-1][:-1].astype(np.int64)
    return np.arange(T, 0, -T / n).round().astype(np.int64) - 1


class DPMSolverSampler:
    """DPM-Solver++ of order 1 or 2 (multistep), Lu et al. 2022, Algorithm 2.

    Args:
        schedule: the ``NoiseSchedule`` the model was trained with.
        num_inference_steps: n, 1 to T; also the number of network evaluations.
        order: 2 (DPM-Solver++(2M), the default) or 1 (which is DDIM).
        use_karras_sigmas: visit Karras et al.'s sigmas (Eq. 5, rho = 7); the network is then fed
            the nearest integer timestep, as ``diffusers`` does (the one below for the cosine schedule).
        timestep_spacing: "linspace" (default), "leading" or "trailing".
    """

    def __init__(self, schedule, num_inference_steps: int, order: int = 2, use_karras_sigmas: bool = False,
                 timestep_spacing: str = "linspace"):
        T = check_schedule(schedule).num_steps
        self.schedule = schedule
        self.num_inference_steps = validate.integer("num_inference_steps", num_inference_steps, 1, T)
        self.order = validate.integer("order", order, 1, 2)
        self.use_karras_sigmas = bool(use_karras_sigmas)
        self.timestep_spacing = timestep_spacing
        timesteps = dpm_timesteps(T, self.num_inference_steps, timestep_spacing)
        if use_karras_sigmas:  # between sigma at t = 0 and at t = T - 1, as diffusers does
            all_sigmas = schedule_sigmas(schedule)
            sigmas = karras_sigmas(all_sigmas[0], all_sigmas[-1], self.num_inference_steps)
            timesteps = sigma_to_timestep(sigmas, schedule)
            if schedule.name != "cosine":  # diffusers rounds, except for "squaredcos_cap_v2" (truncated below)
                timesteps = timesteps.round()
        else:
            sigmas = timestep_sigmas(timesteps, schedule)
        self.sigmas = np.append(sigmas, 0.0)  # (n + 1,), in the sigma view of sigmas.py
        self.timesteps = torch.tensor(timesteps).to(torch.int64)  # (n,)
        self.init_noise_sigma = 1.0  # the solver works on x_t itself
        self._tracker = StepTracker(self.timesteps)
        self._previous_x0 = None  # x0_theta of the previous step: the multistep history

    @staticmethod
    def _alpha_sigma(sigma: float) -> tuple[float, float]:
        """(alpha_t, sigma_t) = (1, sigma) / sqrt(sigma^2 + 1), from the sigma view back to x_t's."""
        alpha = 1.0 / math.sqrt(sigma**2 + 1)
        return alpha, sigma * alpha

    def scale_model_input(self, x: Tensor, t) -> Tensor:
        """The network takes x_t as it is (the common contract; DDPM and DDIM do the same)."""
        self._tracker.locate(t)
        return x

    def step(self, model_output: Tensor, t, x: Tensor, generator: torch.Generator | None = None) -> SamplerOutput:
        """One step from sigma_i to sigma_{i+1}: first order at the ends, else 2M (see the module)."""
        validate.floating_tensor("model_output", model_output)
        validate.floating_tensor("x", x)
        validate.same_shape("model_output", model_output, "x", x)
        i = self._tracker.locate(t)
        if i == 0:
            self._previous_x0 = None  # a new run: no history
        alpha_s, sigma_s = self._alpha_sigma(self.sigmas[i])
        pred_x0 = (x - sigma_s * model_output) / alpha_s  # x0_theta from eps (x_t = alpha x0 + sigma eps)
        last = i == self.num_inference_steps - 1
        if last:  # sigma_{i+1} = 0: the exact solution is x0_theta itself (first order, h = inf)
            prev_sample = pred_x0
        else:
            alpha_t, sigma_t = self._alpha_sigma(self.sigmas[i + 1])
            h = math.log(alpha_t / sigma_t) - math.log(alpha_s / sigma_s)  # lambda_t - lambda_s
            data = pred_x0
            if self.order == 2 and self._previous_x0 is not None:  # 2M: slope from the last step
                alpha_p, sigma_p = self._alpha_sigma(self.sigmas[i - 1])
                r = (math.log(alpha_s / sigma_s) - math.log(alpha_p / sigma_p)) / h  # h_prev / h
                data = pred_x0 + (pred_x0 - self._previous_x0) / (2 * r)
            prev_sample = (sigma_t / sigma_s) * x - alpha_t * math.expm1(-h) * data
        self._previous_x0 = None if last else pred_x0
        self._tracker.advance(i)
        return SamplerOutput(prev_sample=prev_sample, pred_x0=pred_x0)

    def __repr__(self) -> str:
        return (f"DPMSolverSampler({self.schedule!r}, num_inference_steps={self.num_inference_steps}, "
                f"order={self.order}, use_karras_sigmas={self.use_karras_sigmas}, "
                f"timestep_spacing={self.timestep_spacing!r})")
