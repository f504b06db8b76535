"""Lesson 11's sweep: rows carry NFE and mean +/- sd over seeds; the 95 % rule reads them right."""

from __future__ import annotations

import pytest
import torch

from sdcourse.experiments.faster_sampling import SAMPLERS, SweepRow, mean_sd, smallest_nfe, sweep
from sdcourse.schedules import NoiseSchedule
from sdcourse.unet import UNet, UNetConfig


def row(name, nfe, accuracy):
    return SweepRow(name, nfe, nfe, accuracy, 0.0, 100.0, 1.0, 1.0)


def test_smallest_nfe_reaching_95_percent_of_ddpm():
    rows = [row("ddpm", 1000, 0.90), row("euler", 4, 0.80), row("euler", 10, 0.86), row("euler", 20, 0.95),
            row("heun", 3, 0.10), row("heun", 9, 0.50)]
    assert smallest_nfe(rows) == {"euler": 10, "heun": None}  # 0.95 * 0.90 = 0.855


def test_mean_sd():
    assert mean_sd([1.0, 3.0]) == pytest.approx((2.0, 2**0.5))
    assert mean_sd([5.0]) == (5.0, 0.0)


def test_sweep_measures_every_sampler_at_its_nfe():
    torch.manual_seed(0)
    model = UNet(UNetConfig.tiny()).eval()
    schedule = NoiseSchedule.linear(1000)
    rows = sweep(model, schedule, [3], names=("ddim", "heun", "dpmsolver-karras"), num_samples=10, seeds=(0, 1),
                 ddpm_reference=False, report=lambda line: None)
    assert [(r.sampler, r.nfe, r.steps) for r in rows] == [("ddim", 3, 3), ("heun", 3, 2), ("dpmsolver-karras", 3, 3)]
    for r in rows:
        assert 0.0 <= r.accuracy <= 1.0 and r.accuracy_sd >= 0.0 and r.fid > 0.0 and r.ms_per_image > 0.0


def test_sweep_rejects_an_unknown_sampler():
    with pytest.raises(ValueError, match="sampler must be one of"):
        sweep(None, NoiseSchedule.linear(10), [2], names=("rk4",), num_samples=10)
    assert set(SAMPLERS) >= {"ddim", "euler", "heun", "dpmsolver"}
