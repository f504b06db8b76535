"""The sigma view of a noise schedule, and the timesteps an ODE solver visits (lesson 11).

Divide lesson 01's x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps by sqrt(alpha_bar_t):

    x_t / sqrt(alpha_bar_t) = x_0 + sigma_t eps,    sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)

(Karras et al. 2022, arXiv:2206.00364, Sec. 2 and Table 1, "VP"; Song et al. 2020,
arXiv:2010.02502, Sec. 4.3). In this "variance exploding" view the noise level is one number,
sigma, from 0 (clean data) to sigma_max (about 157 for DDPM's linear schedule), and a sampler is a
list of sigmas to visit. ``schedule_sigmas`` is that number for each of the T training timesteps;
``karras_sigmas`` is Karras et al.'s list (Eq. 5); ``sigma_to_timestep`` goes back from a sigma
to the (fractional) timestep the network was trained at, by interpolating log sigma, as
``diffusers``' schedulers do (``_sigma_to_t``).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import validate
from ..schedules import NoiseSchedule

SPACINGS = ("linspace", "leading", "trailing")


def check_schedule(schedule) -> NoiseSchedule:
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a sdcourse.schedules.NoiseSchedule, got {type(schedule).__name__}")
    return schedule


def schedule_sigmas(schedule: NoiseSchedule) -> np.ndarray:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) for t = 0..T-1, float64, increasing in t."""
    alpha_bar = check_schedule(schedule).alphas_cumprod.numpy()
    return np.sqrt((1.0 - alpha_bar) / alpha_bar)


def spaced_timesteps(num_train_timesteps: int, num_inference_steps: int, spacing: str) -> np.ndarray:
    """The n timesteps, descending, that ``diffusers``' Euler and Heun schedulers visit.

    "linspace": n evenly spaced values from T-1 down to 0, fractional in general (their default);
    "leading": (n-1) k, ..., k, 0 with k = T // n (our DDIM's grid); "trailing": T-1 down in steps
    of T/n, rounded (Lin et al. 2023, arXiv:2305.08891, Table 2).
    """
    T, n = num_train_timesteps, num_inference_steps
    spacing = validate.one_of("timestep_spacing", spacing, SPACINGS)
    if spacing == "linspace":
        return np.linspace(0, T - 1, n, dtype=np.float32)[::-1].astype(np.float64)
    if spacing == "leading":
        return (np.arange(0, n) * (T // n)).round()[::-1].astype(np.float64)
    return np.arange(T, 0, -T / n).round().astype(np.float64) - 1.0


def karras_sigmas(sigma_min: float, sigma_max: float, num_inference_steps: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. 2022, Eq. 5: n sigmas from sigma_max down to sigma_min, evenly spaced in sigma^(1/rho).

        sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho

    rho = 7 (their choice) spends more of the steps at small sigma, where the image's details form.
    Equal to ``diffusers``' ``_convert_to_karras`` (which returns the same n values; the solver
    appends sigma = 0 for the last step).
    """
    sigma_min = validate.number("sigma_min", sigma_min, 0.0, low_open=True)
    sigma_max = validate.number("sigma_max", sigma_max, sigma_min)
    n = validate.integer("num_inference_steps", num_inference_steps, 1)
    rho = validate.number("rho", rho, 0.0, low_open=True)
    ramp = np.linspace(0, 1, n)  # i / (n - 1)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def sigma_to_timestep(sigmas: np.ndarray, schedule: NoiseSchedule) -> np.ndarray:
    """The fractional timestep of each sigma: linear interpolation of log sigma_t between the two
    training timesteps that bracket it (clamped to [0, T-1]), as ``diffusers``' ``_sigma_to_t``."""
    log_sigmas = np.log(schedule_sigmas(schedule))  # (T,), increasing
    log_sigma = np.log(np.maximum(np.asarray(sigmas, dtype=np.float64), 1e-10))
    low = np.clip(np.searchsorted(log_sigmas, log_sigma, side="right") - 1, 0, len(log_sigmas) - 2)
    w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1]), 0.0, 1.0)
    return low + w


def timestep_sigmas(timesteps: np.ndarray, schedule: NoiseSchedule) -> np.ndarray:
    """sigma at (fractional) timesteps, interpolated linearly in t between training timesteps."""
    sigmas = schedule_sigmas(schedule)
    return np.interp(timesteps, np.arange(len(sigmas)), sigmas)


class StepTracker:
    """Which entry of ``timesteps`` a call is at: the next one in order, or the first (a new run).

    A solver with a history (Heun's predictor, DPM-Solver's previous outputs) must be called along
    ``timesteps`` in order, as a ``diffusers`` scheduler must; a step at ``timesteps[0]`` starts a
    new run, so one solver object can sample many times.
    """

    def __init__(self, timesteps: torch.Tensor):
        self.values = [float(t) for t in timesteps]
        self.next = 0

    def locate(self, t) -> int:
        if isinstance(t, torch.Tensor):
            if t.numel() != 1 or t.dtype == torch.bool or t.is_complex():
                raise ValueError(f"t must be a number or a one-element tensor, got shape {tuple(t.shape)}")
            t = t.item()
        t = float(np.float32(validate.number("t", t)))
        if self.next < len(self.values) and t == self.values[self.next]:
            return self.next
        if t == self.values[0]:
            return 0
        expected = self.values[self.next] if self.next < len(self.values) else self.values[0]
        raise ValueError(
            f"t must be this sampler's next timestep, {expected:g} (steps follow sampler.timesteps in order; "
            f"timesteps[0] = {self.values[0]:g} starts a new run), got {t:g}"
        )

    def advance(self, index: int) -> None:
        self.next = (index + 1) % len(self.values)
