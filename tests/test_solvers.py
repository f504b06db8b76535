"""Euler, Heun and DPM-Solver++ against ``diffusers``' schedulers, and against the exact ODE.

Oracles: ``EulerDiscreteScheduler``, ``HeunDiscreteScheduler`` and
``DPMSolverMultistepScheduler`` with the same beta schedule and their defaults otherwise, given
our float64 alpha-bar as in ``test_samplers.py`` ("Precision" there), driven by the loop of
``StableDiffusionPipeline`` (x_T scaled by ``init_noise_sigma``, ``scale_model_input`` before each
network call). Independent of ``diffusers``: DDIM is Euler on DDIM's timesteps; on Gaussian data
the probability-flow ODE has a closed-form solution (``experiments.faster_sampling.GaussianData``),
and each solver's error shrinks with the number of steps at the rate of its order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler

from sdcourse.experiments.faster_sampling import GaussianData, ode_error
from sdcourse.samplers import DDIMSampler, sample
from sdcourse.schedules import NoiseSchedule
from sdcourse.solvers import (
    DPMSolverSampler,
    EulerSampler,
    HeunSampler,
    karras_sigmas,
    schedule_sigmas,
    sigma_to_timestep,
)

T = 1000
SCHEDULES = {
    "linear": (lambda: NoiseSchedule.linear(T), dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)),
    "scaled_linear": (
        lambda: NoiseSchedule.scaled_linear(T),
        dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    ),
    "cosine": (lambda: NoiseSchedule.cosine(T), dict(beta_schedule="squaredcos_cap_v2")),
}
OURS = {"euler": EulerSampler, "heun": HeunSampler, "dpmsolver": DPMSolverSampler}
THEIRS = {
    "euler": EulerDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
    "dpmsolver": DPMSolverMultistepScheduler,
}
SHAPE = (3, 1, 6, 6)
LABELS = torch.tensor([1, 4, 7])


def oracle(name, schedule_name, n, karras=False, **kwargs):
    make, config = SCHEDULES[schedule_name]
    schedule = make()
    scheduler = THEIRS[name](num_train_timesteps=T, use_karras_sigmas=karras, **config, **kwargs)
    scheduler.alphas_cumprod = schedule.alphas_cumprod.clone()  # float64, as test_samplers.upcast
    if name == "dpmsolver":  # what its set_timesteps reads besides alpha-bar
        scheduler.alpha_t = scheduler.alphas_cumprod.sqrt()
        scheduler.sigma_t = (1 - scheduler.alphas_cumprod).sqrt()
        scheduler.lambda_t = scheduler.alpha_t.log() - scheduler.sigma_t.log()
    scheduler.set_timesteps(n)
    return schedule, scheduler


class FakeModel(torch.nn.Module):
    """A fixed eps(x_t, t, y) that accepts fractional t: the exact eps of Gaussian data (below)
    plus a smooth nonlinear, time- and label-dependent perturbation, so samples stay image-sized."""

    def __init__(self, schedule=None, dim=36, seed=0):
        super().__init__()
        self.exact = GaussianData(schedule or NoiseSchedule.linear(T), c=0.5)
        gen = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(torch.randn(dim, dim, generator=gen) / dim**0.5)
        self.v = torch.nn.Parameter(torch.randn(10, dim, generator=gen) * 0.05)

    def forward(self, x_t, t, labels=None):
        flat = x_t.flatten(1)
        out = 0.1 * torch.tanh(flat @ self.W) + 0.05 * torch.sin(t.float()[:, None] / 97.0)
        if labels is not None:
            out = out + self.v[labels]
        return self.exact(x_t, t) + out.view_as(x_t)


@torch.no_grad()
def pipeline_loop(model, scheduler, shape, labels, seed):
    """StableDiffusionPipeline's loop, with our model's signature: (x_0, the largest |x| on the way)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * scheduler.init_noise_sigma
    largest = x.abs().max().item()
    for t in scheduler.timesteps:
        eps = model(scheduler.scale_model_input(x, t), t.expand(shape[0]), labels)
        x = scheduler.step(eps, t, x).prev_sample
        largest = max(largest, x.abs().max().item())
    return x, largest


def max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


# ---- pieces --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 30])
def test_karras_sigmas_equal_diffusers(n):
    scheduler = EulerDiscreteScheduler()
    ends = torch.tensor([80.0, 0.03], dtype=torch.float64)
    theirs = scheduler._convert_to_karras(in_sigmas=ends, num_inference_steps=n)
    np.testing.assert_allclose(karras_sigmas(0.03, 80.0, n), theirs, rtol=1e-12)


def test_karras_sigmas_formula_float64():
    """Karras et al. Eq. 5 at its ends and middle: sigma_max, sigma_min, and the rho-mean between."""
    s = karras_sigmas(0.002, 80.0, 3, rho=7.0)
    assert s[0] == pytest.approx(80.0) and s[-1] == pytest.approx(0.002)
    assert s[1] == pytest.approx(((80.0 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7, rel=1e-12)


@pytest.mark.parametrize("schedule_name", list(SCHEDULES))
def test_sigma_to_timestep_equals_diffusers(schedule_name):
    schedule, scheduler = oracle("euler", schedule_name, 10)
    log_sigmas = np.log(schedule_sigmas(schedule))
    probe = np.array([0.001, 0.01, 0.5, 3.0, 40.0, 1e4])
    theirs = scheduler._sigma_to_t(probe, log_sigmas)
    np.testing.assert_allclose(sigma_to_timestep(probe, schedule), theirs, rtol=0, atol=1e-9)


@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("n", [1, 4, 25])
@pytest.mark.parametrize("name", list(OURS))
@pytest.mark.parametrize("schedule_name", list(SCHEDULES))
def test_timesteps_sigmas_and_init_equal_diffusers(schedule_name, name, n, karras):
    schedule, scheduler = oracle(name, schedule_name, n, karras)
    ours = OURS[name](schedule, n, use_karras_sigmas=karras)
    assert ours.timesteps.dtype == scheduler.timesteps.dtype
    np.testing.assert_allclose(ours.timesteps.numpy(), scheduler.timesteps.numpy(), rtol=1e-6, atol=1e-4)
    theirs_sigmas = scheduler.sigmas.numpy()
    if name == "heun":  # diffusers repeats each inner sigma; ours are the n + 1 distinct ones
        theirs_sigmas = np.concatenate([theirs_sigmas[:1], theirs_sigmas[1:-1:2], theirs_sigmas[-1:]])
    np.testing.assert_allclose(ours.sigmas, theirs_sigmas, rtol=1e-6)
    assert float(ours.init_noise_sigma) == pytest.approx(float(scheduler.init_noise_sigma), rel=1e-6)


def test_heun_counts_every_network_evaluation_in_timesteps():
    sampler = HeunSampler(NoiseSchedule.linear(T), 10)
    assert len(sampler.timesteps) == 19  # 2n - 1: the last step, to sigma = 0, is Euler
    assert len(EulerSampler(NoiseSchedule.linear(T), 10).timesteps) == 10


# ---- full loops against diffusers ---------------------------------------------------------------


@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 30])
@pytest.mark.parametrize("name", list(OURS))
def test_loop_equals_diffusers(name, n, karras):
    """Max abs difference <= 1e-5 from 5 steps on, or one float32 rounding (1.2e-7) of the largest
    |x| the diffusers loop passes through where that is larger: with the linear schedule x starts at
    |x| ~ 380 (sigma_max = 157), and Heun's two evaluations per step round at that scale (measured:
    1.3e-5 at n = 5 with Karras sigmas). Fewer steps overshoot (Heun at n = 3 reaches |x| ~ 600 on
    the way) or divide by sqrt(alpha_bar_T) = 0.006 (n = 1), which magnifies float32 rounding, so
    there the bound is 1e-5 relative to that largest |x|."""
    for schedule_name in ("linear", "scaled_linear"):
        schedule, scheduler = oracle(name, schedule_name, n, karras)
        model = FakeModel(schedule)
        expected, largest = pipeline_loop(model, scheduler, SHAPE, LABELS, seed=3)
        ours = OURS[name](schedule, n, use_karras_sigmas=karras)
        got = sample(model, ours, SHAPE, LABELS, torch.Generator().manual_seed(3), progress=False)
        tolerance = max(1e-5, 1.2e-7 * largest) if n >= 5 else 1e-5 * max(1.0, largest)
        assert max_diff(got, expected) <= tolerance, f"{name}, {schedule_name}, n={n}, karras={karras}"
        again = sample(model, ours, SHAPE, LABELS, torch.Generator().manual_seed(3), progress=False)
        assert torch.equal(again, got)  # the same object samples again: its history was reset
    other = sample(model, ours, SHAPE, LABELS, torch.Generator().manual_seed(4), progress=False)
    assert max_diff(other, expected) > 1e-2  # the seed matters: the comparison can fail


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("name", list(OURS))
def test_other_spacings_equal_diffusers(name, spacing):
    schedule, scheduler = oracle(name, "scaled_linear", 8, timestep_spacing=spacing)
    model = FakeModel(schedule)
    expected, _ = pipeline_loop(model, scheduler, SHAPE, LABELS, seed=0)
    ours = OURS[name](schedule, 8, timestep_spacing=spacing)
    got = sample(model, ours, SHAPE, LABELS, torch.Generator().manual_seed(0), progress=False)
    assert max_diff(got, expected) <= 1e-5


def test_dpmsolver_order_1_equals_diffusers():
    schedule, scheduler = oracle("dpmsolver", "linear", 12, solver_order=1)
    model = FakeModel(schedule)
    expected, _ = pipeline_loop(model, scheduler, SHAPE, LABELS, seed=1)
    got = sample(model, DPMSolverSampler(schedule, 12, order=1), SHAPE, LABELS,
                 torch.Generator().manual_seed(1), progress=False)
    assert max_diff(got, expected) <= 1e-5


# ---- independent of diffusers -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 50])
def test_ddim_is_euler_on_ddims_timesteps(n):
    """Song et al. 2020, Sec. 4.3: deterministic DDIM is Euler's method in (sigma, x / sqrt(alpha_bar))."""
    schedule = NoiseSchedule.linear(T)
    model = FakeModel(schedule)
    ddim = DDIMSampler(schedule, n, eta=0.0, clip_sample=False)
    euler = EulerSampler(schedule, n, timestep_spacing="leading")
    assert torch.equal(euler.timesteps.long(), ddim.timesteps)
    got_ddim = sample(model, ddim, SHAPE, LABELS, torch.Generator().manual_seed(2), progress=False)
    got_euler = sample(model, euler, SHAPE, LABELS, torch.Generator().manual_seed(2), progress=False)
    assert max_diff(got_euler, got_ddim) <= 1e-5


def test_dpmsolver_first_order_step_is_ddim_float64():
    """Lu et al. Eq. 10 with x0 = (x_s - sigma_s eps) / alpha_s is DDIM's Eq. 12 (eta = 0) in float64."""
    schedule = NoiseSchedule.linear(T)
    sampler = DPMSolverSampler(schedule, 5, order=1)
    gen = torch.Generator().manual_seed(0)
    x, eps = (torch.randn(SHAPE, generator=gen, dtype=torch.float64) for _ in range(2))
    out = sampler.step(eps, sampler.timesteps[0], x)
    t_s, t_t = int(sampler.timesteps[0]), int(sampler.timesteps[1])
    ab_s, ab_t = float(schedule.alphas_cumprod[t_s]), float(schedule.alphas_cumprod[t_t])
    x0 = (x - math.sqrt(1 - ab_s) * eps) / math.sqrt(ab_s)
    ddim = math.sqrt(ab_t) * x0 + math.sqrt(1 - ab_t) * eps  # Song et al. Eq. 12, sigma_t = 0
    torch.testing.assert_close(out.prev_sample, ddim, rtol=1e-10, atol=1e-10)


def ode_errors(make_sampler, steps):
    return [ode_error(make_sampler, n) for n in steps]


def test_solvers_converge_at_their_order_on_gaussian_data():
    steps = [10, 20, 40]
    euler = ode_errors(EulerSampler, steps)
    heun = ode_errors(HeunSampler, steps)
    dpm = ode_errors(DPMSolverSampler, steps)
    for a, b in zip(euler, euler[1:], strict=False):
        assert 1.7 < a / b < 2.4, euler  # first order: double the steps, half the error
    for errors in (heun, dpm):
        assert all(a / b > 3.5 for a, b in zip(errors, errors[1:], strict=False)), errors  # second order: a quarter
        assert errors[-1] < euler[-1] / 5
    for make in (EulerSampler, HeunSampler, DPMSolverSampler):  # Karras sigmas converge too
        coarse, fine = ode_errors(lambda s, n, make=make: make(s, n, use_karras_sigmas=True), [20, 80])
        assert fine < coarse / 3


# ---- bad arguments ------------------------------------------------------------------------------

_S = NoiseSchedule.linear(50)
BAD = {
    "order 3": (lambda: DPMSolverSampler(_S, 5, order=3), r"order must be an integer in \[1, 2\], got 3"),
    "zero steps": (lambda: EulerSampler(_S, 0), r"num_inference_steps must be an integer in \[1, 50\], got 0"),
    "too many steps": (lambda: HeunSampler(_S, 51), r"num_inference_steps .* got 51"),
    "steps True": (lambda: DPMSolverSampler(_S, True), r"num_inference_steps must be an integer"),
    "spacing": (lambda: EulerSampler(_S, 5, timestep_spacing="even"), r"timestep_spacing must be one of"),
    "not a schedule": (lambda: EulerSampler("linear", 5), r"schedule must be a sdcourse.schedules.NoiseSchedule"),
    "timestep not in the schedule": (
        lambda: EulerSampler(_S, 5).step(torch.zeros(1, 1, 2, 2), 17.5, torch.zeros(1, 1, 2, 2)),
        r"t must be this sampler's next timestep, 49 .* got 17.5",
    ),
    "out of order": (
        lambda: (lambda s: (s.step(torch.zeros(1, 1, 2, 2), s.timesteps[0], torch.zeros(1, 1, 2, 2)),
                            s.step(torch.zeros(1, 1, 2, 2), s.timesteps[2], torch.zeros(1, 1, 2, 2))))(
            DPMSolverSampler(_S, 5)),
        r"next timestep",
    ),
    "shape mismatch": (
        lambda: HeunSampler(_S, 5).step(torch.zeros(1, 1, 2, 2), 49.0, torch.zeros(1, 1, 3, 3)),
        r"model_output .*shape",
    ),
    "integer sample": (
        lambda: EulerSampler(_S, 5).step(torch.zeros(1, 1, 2, 2), 49.0, torch.zeros(1, 1, 2, 2, dtype=torch.long)),
        r"x must be a floating",
    ),
    "sigma_min": (lambda: karras_sigmas(0.0, 10.0, 5), r"sigma_min must be a finite number > 0"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments(case):
    fn, match = BAD[case]
    with pytest.raises(ValueError, match=match):
        fn()
