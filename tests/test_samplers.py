"""DDPM and DDIM samplers against ``diffusers``' ``DDPMScheduler`` and ``DDIMScheduler`` as oracles.

How ``diffusers`` is configured to be the same sampler (``make_ddpm`` / ``make_ddim`` below):
- ``beta_schedule``: "linear" and "scaled_linear" with our ``beta_start``/``beta_end``; our cosine
  schedule is ``diffusers``' "squaredcos_cap_v2" (Nichol and Dhariwal, max_beta 0.999).
- ``prediction_type="epsilon"``: the model predicts the noise.
- ``clip_sample``: the same as ours (both default to True, clipping x0_hat to [-1, 1]).
- DDPM ``variance_type="fixed_small"``: sigma_t^2 = beta-tilde_t (Ho et al. Eq. 7); none at t = 0.
- DDIM ``set_alpha_to_one=True``: alpha-bar after the last step is 1 (the step returns x0_hat),
  ``steps_offset=0`` and ``timestep_spacing="leading"``: timesteps (n-1) k, ..., k, 0 with
  k = T // n; ``eta`` is passed to ``DDIMScheduler.step``.

Precision: ``diffusers`` keeps alpha-bar in float32 and recovers beta_t as 1 - alpha-bar_t /
alpha-bar_{t-1}, which cancels catastrophically at small t (beta_t ~ 1e-4): its DDPM step then
differs from the float64 formula by up to ~5e-4. So ``upcast`` hands the oracle our float64
alpha-bar (``test_diffusers_schedule_equals_ours`` checks that its own float32 one agrees to float32
precision, so nothing else changes) and the steps then agree to 1e-5 in float32.

Noise: both sides draw z with ``torch.randn(shape, generator=...)`` on the CPU, so two generators
seeded alike give both the same z; ``test_injected_noise_equals_generator`` checks this path too.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from sdcourse.samplers import DDIMSampler, DDPMSampler, SamplerOutput, Trajectory, sample
from sdcourse.schedules import NoiseSchedule

T = 1000
SCHEDULES = {
    "linear": (
        lambda: NoiseSchedule.linear(T),
        dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02),
    ),
    "cosine": (lambda: NoiseSchedule.cosine(T), dict(beta_schedule="squaredcos_cap_v2")),
    "scaled_linear": (
        lambda: NoiseSchedule.scaled_linear(T),
        dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    ),
}
ATOL = 1e-5


@pytest.fixture(params=list(SCHEDULES), scope="module")
def schedule_pair(request):
    make, config = SCHEDULES[request.param]
    return make(), config


def upcast(scheduler, schedule: NoiseSchedule):
    """Give the oracle our float64 alpha-bar (see the module docstring, "Precision")."""
    scheduler.betas = schedule.betas.clone()
    scheduler.alphas = schedule.alphas.clone()
    scheduler.alphas_cumprod = schedule.alphas_cumprod.clone()
    return scheduler


def make_ddpm(config, clip_sample=True):
    return DDPMScheduler(
        num_train_timesteps=T,
        variance_type="fixed_small",
        clip_sample=clip_sample,
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=0,
        **config,
    )


def make_ddim(config, num_inference_steps, clip_sample=True):
    scheduler = DDIMScheduler(
        num_train_timesteps=T,
        clip_sample=clip_sample,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="leading",
        prediction_type="epsilon",
        **config,
    )
    scheduler.set_timesteps(num_inference_steps)
    return scheduler


def random_inputs(seed, shape=(3, 1, 28, 28)):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)  # x_t, eps


def assert_close(a, b, atol=ATOL, what=""):
    err = (a.double() - b.double()).abs().max().item()
    assert err <= atol, f"{what}: max abs difference {err:.3g} > {atol:g}"


# ---- schedule and timesteps ---------------------------------------------------------------------


def test_diffusers_schedule_equals_ours(schedule_pair):
    schedule, config = schedule_pair
    theirs = make_ddpm(config).alphas_cumprod.double()
    torch.testing.assert_close(theirs, schedule.alphas_cumprod, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 25, 50, 100, 333, 999, 1000])
def test_ddim_timesteps_equal_diffusers(n):
    ours = DDIMSampler(NoiseSchedule.linear(T), n)
    theirs = make_ddim(SCHEDULES["linear"][1], n).timesteps
    assert ours.timesteps.dtype == torch.int64
    assert torch.equal(ours.timesteps, theirs), (ours.timesteps[:5], theirs[:5])
    assert bool((ours.timesteps[:-1] > ours.timesteps[1:]).all())  # strictly descending


def test_ddpm_timesteps_equal_diffusers():
    ours = DDPMSampler(NoiseSchedule.linear(T)).timesteps
    theirs = make_ddpm(SCHEDULES["linear"][1])
    theirs.set_timesteps(T)  # what DDPMPipeline does
    assert ours.dtype == torch.int64 and torch.equal(ours, theirs.timesteps)
    assert ours[0].item() == T - 1 and ours[-1].item() == 0


# ---- one step -----------------------------------------------------------------------------------


@pytest.mark.parametrize("clip_sample", [True, False])
@pytest.mark.parametrize("t", [999, 998, 750, 500, 100, 10, 2, 1, 0])
def test_ddpm_step_equals_diffusers(schedule_pair, t, clip_sample):
    schedule, config = schedule_pair
    theirs = upcast(make_ddpm(config, clip_sample), schedule)
    ours = DDPMSampler(schedule, clip_sample=clip_sample)
    x_t, eps = random_inputs(t)
    a = ours.step(eps, t, x_t, generator=torch.Generator().manual_seed(7))
    b = theirs.step(eps, t, x_t, generator=torch.Generator().manual_seed(7))
    assert isinstance(a, SamplerOutput) and a.prev_sample.shape == x_t.shape
    assert a.prev_sample.dtype == torch.float32
    scale = 1.0 if clip_sample else max(1.0, b.pred_original_sample.abs().max().item())
    assert_close(a.pred_x0, b.pred_original_sample, ATOL * scale, "pred_x0")
    assert_close(a.prev_sample, b.prev_sample, ATOL, "prev_sample")


@pytest.mark.parametrize("use_clipped", [True, False])
@pytest.mark.parametrize("eta", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("n", [10, 50, 7])
def test_ddim_step_equals_diffusers(schedule_pair, n, eta, use_clipped):
    """Random eps makes x0_hat leave [-1, 1] at most steps, so clipping and re-deriving eps both act."""
    schedule, config = schedule_pair
    theirs = upcast(make_ddim(config, n), schedule)
    ours = DDIMSampler(schedule, n, eta=eta, use_clipped_model_output=use_clipped)
    for t in ours.timesteps:  # every step, the last (t_prev < 0, alpha-bar = 1) included
        x_t, eps = random_inputs(int(t))
        a = ours.step(eps, t, x_t, generator=torch.Generator().manual_seed(7))
        b = theirs.step(eps, t, x_t, eta=eta, use_clipped_model_output=use_clipped,
                        generator=torch.Generator().manual_seed(7))
        assert_close(a.pred_x0, b.pred_original_sample, ATOL, f"pred_x0 at t={int(t)}")
        assert_close(a.prev_sample, b.prev_sample, ATOL, f"prev_sample at t={int(t)}")


def test_ddim_step_unclipped_equals_diffusers():
    schedule, config = SCHEDULES["cosine"][0](), SCHEDULES["cosine"][1]
    theirs = upcast(make_ddim(config, 20, clip_sample=False), schedule)
    ours = DDIMSampler(schedule, 20, eta=1.0, clip_sample=False)
    for t in ours.timesteps:
        x_t, eps = random_inputs(int(t))
        a = ours.step(eps, t, x_t, generator=torch.Generator().manual_seed(3))
        b = theirs.step(eps, t, x_t, eta=1.0, generator=torch.Generator().manual_seed(3))
        assert_close(a.prev_sample, b.prev_sample, ATOL, f"prev_sample at t={int(t)}")


def test_ddpm_step_closed_form_float64():
    """Independent of diffusers: Algorithm 2, line 4 (Eq. 11 mean, beta-tilde variance), float64."""
    schedule = NoiseSchedule.linear(T)
    sampler = DDPMSampler(schedule, clip_sample=False)
    x_t, eps = (v.double() for v in random_inputs(0, (2, 1, 4, 4)))
    z = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    for t in (999, 500, 1, 0):
        a, b, ab = (
            schedule.alphas[t].item(),
            schedule.betas[t].item(),
            schedule.alphas_cumprod[t].item(),
        )
        ab_prev = schedule.alphas_cumprod[t - 1].item() if t > 0 else 1.0
        mean = (x_t - b / math.sqrt(1 - ab) * eps) / math.sqrt(a)  # Eq. 11
        sigma = (
            math.sqrt((1 - ab_prev) / (1 - ab) * b) if t > 0 else 0.0
        )  # beta-tilde, z = 0 at t = 0
        got = sampler.step(eps, t, x_t, noise=z).prev_sample
        torch.testing.assert_close(got, mean + sigma * z, rtol=1e-10, atol=1e-10)


def test_ddim_eta0_is_deterministic_and_last_step_returns_pred_x0():
    sampler = DDIMSampler(NoiseSchedule.linear(T), 10, eta=0.0)
    x_t, eps = random_inputs(1)
    a = sampler.step(eps, 900, x_t, generator=torch.Generator().manual_seed(0))
    b = sampler.step(eps, 900, x_t, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.prev_sample, b.prev_sample)
    last = DDIMSampler(NoiseSchedule.linear(T), 10, eta=1.0).step(
        eps, 0, x_t, generator=torch.Generator()
    )
    torch.testing.assert_close(last.prev_sample, last.pred_x0)


def test_ddpm_step_adds_noise_except_at_t0():
    sampler = DDPMSampler(NoiseSchedule.linear(T))
    x_t, eps = random_inputs(2)
    a = sampler.step(eps, 5, x_t, generator=torch.Generator().manual_seed(0)).prev_sample
    b = sampler.step(eps, 5, x_t, generator=torch.Generator().manual_seed(1)).prev_sample
    assert not torch.allclose(a, b)
    a = sampler.step(eps, 0, x_t, generator=torch.Generator().manual_seed(0)).prev_sample
    b = sampler.step(eps, 0, x_t, generator=torch.Generator().manual_seed(1)).prev_sample
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "ours, theirs, t, kwargs",
    [
        (lambda s: DDPMSampler(s), lambda c: make_ddpm(c), 0, {}),  # no draw at the last step
        (lambda s: DDPMSampler(s), lambda c: make_ddpm(c), 5, {}),
        (
            lambda s: DDIMSampler(s, 10, eta=0.0),
            lambda c: make_ddim(c, 10),
            100,
            {"eta": 0.0},
        ),  # no draw
        (
            lambda s: DDIMSampler(s, 10, eta=0.5),
            lambda c: make_ddim(c, 10),
            0,
            {"eta": 0.5},
        ),  # draws
    ],
)
def test_generator_use_equals_diffusers(ours, theirs, t, kwargs):
    """Both draw the same amount of noise per step, so one seed drives both loops identically."""
    schedule, config = SCHEDULES["linear"][0](), SCHEDULES["linear"][1]
    x_t, eps = random_inputs(4)
    g_ours, g_theirs = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    ours(schedule).step(eps, t, x_t, generator=g_ours)
    theirs(config).step(eps, t, x_t, generator=g_theirs, **kwargs)
    assert torch.equal(g_ours.get_state(), g_theirs.get_state())
    assert torch.equal(g_ours.get_state(), torch.Generator().manual_seed(9).get_state()) == (
        t == 0 and isinstance(ours(schedule), DDPMSampler) or kwargs.get("eta") == 0.0
    )


@pytest.mark.parametrize("make", [lambda s: DDPMSampler(s), lambda s: DDIMSampler(s, 10, eta=0.7)])
def test_injected_noise_equals_generator(make):
    sampler = make(NoiseSchedule.cosine(T))
    x_t, eps = random_inputs(3)
    z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(11))
    a = sampler.step(eps, 100, x_t, generator=torch.Generator().manual_seed(11))
    b = sampler.step(eps, 100, x_t, noise=z)
    assert torch.equal(a.prev_sample, b.prev_sample)


# ---- the whole loop -----------------------------------------------------------------------------


class LinearModel(torch.nn.Module):
    """A fixed random linear "denoiser": eps = W x_t + u t / T + v[label], enough for the loop."""

    def __init__(self, dim=64, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(torch.randn(dim, dim, generator=gen) / math.sqrt(dim))
        self.u = torch.nn.Parameter(torch.randn(dim, generator=gen))
        self.v = torch.nn.Parameter(torch.randn(10, dim, generator=gen) * 0.1)

    def forward(self, x_t, t, labels=None):
        assert t.dtype == torch.int64 and t.shape == (x_t.shape[0],)
        flat = x_t.flatten(1)  # (B, C, H, W) -> (B, CHW)
        out = flat @ self.W.T + t.float()[:, None] / T * self.u
        if labels is not None:
            out = out + self.v[labels]
        return out.view_as(x_t)


def diffusers_loop(model, scheduler, shape, labels, seed, **step_kwargs):
    """The loop of diffusers' DDPMPipeline / DDIMPipeline, with our model's signature."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen)  # randn_tensor on the CPU
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model(x, t.expand(shape[0]).long(), labels)
            x = scheduler.step(eps, t, x, generator=gen, **step_kwargs).prev_sample
    return x


SHAPE = (4, 1, 8, 8)
LABELS = torch.tensor([0, 3, 7, 9])


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_ddpm_loop_equals_diffusers(name):
    schedule, config = SCHEDULES[name][0](), SCHEDULES[name][1]
    model = LinearModel()
    scheduler = upcast(make_ddpm(config), schedule)
    scheduler.set_timesteps(T)
    expected = diffusers_loop(model, scheduler, SHAPE, LABELS, seed=5)
    got = sample(
        model,
        DDPMSampler(schedule),
        SHAPE,
        LABELS,
        torch.Generator().manual_seed(5),
        progress=False,
    )
    assert_close(got, expected, 1e-4, "x_0 after 1000 DDPM steps")
    other = sample(
        model,
        DDPMSampler(schedule),
        SHAPE,
        LABELS,
        torch.Generator().manual_seed(6),
        progress=False,
    )
    assert not torch.allclose(other, expected, atol=1e-2)  # the seed matters: the test can fail


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("name", ["linear", "scaled_linear"])
def test_ddim_loop_equals_diffusers(name, eta):
    schedule, config = SCHEDULES[name][0](), SCHEDULES[name][1]
    model = LinearModel()
    expected = diffusers_loop(
        model, upcast(make_ddim(config, 50), schedule), SHAPE, LABELS, seed=5, eta=eta,
        use_clipped_model_output=True,  # DDIMPipeline's argument; our DDIMSampler's default
    )
    got = sample(
        model,
        DDIMSampler(schedule, 50, eta=eta),
        SHAPE,
        LABELS,
        torch.Generator().manual_seed(5),
        progress=False,
    )
    assert_close(got, expected, 1e-5, f"x_0 after 50 DDIM steps, eta={eta}")


def test_sample_trajectory():
    model = LinearModel()
    sampler = DDIMSampler(NoiseSchedule.linear(T), 5)
    x0, traj = sample(
        model,
        sampler,
        SHAPE,
        None,
        torch.Generator().manual_seed(0),
        progress=False,
        return_trajectory=True,
    )
    assert isinstance(traj, Trajectory)
    assert traj.x_t.shape == (6, *SHAPE) and traj.pred_x0.shape == (5, *SHAPE)
    assert torch.equal(traj.timesteps, sampler.timesteps)
    assert torch.equal(traj.x_t[0], torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(traj.x_t[-1], x0)
    torch.testing.assert_close(traj.pred_x0[-1], x0)  # DDIM's last step returns x0_hat


# ---- bad input ----------------------------------------------------------------------------------

_S = NoiseSchedule.linear(T)
_X = torch.zeros(2, 1, 4, 4)
BAD = {
    "steps < 1": (lambda: DDIMSampler(_S, 0), r"num_inference_steps .*\[1, 1000\].*got 0"),
    "steps > T": (lambda: DDIMSampler(_S, 1001), r"num_inference_steps .*\[1, 1000\].*got 1001"),
    "steps not an int": (lambda: DDIMSampler(_S, 10.0), r"num_inference_steps .*got 10\.0"),
    "eta < 0": (lambda: DDIMSampler(_S, 10, eta=-0.1), r"eta .*\[0, 1\].*got -0\.1"),
    "eta > 1": (lambda: DDIMSampler(_S, 10, eta=1.5), r"eta .*\[0, 1\].*got 1\.5"),
    "eta nan": (lambda: DDIMSampler(_S, 10, eta=float("nan")), r"eta .*got nan"),
    "not a schedule": (lambda: DDPMSampler(torch.ones(10)), r"schedule must be .*NoiseSchedule"),
    "DDIM t not in timesteps": (
        lambda: DDIMSampler(_S, 10).step(_X, 950, _X),
        r"t must be one of .*got 950",
    ),
    "DDPM t = T": (
        lambda: DDPMSampler(_S).step(_X, 1000, _X),
        r"t must be one of .*999 down to 0.*got 1000",
    ),
    "DDPM t < 0": (lambda: DDPMSampler(_S).step(_X, -1, _X), r"t must be one of .*got -1"),
    "t a float": (lambda: DDPMSampler(_S).step(_X, 5.0, _X), r"t must be an int .*got 5\.0"),
    "t a batch": (
        lambda: DDPMSampler(_S).step(_X, torch.tensor([5, 5]), _X),
        r"t must be .*shape \(2,\)",
    ),
    "shapes differ": (
        lambda: DDPMSampler(_S).step(_X[:1], 5, _X),
        r"model_output .*\(2, 1, 4, 4\).*\(1, 1, 4, 4\)",
    ),
    "noise shape": (
        lambda: DDPMSampler(_S).step(_X, 5, _X, noise=_X[:1]),
        r"noise .*\(1, 1, 4, 4\)",
    ),
    "noise and generator": (
        lambda: DDPMSampler(_S).step(_X, 5, _X, generator=torch.Generator(), noise=_X),
        r"generator or noise",
    ),
    "labels shape": (
        lambda: sample(
            LinearModel(16), DDPMSampler(_S), (2, 1, 4, 4), torch.tensor([1, 2, 3]), progress=False
        ),
        r"labels .*\(2,\).*\(3,\)",
    ),
    "not a sampler": (
        lambda: sample(LinearModel(16), "ddim", (2, 1, 4, 4)),
        r"sampler must follow .*got str",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case):
    fn, match = BAD[case]
    with pytest.raises(ValueError, match=match):
        fn()
