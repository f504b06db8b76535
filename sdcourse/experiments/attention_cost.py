"""Lesson 06's measurement: what attention costs in time and memory as the sequence grows.

Attention (Vaswani et al. 2017, arXiv:1706.03762, Eq. 1; ``sdcourse.attention``) compares every
query with every key, so the written-out path builds (B, h, L_q, L_k) scores and probabilities:
time and memory grow as L^2 for self-attention. PyTorch's fused kernel
(``attention_fused``, ``torch.nn.functional.scaled_dot_product_attention``) computes the same in
blocks and never holds the whole matrix (Dao et al. 2022, FlashAttention, arXiv:2205.14135).

``measure`` times one case (median after a warm-up, ``measure.median_time``) and takes the extra
memory at the peak of one call (``measure.peak_memory``: CUDA's allocator, or on Linux the growth of
the process's peak resident set); ``self_attention_costs`` runs it over sequence lengths for the
lesson's figure. ``bench/attention.py`` runs it on the toy UNet's and Stable Diffusion's shapes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from .. import validate
from ..attention import attention, attention_fused
from ..measure import median_time, peak_memory

MB = 2 ** 20


@dataclass(frozen=True)
class AttentionCost:
    """Written-out against fused attention on q (B, h, L_q, d) and k, v (B, h, L_k, d)."""

    case: str  # a name for the table
    batch: int  # B
    heads: int  # h
    L_q: int  # query positions
    L_k: int  # key positions (= L_q for self-attention, 77 tokens for SD's cross-attention)
    dim_head: int  # d
    written_s: float  # median seconds of ``attention`` (softmax(Q K^T / sqrt(d)) V, step by step)
    fused_s: float  # median seconds of ``attention_fused``
    written_peak_bytes: int | None  # extra memory at the peak of one call; None where it cannot be measured
    fused_peak_bytes: int | None
    max_abs_diff: float  # between the two outputs: they compute the same thing

    @property
    def scores_bytes(self) -> int:
        """One float32 (B, h, L_q, L_k) score matrix: the written-out path holds about two at its peak."""
        return self.batch * self.heads * self.L_q * self.L_k * 4

    @property
    def time_ratio(self) -> float:
        return self.written_s / self.fused_s

    @property
    def memory_ratio(self) -> float | None:
        if not self.written_peak_bytes or not self.fused_peak_bytes:
            return None
        return self.written_peak_bytes / self.fused_peak_bytes

    @property
    def written_mb(self) -> float:
        return math.nan if self.written_peak_bytes is None else self.written_peak_bytes / MB

    @property
    def fused_mb(self) -> float:
        return math.nan if self.fused_peak_bytes is None else self.fused_peak_bytes / MB

    @property
    def scores_mb(self) -> float:
        return self.scores_bytes / MB

    def as_dict(self) -> dict:
        return {**asdict(self), "scores_bytes": self.scores_bytes, "time_ratio": self.time_ratio,
                "memory_ratio": self.memory_ratio}


def measure(case: str, L_q: int, L_k: int, heads: int, dim_head: int, batch: int = 1,  # noqa: N803
            device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, budget_s: float = 1.0,
            max_repeats: int = 50, seed: int = 0) -> AttentionCost:
    """Time and peak memory of both paths on random q, k, v of one shape (after one warm-up call each)."""
    sizes = {name: validate.integer(name, value, low=1) for name, value in
             (("L_q", L_q), ("L_k", L_k), ("heads", heads), ("dim_head", dim_head), ("batch", batch))}
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, length, dim_head, generator=gen, device=device, dtype=dtype)
               for length in (L_q, L_k, L_k))  # (B, h, L, d)
    with torch.inference_mode():
        written, fused = attention(q, k, v), attention_fused(q, k, v)  # warm-up, and agreement
        max_abs_diff = (written.float() - fused.float()).abs().max().item()
        del written, fused
        cost = {}
        for label, fn in (("written", lambda: attention(q, k, v)), ("fused", lambda: attention_fused(q, k, v))):
            cost[f"{label}_peak_bytes"] = peak_memory(fn, device)
            cost[f"{label}_s"] = median_time(fn, device, budget_s, max_repeats=max_repeats)
    return AttentionCost(case=case, **sizes, **cost, max_abs_diff=max_abs_diff)


def self_attention_costs(lengths, heads: int = 8, dim_head: int = 40, budget_s: float = 1.0,
                         threads: int | None = 1, progress: bool = True) -> list[AttentionCost]:
    """``measure`` of self-attention (L_q = L_k = L) at each of ``lengths``, batch 1, on the CPU.

    ``threads`` torch CPU threads while measuring (1: steadier timings on a busy machine; None:
    unchanged); the previous number is restored afterwards.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(validate.integer("threads", threads, low=1))
    try:
        return [measure(f"self L={length}", length, length, heads, dim_head, budget_s=budget_s)
                for length in tqdm(lengths, desc="sequence lengths", disable=not progress)]
    finally:
        torch.set_num_threads(before)
