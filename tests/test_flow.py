"""Flow matching (lesson 12): the path, the loss and the sampler against float64 recomputations and
``diffusers.FlowMatchEulerDiscreteScheduler``; the conversions between eps, x0 and v round-trip."""

from __future__ import annotations

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from sdcourse import flow
from sdcourse.sampling import sample
from sdcourse.unet import NULL_LABEL

SHAPE = (3, 1, 6, 6)
LABELS = torch.tensor([2, 5, 8])


def randoms(seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(SHAPE, generator=gen, dtype=dtype) for _ in range(2))


def test_path_ends_and_velocity():
    x0, noise = randoms(0)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    x_t = flow.interpolate(x0, noise, t)
    torch.testing.assert_close(x_t[0], x0[0])  # t = 0 is the data
    torch.testing.assert_close(x_t[2], noise[2])  # t = 1 is the noise
    torch.testing.assert_close(x_t[1], 0.7 * x0[1] + 0.3 * noise[1])
    h = 1e-6  # the target is the path's derivative, by finite differences in float64
    ahead = flow.interpolate(x0, noise, t.clamp(max=1 - h) + h)
    derivative = (ahead - flow.interpolate(x0, noise, t.clamp(max=1 - h))) / h
    torch.testing.assert_close(derivative, flow.velocity_target(x0, noise), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("t", [0.05, 0.5, 0.95])
def test_conversions_round_trip(t):
    x0, noise = randoms(1)
    x_t, v = flow.interpolate(x0, noise, t), flow.velocity_target(x0, noise)
    torch.testing.assert_close(flow.velocity_to_x0(x_t, v, t), x0)
    torch.testing.assert_close(flow.velocity_to_eps(x_t, v, t), noise)
    torch.testing.assert_close(flow.eps_to_velocity(x_t, noise, t), v)
    torch.testing.assert_close(flow.x0_to_velocity(x_t, x0, t), v)


class Recorder(torch.nn.Module):
    """A fixed velocity model that remembers what it was called with."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x_t, t, labels=None):
        self.seen = (x_t.detach().clone(), t.detach().clone(), None if labels is None else labels.clone())
        return self.w * x_t + 0.01 * t.view(-1, 1, 1, 1)


def test_loss_equals_a_float64_recomputation():
    model = Recorder().double()
    x0, _ = randoms(2)
    loss = flow.flow_matching_loss(model, x0, LABELS.clone(), torch.Generator().manual_seed(7), label_dropout=0.5)
    gen = torch.Generator().manual_seed(7)  # the same draws, in the documented order
    t = torch.sigmoid(torch.randn(3, generator=gen)).double()
    noise = torch.randn(SHAPE, generator=gen).double()
    drop = torch.rand(3, generator=gen) < 0.5
    x_t = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * noise
    expected = ((0.5 * x_t + 0.01 * 1000 * t.view(-1, 1, 1, 1) - (noise - x0)) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    seen_x, seen_t, seen_labels = model.seen
    torch.testing.assert_close(seen_t, 1000 * t)
    assert torch.equal(seen_labels, LABELS.masked_fill(drop, NULL_LABEL))


def test_logit_normal_timesteps():
    t = flow.sample_timesteps(200_000, torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1
    logit = torch.log(t / (1 - t))
    assert abs(logit.mean().item()) < 0.01 and abs(logit.std().item() - 1) < 0.01  # u ~ N(0, 1)
    assert abs(flow.sample_timesteps(200_000, torch.Generator(), "uniform").mean().item() - 0.5) < 0.01


def test_shift_and_resolution_shift():
    sigmas = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(flow.shift_sigmas(sigmas, 3.0), torch.tensor([0.0, 0.5, 0.75, 1.0], dtype=torch.float64))
    assert flow.resolution_shift(1024 * 1024, 256 * 256) == pytest.approx(4.0)


@pytest.mark.parametrize("shift", [1.0, 3.0, 0.5])
@pytest.mark.parametrize("n", [1, 2, 8, 28])
def test_sampler_equals_diffusers(n, shift):
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(n)
    ours = flow.FlowMatchEulerSampler(n, shift=shift)
    torch.testing.assert_close(ours.timesteps, scheduler.timesteps, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(ours.sigmas, scheduler.sigmas, rtol=1e-6, atol=1e-7)
    model = Recorder()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(SHAPE, generator=gen)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t.expand(3)), t, x).prev_sample
    got = sample(model, ours, SHAPE, None, torch.Generator().manual_seed(3), progress=False)
    assert (got - x).abs().max().item() <= 1e-5


def test_euler_on_a_straight_path_is_exact_in_one_step():
    """A model that knows the straight path's velocity takes noise to data in a single step."""
    x0, noise = randoms(4, torch.float32)

    class Straight(torch.nn.Module):
        def forward(self, x_t, t, labels=None):
            return noise - x0  # v of the path through this noise and this x0

    sampler = flow.FlowMatchEulerSampler(1)
    out = sampler.step(Straight()(noise, sampler.timesteps), sampler.timesteps[0], noise)
    torch.testing.assert_close(out.prev_sample, x0, rtol=1e-5, atol=1e-5)


BAD = {
    "t above 1": (lambda: flow.interpolate(torch.zeros(2, 1), torch.zeros(2, 1), torch.tensor([0.5, 1.5])),
                  r"t must lie in \[0, 1\]"),
    "t at 1 to velocity": (lambda: flow.eps_to_velocity(torch.zeros(1, 1), torch.zeros(1, 1), 1.0), r"t must be < 1"),
    "t at 0 to velocity": (lambda: flow.x0_to_velocity(torch.zeros(1, 1), torch.zeros(1, 1), 0.0), r"t must be > 0"),
    "shape": (lambda: flow.interpolate(torch.zeros(2, 1), torch.zeros(3, 1), 0.5), r"noise .*shape"),
    "integer x0": (lambda: flow.interpolate(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1), 0.5),
                   r"x0 must be a floating"),
    "zero steps": (lambda: flow.FlowMatchEulerSampler(0), r"num_inference_steps must be an integer >= 1, got 0"),
    "shift": (lambda: flow.FlowMatchEulerSampler(4, shift=0.0), r"shift must be a finite number > 0"),
    "sampling": (lambda: flow.sample_timesteps(4, torch.Generator(), "beta"), r"sampling must be one of"),
    "step off the grid": (lambda: flow.FlowMatchEulerSampler(4).step(torch.zeros(1, 1), 10.0, torch.zeros(1, 1)),
                          r"t must be this sampler's next timestep"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments(case):
    fn, match = BAD[case]
    with pytest.raises(ValueError, match=match):
        fn()



class LabelVelocity(torch.nn.Module):
    """A fixed velocity that depends on x, t and the label (so a label sent to the wrong noise shows)."""

    def forward(self, x_t, t, labels):
        return 0.5 * x_t + 0.01 * t.view(-1, 1, 1, 1) + 0.1 * labels.view(-1, 1, 1, 1)


def test_reflow_pairs_are_the_flows_euler_samples_beside_their_noise():
    model = LabelVelocity()
    labels = torch.tensor([0, 3, 7, 9, 1])
    noise = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    pairs = flow.reflow_pairs(model, noise, labels, num_inference_steps=6, batch_size=2)
    expected = sample(model, flow.FlowMatchEulerSampler(6), (5, 1, 4, 4), labels, torch.Generator().manual_seed(2),
                      progress=False)
    torch.testing.assert_close(pairs[:, :1], expected)
    assert torch.equal(pairs[:, 1:], noise)
    torch.testing.assert_close(flow.reflow_pairs(model, noise, labels, 6, batch_size=5), pairs)  # batches independent


def test_reflow_pairs_name_labels_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(5,\)"):
        flow.reflow_pairs(LabelVelocity(), torch.zeros(5, 1, 4, 4), torch.zeros(4, dtype=torch.long))
