"""ODE solvers for sampling: Euler, Heun and DPM-Solver++ (lesson 11).

Each follows ``diffusers``' scheduler contract (``timesteps``, one entry per network evaluation;
``init_noise_sigma``; ``scale_model_input(x, t)``; ``step(model_output, t, x, generator)``
returning ``prev_sample`` and ``pred_x0``), so ``sampling.sample`` drives them as it drives DDPM
and DDIM, and each equals the matching ``diffusers`` scheduler (``tests/test_solvers.py``).
"""

from .dpm_solver import DPMSolverSampler, dpm_timesteps
from .euler import EulerSampler, HeunSampler
from .sigmas import karras_sigmas, schedule_sigmas, sigma_to_timestep, spaced_timesteps

__all__ = [
    "DPMSolverSampler",
    "EulerSampler",
    "HeunSampler",
    "dpm_timesteps",
    "karras_sigmas",
    "schedule_sigmas",
    "sigma_to_timestep",
    "spaced_timesteps",
]
