"""Lesson 06's measurement of attention's cost: one row per length, both paths agree, the derived sizes."""

from __future__ import annotations

import math

import pytest
import torch

from sdcourse.experiments import attention_cost


def test_self_attention_costs_one_row_per_length_and_restores_the_threads():
    threads = torch.get_num_threads()
    rows = attention_cost.self_attention_costs([16, 32], heads=2, dim_head=8, budget_s=0.0, threads=1,
                                               progress=False)
    assert torch.get_num_threads() == threads
    assert [(r.L_q, r.L_k, r.heads, r.dim_head, r.batch) for r in rows] == [(16, 16, 2, 8, 1), (32, 32, 2, 8, 1)]
    for r in rows:
        assert r.written_s > 0 and r.fused_s > 0 and r.max_abs_diff < 1e-5
        assert r.scores_bytes == 2 * r.L_q * r.L_k * 4 and r.scores_mb == r.scores_bytes / 2**20
        assert r.time_ratio == r.written_s / r.fused_s
        assert math.isnan(r.written_mb) if r.written_peak_bytes is None else r.written_mb >= 0


def test_measure_cross_attention_and_its_json_row():
    row = attention_cost.measure("cross", 8, 77, 2, 4, batch=2, budget_s=0.0, max_repeats=3)
    assert (row.L_q, row.L_k, row.batch) == (8, 77, 2)
    record = row.as_dict()
    assert record["case"] == "cross" and record["scores_bytes"] == 2 * 2 * 8 * 77 * 4
    assert {"written_s", "fused_s", "written_peak_bytes", "fused_peak_bytes", "time_ratio", "memory_ratio",
            "max_abs_diff"} <= set(record)
    with pytest.raises(ValueError, match="L_q must be an integer >= 1, got 0"):
        attention_cost.measure("bad", 0, 4, 1, 4)


def test_memory_ratio_is_none_where_memory_cannot_be_measured():
    row = attention_cost.AttentionCost("x", 1, 1, 4, 4, 8, 2.0, 1.0, None, 100, 0.0)
    assert row.memory_ratio is None and math.isnan(row.written_mb) and row.time_ratio == 2.0
