"""sdcourse.measure sees a known allocation and refuses bad repeat counts (no timing asserted)."""

from __future__ import annotations

import pytest
import torch

from sdcourse.measure import median_time, peak_memory


def test_peak_memory_sees_a_64_mb_tensor_and_not_a_small_one():
    big = peak_memory(lambda: torch.ones(16 * 2**20))  # 16 Mi float32 = 64 MiB, touched by ones
    if big is None:
        pytest.skip("this system cannot reset its peak resident set size (not Linux)")
    assert 60 * 2**20 <= big <= 80 * 2**20
    assert peak_memory(lambda: torch.ones(10)) < 8 * 2**20


def test_median_time_is_a_positive_number_and_checks_its_arguments():
    assert median_time(lambda: None, budget_s=0.0) >= 0.0
    with pytest.raises(ValueError, match="min_repeats=0"):
        median_time(lambda: None, min_repeats=0)
    with pytest.raises(ValueError, match="device must be"):
        peak_memory(lambda: None, "meta")


def test_flops_counts_two_per_multiply_add():
    import torch

    from sdcourse.measure import flops

    linear = torch.nn.Linear(10, 20)
    assert flops(lambda: linear(torch.zeros(3, 10))) == 2 * 3 * 10 * 20
    conv = torch.nn.Conv2d(2, 5, 3, padding=1)
    assert flops(lambda: conv(torch.zeros(1, 2, 8, 8))) == 2 * 8 * 8 * 5 * 2 * 3 * 3
