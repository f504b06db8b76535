"""Lesson 12's 2-D experiments and reflow's loss: each measure against a case worked by hand or a
closed form, the loss against a float64 recomputation, and reflow straightening a trained flow."""

from __future__ import annotations

import math

import pytest
import torch

from sdcourse import flow
from sdcourse.experiments import flow_matching as fm


def test_eight_gaussians_land_on_their_modes_as_often_as_the_closed_form_says():
    points = fm.eight_gaussians(20_000, torch.Generator().manual_seed(0))
    # |x - centre| / sd is Rayleigh in 2-D: P(r < 3) = 1 - exp(-9 / 2); binomial sd at n = 20000 is 0.0007
    assert fm.on_mode(points) == pytest.approx(1 - math.exp(-4.5), abs=0.004)
    assert fm.on_mode(torch.zeros(5, 2)) == 0.0


def test_straightness_of_hand_made_paths():
    line = torch.linspace(0, 1, 7).view(7, 1, 1) * torch.tensor([[3.0, 4.0]])
    assert fm.straightness(line) == pytest.approx(0.0, abs=1e-6)  # float32 points
    bent = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 0.0]]])  # the middle point is 1 off a chord of 2
    assert fm.straightness(bent) == pytest.approx(0.5)
    both = torch.cat([line[[0, 3, 6]], bent], 1)  # largest distances 0 and 1, segments 5 and 2 long
    assert fm.straightness(both) == pytest.approx(0.5 / 3.5)
    slow_start = bent[[0, 0, 0, 1, 2]]  # the same path with more points at its start: the same number
    assert fm.straightness(slow_start) == pytest.approx(0.5)


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, x, t, labels=None):
        return self.weight * x + t.view(-1, 1) / 1000


def test_reflow_loss_is_the_flow_matching_loss_on_the_given_pairs():
    gen = torch.Generator().manual_seed(0)
    pairs = torch.randn(6, 4, generator=gen)
    model = Linear()
    loss = flow.reflow_loss(model, pairs, None, torch.Generator().manual_seed(1))
    t = torch.rand(6, generator=torch.Generator().manual_seed(1)).double().view(-1, 1)  # uniform t, drawn first
    x0, noise = pairs.double()[:, :2], pairs.double()[:, 2:]
    x_t = (1 - t) * x0 + t * noise
    expected = ((0.7 * x_t + t) - (noise - x0)).pow(2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_reflow_loss_names_bad_pairs():
    with pytest.raises(ValueError, match="pairs must be"):
        flow.reflow_loss(Linear(), torch.zeros(4, 3), None, torch.Generator())


@pytest.fixture(scope="module")
def trained():
    data = fm.eight_gaussians(2000, torch.Generator().manual_seed(0))
    first = fm.train_toy("flow", data, steps=400)
    pairs = fm.reflow_pairs(first, 2000, steps=50)
    return first, pairs, fm.train_toy("flow", pairs, steps=400, pairs=True)


def test_reflow_pairs_are_the_flows_own_samples_from_that_noise(trained):
    first, _, _ = trained
    pairs = fm.reflow_pairs(first, 50, steps=8, seed=4)
    end = fm.trajectories(first, "flow", 8, n=50, seed=4)[-1]
    torch.testing.assert_close(pairs[:, :2], end)
    torch.testing.assert_close(pairs[:, 2:], torch.randn(50, 2, generator=torch.Generator().manual_seed(4)))


def test_reflow_straightens_the_paths_and_helps_one_step(trained):
    first, _, second = trained
    bent, straight = (fm.straightness(fm.trajectories(m, "flow", 50, n=500)) for m in (first, second))
    assert straight < bent / 3
    one_step = [fm.on_mode(fm.trajectories(m, "flow", 1, n=500)[-1]) for m in (first, second)]
    assert one_step[1] > one_step[0] + 0.2  # one step of the first flow lands between the modes


def test_bad_objective_is_named():
    with pytest.raises(ValueError, match="objective"):
        fm.toy_sampler("score", 4)


def test_straightness_of_image_paths_is_that_of_their_flattened_points():
    path = torch.randn(7, 5, 2, generator=torch.Generator().manual_seed(1))
    images = path.view(7, 5, 1, 2, 1)  # each point a 1x2x1 "image"
    assert fm.straightness(images) == fm.straightness(path)
    line = torch.linspace(0, 1, 9).view(9, 1, 1, 1, 1) * torch.ones(9, 3, 1, 4, 4)  # straight segments
    assert fm.straightness(line) == pytest.approx(0.0, abs=1e-12)


def test_digit_path_straightness_is_that_of_the_sampled_trajectory():
    from sdcourse import flow
    from sdcourse.sampling import sample

    class Curl(torch.nn.Module):  # a velocity that turns with t, so the paths bend
        def forward(self, x, t, labels):
            return torch.sin(t.view(-1, 1, 1, 1) / 200) * x.flip(-1) + 0.1 * labels.view(-1, 1, 1, 1)

    labels = torch.tensor([2, 5, 8])
    _, trajectory = sample(Curl(), flow.FlowMatchEulerSampler(10), (3, 1, 28, 28), labels,
                           torch.Generator().manual_seed(4), progress=False, return_trajectory=True)
    got = fm.digit_path_straightness(Curl(), labels, steps=10, seed=4)
    assert got == fm.straightness(trajectory.x_t) and got > 0.01
