"""Lesson 12's 2-D experiments: noise prediction against flow matching, and reflow, in seconds.

The data are eight Gaussians on a circle (``eight_gaussians``); one small MLP (``ToyMLP``) learns
either DDPM's eps (``train.ddpm_loss``) or flow matching's velocity (``flow.flow_matching_loss``)
through the course's one training loop. Sampling runs through ``sampling.sample`` with DDIM
(eta = 0, the probability-flow ODE of lesson 11) or ``FlowMatchEulerSampler``, and two numbers a
student can read compare them: ``on_mode`` (the share of samples within three standard deviations
of one of the eight centres; real data score about 99 %) and ``straightness`` (how far a
trajectory strays from the straight segment between its two ends, relative to that segment's
length; 0 for a straight path). ``reflow`` trains the 2-rectified flow of Liu et al. 2022
(arXiv:2209.03003, Sec. 2.2) on (sample, noise) pairs of a trained flow.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import flow, validate
from ..samplers import DDIMSampler
from ..sampling import sample
from ..schedules import NoiseSchedule
from ..train import TrainConfig, ddpm_loss, fit

Tensor = torch.Tensor
RADIUS, MODE_SD = 2.0, 0.25  # eight centres on a circle of this radius, each a Gaussian of this sd
OBJECTIVES = ("ddpm", "flow")


def eight_gaussians(n: int, generator: torch.Generator) -> Tensor:
    """n points (n, 2): a centre chosen uniformly among eight on a circle, plus N(0, MODE_SD^2 I)."""
    n = validate.integer("n", n, 1)
    k = torch.randint(0, 8, (n,), generator=generator)
    angle = k.double() * (2 * math.pi / 8)
    centres = RADIUS * torch.stack([angle.cos(), angle.sin()], 1).float()
    return centres + MODE_SD * torch.randn(n, 2, generator=generator)


class ToyMLP(nn.Module):
    """eps_theta(x_t, t) or v_theta(x_t, t) on 2-D points: x and a sinusoidal embedding of t (in
    [0, 1000], the course's timestep scale) through three SiLU layers."""

    def __init__(self, hidden: int = 128, frequencies: int = 8):
        super().__init__()
        self.register_buffer("freqs", 2.0 ** torch.arange(frequencies) * math.pi, persistent=False)
        self.net = nn.Sequential(nn.Linear(2 + 2 * frequencies, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        angles = (t.to(x.dtype) / 1000).view(-1, 1) * self.freqs
        return self.net(torch.cat([x, angles.sin(), angles.cos()], 1))


def train_toy(objective: str, data: Tensor, steps: int = 1500, seed: int = 0, pairs: bool = False,
              progress: bool = False) -> nn.Module:
    """A ``ToyMLP`` trained on ``data`` (N, 2) with ``objective`` "ddpm" or "flow" (unconditional);
    with ``pairs`` the data are (N, 4) (sample, noise) pairs and the loss is ``flow.reflow_loss``.
    Returns the EMA weights."""
    validate.one_of("objective", objective, OBJECTIVES)
    torch.manual_seed(seed)
    model, schedule = ToyMLP(), NoiseSchedule.linear(1000)
    losses = {
        "ddpm": lambda m, x, y, g: ddpm_loss(m, schedule, x, None, g),
        "flow": lambda m, x, y, g: (flow.reflow_loss(m, x, None, g) if pairs else
                                    flow.flow_matching_loss(m, x, None, g, sampling="uniform")),
    }
    config = TrainConfig(steps=steps, batch_size=256, lr=2e-3, ema_decay=0.99, label_dropout=0.0, seed=seed)
    return fit(model, losses[objective], (data, torch.zeros(len(data), dtype=torch.long)), config,
               progress=progress).ema.eval()


def toy_sampler(objective: str, steps: int):
    """DDIM (eta = 0: the probability-flow ODE, lesson 11) for eps, flow Euler for a velocity."""
    validate.one_of("objective", objective, OBJECTIVES)
    return DDIMSampler(NoiseSchedule.linear(1000), steps, clip_sample=False) if objective == "ddpm" \
        else flow.FlowMatchEulerSampler(steps)


@torch.no_grad()
def trajectories(model: nn.Module, objective: str, steps: int, n: int = 500, seed: int = 0) -> Tensor:
    """(steps + 1, n, 2): every x_t from the noise to the sample, from ``seed``'s noise."""
    _, trajectory = sample(model, toy_sampler(objective, steps), (n, 2), None, torch.Generator().manual_seed(seed),
                           progress=False, return_trajectory=True)
    return trajectory.x_t


def on_mode(points: Tensor) -> float:
    """Share of ``points`` (n, 2) within 3 MODE_SD of one of the eight centres (real data: ~99 %)."""
    angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    centres = RADIUS * torch.stack([angle.cos(), angle.sin()], 1)
    nearest = torch.cdist(points.double(), centres).min(1).values
    return (nearest < 3 * MODE_SD).double().mean().item()


def straightness(path: Tensor) -> float:
    """How far paths stray from straight: the largest distance of a path's points from the segment
    joining its two ends, averaged over paths, in units of the mean length of those segments (0 for
    straight paths, as Liu et al.'s straightness; the largest distance does not depend on where a
    sampler puts its steps along the path). ``path`` is (steps + 1, n, ...): (steps + 1, n, 2) as
    ``trajectories`` returns, or images (steps + 1, n, C, H, W) as a ``sampling.Trajectory``'s x_t."""
    path = path.flatten(2)  # each point of a path is one vector
    start, end = path[0].double(), path[-1].double()
    chord = end - start
    length = chord.norm(dim=1)
    s = ((path.double() - start) * chord).sum(-1) / length.clamp_min(1e-12) ** 2  # projection on the chord
    closest = start + s.clamp(0, 1).unsqueeze(-1) * chord
    return ((path.double() - closest).norm(dim=-1).max(0).values.mean() / length.mean()).item()


def digit_path_straightness(model: nn.Module, labels: Tensor, steps: int = 50, seed: int = 0) -> float:
    """``straightness`` of a digit flow's Euler paths (``steps``) from ``seed``'s noises to ``labels``'
    digits (N,): how a flow on 1x28x28 images bends, in the same units as on the toy."""
    _, trajectory = sample(model, flow.FlowMatchEulerSampler(steps), (len(labels), 1, 28, 28), labels,
                           torch.Generator().manual_seed(seed), progress=False, return_trajectory=True)
    return straightness(trajectory.x_t)


def reflow_pairs(model: nn.Module, n: int, steps: int = 100, seed: int = 1) -> Tensor:
    """(n, 4): samples of a trained flow beside the noise each came from (its Euler ODE, ``steps``)."""
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    return flow.reflow_pairs(model, noise, num_inference_steps=steps, batch_size=n)
