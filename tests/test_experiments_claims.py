"""Lesson 10's formulas: the articles' reverse step, VE against VP, and the bound's KL terms."""

import math

import pytest
import torch

from sdcourse.experiments import claims
from sdcourse.samplers import DDPMSampler
from sdcourse.sampling import sample
from sdcourse.schedules import NoiseSchedule


def test_naive_step_inverts_one_forward_step_in_float64():
    schedule = NoiseSchedule.linear()
    g = torch.Generator().manual_seed(0)
    x_prev = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    for t in (0, 10, 500, 999):
        x_t = schedule.q_step(x_prev, eps, torch.full((4,), t))
        back = claims.naive_reverse_step(x_t, eps, float(schedule.betas[t]))
        assert torch.allclose(back, x_prev, atol=1e-12, rtol=0)


def test_naive_step_is_not_the_posterior_mean_for_the_total_noise():
    """Given Eq. 4's total noise (what eps_theta estimates), the inverse misses mu-tilde (Eq. 7)."""
    schedule = NoiseSchedule.linear()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64).clamp(-1, 1)
    eps = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    t = torch.full((4,), 500)
    x_t = schedule.add_noise(x0, eps, t)
    naive = claims.naive_reverse_step(x_t, eps, float(schedule.betas[500]))
    right = schedule.posterior_mean(x0, x_t, t)
    assert (naive - right).abs().max() > 1e-3


def test_naive_sampler_runs_in_the_loop_and_adds_no_noise():
    schedule = NoiseSchedule.linear(num_steps=20)

    def model(x, t, labels):
        return torch.zeros_like(x)

    shape = (2, 1, 4, 4)
    a = sample(model, claims.NaiveSampler(schedule), shape, generator=torch.Generator().manual_seed(0), progress=False)
    b = sample(model, claims.NaiveSampler(schedule), shape, generator=torch.Generator().manual_seed(0), progress=False)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    scale = torch.prod(1.0 / (1.0 - schedule.betas).sqrt()).item()  # eps = 0: only the 1/sqrt(1-beta) factors
    assert torch.equal(a, b)
    assert torch.allclose(a, x_T * scale, atol=1e-5)
    ddpm = sample(model, DDPMSampler(schedule), shape, generator=torch.Generator().manual_seed(0), progress=False)
    assert not torch.allclose(ddpm, a)


def test_ve_and_vp_variances_match_simulation_and_formula():
    schedule = NoiseSchedule.linear()
    g = torch.Generator().manual_seed(2)
    n, steps = 20000, 300
    x0 = torch.randn(n, generator=g, dtype=torch.float64) * 0.5  # Var[x_0] = 0.25
    ve, vp = x0.clone(), x0.clone()
    for t in range(steps):
        e = torch.randn(n, generator=g, dtype=torch.float64)
        ve = ve + e
        vp = schedule.q_step(vp, e, torch.full((n,), t))
    t_last = torch.tensor([steps - 1])
    assert float(claims.ve_variance(0.25, t_last)) == pytest.approx(0.25 + steps)
    assert ve.var().item() == pytest.approx(float(claims.ve_variance(0.25, t_last)), rel=0.05)
    assert vp.var().item() == pytest.approx(float(claims.vp_variance(schedule, 0.25, t_last)), rel=0.05)
    assert float(claims.vp_variance(schedule, 1.0, torch.tensor([999]))) == pytest.approx(1.0)
    assert float(claims.ve_snr(1.0, torch.tensor([999]))) == pytest.approx(1e-3)


def test_gaussian_kl_against_float64_closed_form_and_zero_at_equality():
    m_q, v_q, m_p, v_p = 0.3, 0.5, -0.2, 2.0
    expected = math.log(math.sqrt(v_p) / math.sqrt(v_q)) + (v_q + (m_q - m_p) ** 2) / (2 * v_p) - 0.5
    got = claims.gaussian_kl(*(torch.tensor([v], dtype=torch.float64) for v in (m_q, v_q, m_p, v_p)))
    assert got.item() == pytest.approx(expected, abs=1e-14)
    same = torch.tensor([0.7], dtype=torch.float64)
    assert claims.gaussian_kl(same, same, same, same).item() == 0.0
    with pytest.raises(ValueError, match="var_q"):
        claims.gaussian_kl(same, -same, same, same)


def test_vlb_term_equals_eq12_weighted_eps_error():
    schedule = NoiseSchedule.linear()
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(3, 1, 6, 6, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(3, 1, 6, 6, generator=g, dtype=torch.float64)
    eps_pred = noise + 0.1 * torch.randn(3, 1, 6, 6, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 100, 900])
    term = claims.vlb_term(schedule, x0, noise, eps_pred, t)
    eq12 = claims.vlb_eps_weight(schedule, t) * (noise - eps_pred).pow(2).flatten(1).sum(1)
    assert torch.allclose(term, eq12, rtol=1e-9)
    assert claims.vlb_term(schedule, x0, noise, noise, t).abs().max() < 1e-9
    with pytest.raises(ValueError, match="t must be >= 1"):
        claims.vlb_eps_weight(schedule, torch.tensor([0]))


def test_bad_beta_is_named():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="beta_t"):
        claims.naive_reverse_step(x, x, 1.0)


def test_compare_reverse_steps_rows_summary_and_the_naive_collapse():
    """A model that calls all of x_t noise (eps = x_t): the naive step shrinks x_t by (1 - sqrt(beta_t)) /
    sqrt(1 - beta_t) < 1 each step, so every seed ends at the same point; DDPM's fresh noise keeps them apart."""
    schedule = NoiseSchedule.linear(num_steps=50)

    def model(x, t, labels):
        return x

    labels = torch.tensor([3, 3, 5, 5])
    out = claims.compare_reverse_steps(model, schedule, labels, seeds=[0, 1], fid=False)
    assert [(r["seed"], r["sampler"]) for r in out["rows"]] == [(s, n) for s in (0, 1) for n in claims.REVERSE_STEPS]
    assert all(r["fid"] is None for r in out["rows"]) and "fid" not in out["summary"]["DDPM posterior"]
    naive, ddpm = out["summary"]["articles' step"], out["summary"]["DDPM posterior"]
    assert set(naive) == {"accuracy", "diversity", "pixel_std"}
    assert naive["pixel_std"][0] < 0.05 * ddpm["pixel_std"][0]  # collapsed towards 0
    assert naive["diversity"][0] < 0.1 * ddpm["diversity"][0]
    assert out["images"]["articles' step"].shape == (4, 1, 28, 28)
    with pytest.raises(ValueError, match="seeds"):
        claims.compare_reverse_steps(model, schedule, labels, seeds=[])


def test_reinitialized_and_perturbed_copies_leave_the_model_alone():
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    before = [p.clone() for p in net.parameters()]
    state = torch.random.get_rng_state()
    fresh, again = claims.reinitialized(net, 1), claims.reinitialized(net, 1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is untouched
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), again.parameters(), strict=True))
    assert not torch.equal(fresh[0].weight, net[0].weight)
    noisy = claims.perturbed(net, 0.5, seed=0)
    change = (noisy[0].weight - net[0].weight).std() / net[0].weight.std()
    assert 0.3 < change < 0.7
    assert torch.equal(claims.perturbed(net, 0.0)[1].weight, net[1].weight)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    with pytest.raises(ValueError, match="scale"):
        claims.perturbed(net, -1.0)
