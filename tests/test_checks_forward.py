"""Lesson 01's checks pass the reference answers and reject typical mistakes, naming the cause."""

from __future__ import annotations

import pytest
import torch

from sdcourse import checks
from sdcourse.checks import CheckFailed


def alpha_bar_reference(num_steps, beta_start, beta_end):
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def add_noise_reference(x0, noise, t, schedule):
    ab = schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def snr_reference(alpha_bar):
    return alpha_bar / (1 - alpha_bar)


def test_references_pass(capsys):
    checks.check_linear_alpha_bar(alpha_bar_reference, seed=0)
    checks.check_add_noise(add_noise_reference, seed=0)
    checks.check_snr(snr_reference, seed=0)
    assert capsys.readouterr().out.count("✓") == 3


def test_float32_answer_passes():
    checks.check_linear_alpha_bar(lambda *a: alpha_bar_reference(*a).float(), seed=1)


@pytest.mark.parametrize(("wrong", "cause"), [
    (lambda T, b0, b1: 1 - torch.linspace(b0, b1, T, dtype=torch.float64), "returned alpha_t"),
    (lambda T, b0, b1: torch.cumprod(torch.linspace(b0, b1, T, dtype=torch.float64), 0), "product of beta_t"),
    (lambda T, b0, b1: torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar_reference(T, b0, b1)[:-1]]),
     "shifted by one step"),
])
def test_alpha_bar_mistakes_are_named(wrong, cause):
    with pytest.raises(CheckFailed, match=cause):
        checks.check_linear_alpha_bar(wrong, seed=0)


def test_alpha_bar_wrong_shape_is_reported():
    with pytest.raises(CheckFailed, match="expected shape"):
        checks.check_linear_alpha_bar(lambda T, b0, b1: alpha_bar_reference(T, b0, b1)[:-1], seed=0)


@pytest.mark.parametrize(("wrong", "cause"), [
    (lambda x0, n, t, s: s.alphas[t].float().view(-1, 1, 1, 1).sqrt() * x0
     + (1 - s.alphas[t].float().view(-1, 1, 1, 1)).sqrt() * n, "used alpha_t"),
    (lambda x0, n, t, s: s.alphas_cumprod[t].float().view(-1, 1, 1, 1) * x0
     + (1 - s.alphas_cumprod[t].float().view(-1, 1, 1, 1)) * n, "square roots"),
    (lambda x0, n, t, s: add_noise_reference(n, x0, t, s), "swapped"),
    (lambda x0, n, t, s: add_noise_reference(x0, n, t[:1].expand_as(t), s), "same t for every image"),
])
def test_add_noise_mistakes_are_named(wrong, cause):
    with pytest.raises(CheckFailed, match=cause):
        checks.check_add_noise(wrong, seed=0)


def test_add_noise_that_crashes_is_reported_not_raised_raw():
    def crashes(x0, noise, t, schedule):
        return schedule.alphas_cumprod[t].sqrt() * x0  # (B,) does not broadcast with (B, 1, 28, 28)

    with pytest.raises(CheckFailed, match="add_noise raised RuntimeError"):
        checks.check_add_noise(crashes, seed=0)


@pytest.mark.parametrize(("wrong", "cause"), [
    (lambda ab: (1 - ab) / ab, "inverted"),
    (lambda ab: ab.sqrt() / (1 - ab).sqrt(), "square roots"),
    (lambda ab: 10 * torch.log10(ab / (1 - ab)), "decibels"),
])
def test_snr_mistakes_are_named(wrong, cause):
    with pytest.raises(CheckFailed, match=cause):
        checks.check_snr(wrong, seed=0)


def test_unfinished_exercise_raises_not_implemented():
    def unfinished(alpha_bar):
        raise NotImplementedError("Write your answer here.")

    with pytest.raises(NotImplementedError):
        checks.check_snr(unfinished)


def test_failure_message_names_element_expected_and_got():
    with pytest.raises(CheckFailed) as err:
        checks.check_snr(lambda ab: ab / (1 - ab) + 1, seed=0)
    assert "element [" in str(err.value) and "should be" in str(err.value) and "but is" in str(err.value)
