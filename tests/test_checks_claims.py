"""The lesson 10 check passes right answers (the library's and another way of writing it), rejects
typical mistakes naming their cause, and its reference is ``sdcourse.experiments.claims``."""

from __future__ import annotations

import pytest
import torch

from sdcourse.checks import CheckFailed, check_naive_reverse_step
from sdcourse.experiments import claims


def by_rescaling_first(x_t, eps, beta_t):  # also right: divide both terms, then subtract
    return x_t / (1 - beta_t) ** 0.5 - eps * (beta_t / (1 - beta_t)) ** 0.5


@pytest.mark.parametrize("fn", [claims.naive_reverse_step, by_rescaling_first])
def test_right_answers_pass(fn):
    check_naive_reverse_step(fn, seed=0)


@pytest.mark.parametrize("fn, cause", [
    (lambda x, e, b: x - b ** 0.5 * e, "forgot to divide by sqrt"),
    (lambda x, e, b: (x - b * e) / (1 - b) ** 0.5, "subtracted beta_t"),
    (lambda x, e, b: (x - b ** 0.5 * e) * (1 - b) ** 0.5, "multiplied by sqrt"),
    (lambda x, e, b: (x + b ** 0.5 * e) / (1 - b) ** 0.5, "added the noise"),
])
def test_mistakes_are_named(fn, cause):
    with pytest.raises(CheckFailed, match=cause):
        check_naive_reverse_step(fn, seed=0)


def test_unknown_mistake_still_fails_and_points_to_the_hint():
    with pytest.raises(CheckFailed, match="checks.hint"):
        check_naive_reverse_step(lambda x, e, b: torch.zeros_like(x), seed=0)
