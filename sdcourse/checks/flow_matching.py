"""Lesson 12 (flow matching): checks for the straight path x_t = (1 - t) x_0 + t eps, its velocity
target eps - x_0 (Lipman et al. 2022, arXiv:2210.02747, Sec. 4.1 with sigma_min = 0; Liu et al.
2022, arXiv:2209.03003, Eq. 1) and one Euler step of dx/dt = v from t to t_next < t, each against
a float64 recomputation in ``diffusers``' convention (noise at t = 1), which the tests hold equal
to ``sdcourse.flow``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import call, compare, exercise, generator, passed

__all__ = ["check_flow_euler_step", "check_flow_interpolate", "check_velocity_target"]


def _pair(gen: torch.Generator, batch: int = 4):
    return torch.randn(batch, 1, 6, 6, generator=gen), torch.randn(batch, 1, 6, 6, generator=gen)


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.double().view(-1, 1, 1, 1)


@exercise("flow_interpolate")
def check_flow_interpolate(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x0, noise, t) -> x_t``: x0 and noise (B, C, H, W), t (B,) floats in [0, 1], one per
    sample; expected (1 - t) x0 + t noise (t = 0 is the data, t = 1 pure noise)."""
    gen = generator(seed)
    for trial in range(trials):
        x0, noise = _pair(gen)
        t = torch.rand(len(x0), generator=gen)
        if trial == 0:
            t[0], t[1] = 0.0, 1.0  # both ends, where the wrong end is plain to see
        got = call(fn, x0.clone(), noise.clone(), t.clone(), what="flow_interpolate")
        x0, noise, tt = x0.double(), noise.double(), _per_sample(t)
        mistakes = {
            "t = 0 is at the wrong end: in diffusers' convention x_0 (data) is at t = 0 and noise at t = 1, "
            "so x_t = (1 - t) x0 + t noise.": tt * x0 + (1 - tt) * noise,
            "these are DDPM's coefficients (square roots): the straight path weighs x0 and noise by "
            "1 - t and t themselves.": (1 - tt).sqrt() * x0 + tt.sqrt() * noise,
            "the data's weight is 1 - t, not 1: x_t = (1 - t) x0 + t noise stays between the two.":
                x0 + tt * noise,
        }
        compare("x_t", got, (1 - tt) * x0 + tt * noise, mistakes=mistakes, context=f"t={t.tolist()}")
    passed("flow_interpolate", trials)


@exercise("velocity_target")
def check_velocity_target(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x0, noise) -> v``: the velocity d x_t / dt of the straight path, noise - x0."""
    gen = generator(seed)
    for _ in range(trials):
        x0, noise = _pair(gen)
        got = call(fn, x0.clone(), noise.clone(), what="velocity_target")
        x0, noise = x0.double(), noise.double()
        mistakes = {
            "wrong sign: x_t moves from x0 (t = 0) towards the noise (t = 1), so dx_t/dt = noise - x0.":
                x0 - noise,
            "returned the noise: that is DDPM's target; flow matching learns the velocity noise - x0.": noise,
            "returned x0: the target is the velocity noise - x0, not the clean digit.": x0,
        }
        compare("v", got, noise - x0, mistakes=mistakes)
    passed("velocity_target", trials)


@exercise("flow_euler_step")
def check_flow_euler_step(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(velocity, t, t_next, x) -> x_next``: one Euler step of dx/dt = v from t to t_next
    (Python floats, 1 >= t > t_next >= 0); expected x + (t_next - t) v."""
    gen = generator(seed)
    for trial in range(trials):
        t = 1.0 if trial == 0 else float(torch.rand((), generator=gen)) * 0.9 + 0.1
        t_next = 0.0 if trial == 1 else t * float(torch.rand((), generator=gen))
        x, v = _pair(gen)
        got = call(fn, v.clone(), t, t_next, x.clone(), what="flow_euler_step")
        x, v = x.double(), v.double()
        mistakes = {
            "the step goes the wrong way: t falls, so x moves by (t_next - t) v, a step against v.":
                x + (t - t_next) * v,
            "returned the predicted x0 (x - t v) instead of stepping to t_next.": x - t * v,
            "stepped by t_next alone; the step is (t_next - t) v.": x + t_next * v,
        }
        compare("x_next", got, x + (t_next - t) * v, mistakes=mistakes, context=f"t={t:.4g} -> {t_next:.4g}")
    passed("flow_euler_step", trials)
