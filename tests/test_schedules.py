"""Noise schedules against diffusers' DDPMScheduler (an independent implementation) and closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from sdcourse.schedules import NoiseSchedule

# Our constructor, and the DDPMScheduler settings that describe the same schedule.
PAIRS = [
    (lambda T: NoiseSchedule.linear(T), dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)),
    (lambda T: NoiseSchedule.scaled_linear(T),
     dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    (lambda T: NoiseSchedule.cosine(T), dict(beta_schedule="squaredcos_cap_v2")),
]
IDS = ["linear", "scaled_linear", "cosine"]


@pytest.mark.parametrize("num_steps", [10, 1000])
@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_alphas_cumprod_match_diffusers(ours, theirs, num_steps):
    schedule = ours(num_steps)
    reference = DDPMScheduler(num_train_timesteps=num_steps, **theirs)
    torch.testing.assert_close(schedule.betas.float(), reference.betas, atol=1e-6, rtol=0)
    torch.testing.assert_close(schedule.alphas_cumprod.float(), reference.alphas_cumprod, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=IDS)
def test_add_noise_matches_diffusers(ours, theirs):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, 3, 8, 8, generator=gen)
    noise = torch.randn(16, 3, 8, 8, generator=gen)
    t = torch.randint(0, 1000, (16,), generator=gen)
    expected = DDPMScheduler(num_train_timesteps=1000, **theirs).add_noise(x0, noise, t)
    torch.testing.assert_close(ours(1000).add_noise(x0, noise, t), expected, atol=1e-5, rtol=1e-5)


def test_add_noise_is_the_closed_form_in_float64():
    schedule = NoiseSchedule.linear(1000)
    x0 = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 10, 500, 999])
    for i, step in enumerate(t.tolist()):
        alpha_bar = math.prod(1 - (1e-4 + (0.02 - 1e-4) * s / 999) for s in range(step + 1))
        expected = math.sqrt(alpha_bar) * x0[i] + math.sqrt(1 - alpha_bar) * noise[i]
        torch.testing.assert_close(schedule.add_noise(x0, noise, t)[i], expected, atol=1e-12, rtol=0)


def test_add_noise_keeps_the_input_dtype():
    x0 = torch.zeros(2, 1, 4, 4, dtype=torch.float16)
    out = NoiseSchedule.cosine(50).add_noise(x0, torch.ones_like(x0), torch.tensor([0, 49]))
    assert out.dtype == torch.float16


def test_snr_is_alpha_bar_over_one_minus_alpha_bar_in_float64():
    schedule = NoiseSchedule.scaled_linear(1000)
    lo, hi = math.sqrt(0.00085), math.sqrt(0.012)
    alpha_bar, expected = 1.0, []
    for i in range(1000):
        alpha_bar *= 1 - (lo + (hi - lo) * i / 999) ** 2
        expected.append(alpha_bar / (1 - alpha_bar))
    torch.testing.assert_close(schedule.snr(torch.arange(1000)), torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-10, atol=0)


def test_posterior_matches_diffusers_variance_and_bayes_rule():
    schedule = NoiseSchedule.linear(1000)
    reference = DDPMScheduler(num_train_timesteps=1000)
    for t in (1, 10, 500, 999):  # diffusers works in float32: 1 - alpha_bar loses digits at small t
        assert schedule.posterior_var(torch.tensor([t])).item() == pytest.approx(
            reference._get_variance(t).item(), rel=1e-3)
    # Mean: the product of Gaussians q(x_t | x_{t-1}) q(x_{t-1} | x_0), solved in float64.
    x0, x_t = torch.randn(3, 1, 4, 4, dtype=torch.float64), torch.randn(3, 1, 4, 4, dtype=torch.float64)
    t = torch.tensor([1, 200, 999])
    a, ab_prev = schedule.alphas[t].view(-1, 1, 1, 1), schedule.alphas_cumprod_prev[t].view(-1, 1, 1, 1)
    precision = a / (1 - a) + 1 / (1 - ab_prev)
    mean = (a.sqrt() / (1 - a) * x_t + ab_prev.sqrt() / (1 - ab_prev) * x0) / precision
    torch.testing.assert_close(schedule.posterior_mean(x0, x_t, t), mean, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(schedule.posterior_var(t).view(-1, 1, 1, 1), 1 / precision, atol=1e-12, rtol=1e-9)


def test_predict_x0_inverts_add_noise():
    schedule = NoiseSchedule.cosine(1000)
    x0, eps = torch.randn(5, 1, 6, 6, dtype=torch.float64), torch.randn(5, 1, 6, 6, dtype=torch.float64)
    t = torch.tensor([0, 1, 100, 900, 998])
    torch.testing.assert_close(schedule.predict_x0(schedule.add_noise(x0, eps, t), eps, t), x0)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["linear", "scaled_linear", "cosine"]),
    num_steps=st.integers(1, 2000),
    beta_start=st.floats(1e-6, 0.01),
    span=st.floats(0.0, 0.2),
)
def test_alpha_bar_strictly_decreasing_in_open_unit_interval(kind, num_steps, beta_start, span):
    if kind == "cosine":
        schedule = NoiseSchedule.cosine(num_steps)
    else:
        schedule = getattr(NoiseSchedule, kind)(num_steps, beta_start, beta_start + span * (1 - beta_start) * 0.9)
    ab = schedule.alphas_cumprod
    assert bool(((ab > 0) & (ab < 1)).all())
    assert bool((ab[1:] < ab[:-1]).all())


# ---- invalid arguments: each a ValueError naming the parameter ---------------------------------

@pytest.mark.parametrize("num_steps", [0, -5, 2.5, True])
def test_num_steps_must_be_a_positive_integer(num_steps):
    with pytest.raises(ValueError, match="num_steps"):
        NoiseSchedule.linear(num_steps)


@pytest.mark.parametrize(("name", "kwargs"), [
    ("beta_start", dict(beta_start=0.0)),
    ("beta_start", dict(beta_start=-0.1)),
    ("beta_end", dict(beta_end=1.0)),
    ("beta_end", dict(beta_end=1.5)),
])
def test_betas_must_lie_in_open_unit_interval(name, kwargs):
    for constructor in (NoiseSchedule.linear, NoiseSchedule.scaled_linear):
        with pytest.raises(ValueError, match=f"{name}.*\\(0, 1\\)"):
            constructor(100, **kwargs)


def test_custom_betas_outside_unit_interval_are_refused():
    with pytest.raises(ValueError, match=r"betas\[2\]"):
        NoiseSchedule(torch.tensor([0.1, 0.2, 1.0]))


def test_beta_start_must_not_exceed_beta_end():
    with pytest.raises(ValueError, match="beta_start must be <= beta_end"):
        NoiseSchedule.linear(100, beta_start=0.02, beta_end=0.01)


@pytest.mark.parametrize("t", [torch.tensor([0, 1000]), torch.tensor([-1, 3])])
def test_t_outside_range_is_refused(t):
    schedule = NoiseSchedule.linear(1000)
    x0 = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"t must be in \[0, 1000\)"):
        schedule.add_noise(x0, x0, t)


def test_float_t_is_refused():
    x0 = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="t must be an integer tensor"):
        NoiseSchedule.linear(10).add_noise(x0, x0, torch.tensor([0.5, 1.0]))


def test_noise_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="noise must have the shape of x0"):
        NoiseSchedule.linear(10).add_noise(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5), torch.tensor([0, 1]))


def test_t_batch_that_does_not_broadcast_is_refused():
    x0 = torch.zeros(4, 1, 4, 4)
    with pytest.raises(ValueError, match=r"t must have shape \(B,\)"):
        NoiseSchedule.linear(10).add_noise(x0, x0, torch.tensor([0, 1, 2]))



def test_iterated_q_step_has_the_closed_form_mean_and_variance():
    # Mean: q_step with zero noise multiplies by sqrt(1 - beta_t), so after t+1 steps x0 is scaled by
    # sqrt(alpha_bar_t) exactly. Variance: Monte Carlo over 20,000 chains against 1 - alpha_bar_t.
    schedule = NoiseSchedule.cosine(200)
    gen = torch.Generator().manual_seed(0)
    x = torch.full((20_000, 1), 0.7, dtype=torch.float64)
    mean = torch.ones(1, 1, dtype=torch.float64)
    for t in range(schedule.num_steps):
        step = torch.tensor([t])
        mean = schedule.q_step(mean, torch.zeros_like(mean), step)
        x = schedule.q_step(x, torch.randn(x.shape, generator=gen, dtype=torch.float64), step.expand(len(x)))
        if t in (0, 50, 199):
            ab = schedule.alphas_cumprod[t].item()
            assert mean.item() == pytest.approx(ab**0.5, rel=1e-12)
            assert x.mean().item() == pytest.approx(0.7 * ab**0.5, abs=4 * ((1 - ab) / len(x)) ** 0.5 + 1e-9)
            assert x.var().item() == pytest.approx(1 - ab, rel=0.05, abs=1e-6)
