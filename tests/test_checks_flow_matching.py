"""The lesson 12 checks pass correct answers (the library's and a second way of writing each),
reject typical mistakes naming their cause, and their references are ``sdcourse.flow``."""

from __future__ import annotations

import re

import pytest
import torch

from sdcourse import flow
from sdcourse.checks import CheckFailed, check_flow_euler_step, check_flow_interpolate, check_velocity_target


def interpolate_by_lerp(x0, noise, t):  # also right: torch.lerp walks from x0 to noise by t
    return torch.lerp(x0, noise, t.view(-1, 1, 1, 1))


def euler_via_x0(v, t, t_next, x):  # also right: predicted x0 = x - t v, then back up the line to t_next
    x0 = x - t * v
    return flow.interpolate(x0, x0 + v, torch.full((len(x),), t_next))


def _t(t):
    return t.view(-1, 1, 1, 1)


CASES = {
    "interpolate": (check_flow_interpolate, [flow.interpolate, interpolate_by_lerp], {
        "wrong end": (lambda x0, n, t: _t(t) * x0 + (1 - _t(t)) * n, "t = 0 is at the wrong end"),
        "sqrt": (lambda x0, n, t: (1 - _t(t)).sqrt() * x0 + _t(t).sqrt() * n, "DDPM's coefficients"),
        "x0 not weighted": (lambda x0, n, t: x0 + _t(t) * n, "the data's weight is 1 - t"),
    }),
    "velocity": (check_velocity_target, [flow.velocity_target, lambda x0, n: -(x0 - n)], {
        "sign": (lambda x0, n: x0 - n, "wrong sign"),
        "noise": (lambda x0, n: n, "DDPM's target"),
        "x0": (lambda x0, n: x0, "not the clean digit"),
    }),
    "euler": (check_flow_euler_step, [lambda v, t, tn, x: x + (tn - t) * v, euler_via_x0], {
        "wrong way": (lambda v, t, tn, x: x + (t - tn) * v, "the step goes the wrong way"),
        "x0": (lambda v, t, tn, x: x - t * v, "returned the predicted x0"),
        "t_next alone": (lambda v, t, tn, x: x + tn * v, "stepped by t_next alone"),
    }),
}


@pytest.mark.parametrize("case", list(CASES))
def test_checks_pass_correct_answers(case, capsys):
    check, answers, _ = CASES[case]
    for answer in answers:
        check(answer, seed=0)
    assert capsys.readouterr().out.count("✓") == len(answers)


@pytest.mark.parametrize("case, mistake", [(c, m) for c in CASES for m in CASES[c][2]])
@pytest.mark.parametrize("seed", range(3))
def test_checks_name_the_mistake(case, mistake, seed):
    check, _, mistakes = CASES[case]
    fn, cause = mistakes[mistake]
    with pytest.raises(CheckFailed, match="Likely cause: .*" + re.escape(cause)):
        check(fn, seed=seed)


def test_interpolate_check_tests_both_ends_and_needs_one_t_per_sample():
    def scalar_t(x0, noise, t):  # t used as if it were one number: broadcasts along the image's last axis
        return (1 - t) * x0 + t * noise

    with pytest.raises(CheckFailed, match="flow_interpolate raised RuntimeError"):
        check_flow_interpolate(scalar_t, seed=0)


def test_the_euler_reference_is_the_sampler():
    sampler = flow.FlowMatchEulerSampler(4, shift=3.0)
    gen = torch.Generator().manual_seed(0)
    x, v = torch.randn(2, 1, 4, 4, generator=gen), torch.randn(2, 1, 4, 4, generator=gen)
    out = sampler.step(v, sampler.timesteps[0], x).prev_sample
    torch.testing.assert_close(out, x + (float(sampler.sigmas[1]) - float(sampler.sigmas[0])) * v)
