"""Lesson 06 (attention): checks for scaled dot-product attention (Vaswani et al. 2017, Eq. 1),
splitting and merging heads, and cross-attention, against ``sdcourse.attention``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..attention import CrossAttention, attention, merge_heads, split_heads
from .core import call, compare, exercise, generator, passed

__all__ = ["check_attention", "check_cross_attention", "check_merge_heads", "check_split_heads"]


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=gen))


@exercise("attention")
def check_attention(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(q, k, v) -> out``, softmax(q k^T / sqrt(d_k)) v on (B, h, L, d) tensors."""
    gen = generator(seed)
    for _ in range(trials):
        b, h = _randint(gen, 1, 3), _randint(gen, 1, 4)
        lq, lk = _randint(gen, 2, 9), _randint(gen, 2, 9)
        dk = _randint(gen, 4, 32)
        dv = dk + _randint(gen, 1, 8)  # d_v != d_k, so sqrt(d_v) is told apart from sqrt(d_k)
        q = torch.randn(b, h, lq, dk, generator=gen)
        k = torch.randn(b, h, lk, dk, generator=gen)
        v = torch.randn(b, h, lk, dv, generator=gen)
        got = call(fn, q.clone(), k.clone(), v.clone(), what="attention")
        scores = q @ k.transpose(-2, -1)  # (B, h, L_q, L_k), not yet scaled
        compare(
            "attention output",
            got,
            attention(q, k, v),
            mistakes={
                "the scores are not scaled: divide q k^T by sqrt(d_k) before the softmax.":
                    scores.softmax(-1) @ v,
                "divided by d_k; the scale is 1 / sqrt(d_k) (math.sqrt(q.shape[-1])).":
                    (scores / dk).softmax(-1) @ v,
                "scaled by sqrt(d_v) (v's width); the scale uses d_k, the width of q and k.":
                    (scores / dv**0.5).softmax(-1) @ v,
                "softmax over the wrong axis (the queries, dim=-2); each query's weights over "
                "the keys must sum to 1: softmax(dim=-1).": (scores / dk**0.5).softmax(-2) @ v,
                "multiplied by the scale instead of dividing: scores / sqrt(d_k).":
                    (scores * dk**0.5).softmax(-1) @ v,
            },
            context=f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}",
        )
    passed("attention", trials)


@exercise("split_heads")
def check_split_heads(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x, heads)``: (B, L, heads*d) -> (B, heads, L, d); head i holds channels
    i*d .. (i+1)*d - 1."""
    gen = generator(seed)
    for _ in range(trials):
        b, length, h, d = (_randint(gen, lo, hi) for lo, hi in ((1, 3), (2, 7), (2, 4), (2, 6)))
        x = torch.randn(b, length, h * d, generator=gen)
        got = call(fn, x.clone(), h, what="split_heads")
        compare(
            "split_heads(x, heads)",
            got,
            split_heads(x, h),
            mistakes={
                "reshaped straight to (B, heads, L, d): view as (B, L, heads, d) first, then "
                "swap L and heads with transpose(1, 2).": x.reshape(b, h, length, d),
                "heads interleaved: channel c went to head c % heads; head i is the contiguous "
                "block of channels i*d .. (i+1)*d - 1, so view as (B, L, heads, d).":
                    x.view(b, length, d, h).permute(0, 3, 1, 2),
            },
            atol=0, rtol=0,
            context=f"x {tuple(x.shape)}, heads={h}",
        )
    passed("split_heads", trials)


@exercise("merge_heads")
def check_merge_heads(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x)``: (B, heads, L, d) -> (B, L, heads*d), head 0's channels first."""
    gen = generator(seed)
    for _ in range(trials):
        b, length, h, d = (_randint(gen, lo, hi) for lo, hi in ((1, 3), (2, 7), (2, 4), (2, 6)))
        x = torch.randn(b, h, length, d, generator=gen)
        got = call(fn, x.clone(), what="merge_heads")
        compare(
            "merge_heads(x)",
            got,
            merge_heads(x),
            mistakes={
                "heads merged in the wrong order: reshaping (B, heads, L, d) straight to "
                "(B, L, heads*d) mixes positions and heads; transpose(1, 2) to (B, L, heads, d) "
                "first.": x.reshape(b, length, h * d),
                "heads merged in the wrong order: the channels are interleaved (d outer, heads "
                "inner); put the heads side by side, (B, L, heads, d) -> (B, L, heads*d).":
                    x.permute(0, 2, 3, 1).reshape(b, length, d * h),
            },
            atol=0, rtol=0,
            context=f"x {tuple(x.shape)}",
        )
    passed("merge_heads", trials)


def _cross_attention_variant(layer, x: Tensor, kv_from: Tensor, swap_kv: bool = False,
                             heads: int | None = None, project: bool = True) -> Tensor:
    """``layer(x, context)`` written out, with the switches a typical mistake flips."""
    heads = layer.heads if heads is None else heads
    to_k, to_v = (layer.to_v, layer.to_k) if swap_kv else (layer.to_k, layer.to_v)
    q = split_heads(layer.to_q(x), heads)  # (B, h, L, d)
    k, v = split_heads(to_k(kv_from), heads), split_heads(to_v(kv_from), heads)  # (B, h, L_ctx, d)
    merged = merge_heads(attention(q, k, v))  # (B, h, L, d) -> (B, L, h*d)
    return layer.to_out[0](merged) if project else merged


@exercise("cross_attention")
def check_cross_attention(fn: Callable, trials: int = 4, seed: int | None = None) -> None:
    """Check ``fn(x, context, to_q, to_k, to_v, to_out, heads) -> (B, L, query_dim)``.

    x: (B, L, query_dim) image features; context: (B, L_ctx, context_dim) token embeddings; the
    four ``nn.Linear`` layers and the head count are those of a ``CrossAttention``.
    """
    gen = generator(seed)
    for trial in range(trials):
        b, h, d = _randint(gen, 1, 3), _randint(gen, 2, 4), _randint(gen, 2, 8)
        length, l_ctx = _randint(gen, 3, 12), _randint(gen, 2, 6)
        # the first trial is shaped like SD's (heads*dim_head = query_dim) and gives the context
        # the image's width, so a missing to_out or keys taken from x still run and get named
        query_dim = h * d if trial == 0 else _randint(gen, 4, 16)
        context_dim = query_dim if trial == 0 else query_dim + _randint(gen, 1, 8)
        layer = CrossAttention(query_dim, context_dim, heads=h, dim_head=d)
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
        x = torch.randn(b, length, query_dim, generator=gen)
        context = torch.randn(b, l_ctx, context_dim, generator=gen)
        with torch.no_grad():
            mistakes = {
                "to_k and to_v swapped: keys come from to_k(context), values from to_v(context).":
                    _cross_attention_variant(layer, x, context, swap_kv=True),
                "forgot the output projection to_out after merging the heads.":
                    _cross_attention_variant(layer, x, context, project=False),
                "attended with one head of width heads*dim_head; split q, k and v into heads "
                "before attention.": _cross_attention_variant(layer, x, context, heads=1),
            }
            if context_dim == query_dim:
                mistakes["keys and values must come from the context, not from x (that is "
                         "self-attention): k = to_k(context), v = to_v(context)."] = (
                    _cross_attention_variant(layer, x, x))
            expected = layer(x, context)
            got = call(fn, x.clone(), context.clone(), layer.to_q, layer.to_k, layer.to_v,
                       layer.to_out[0], h, what="cross_attention")
        compare(
            "cross-attention output",
            got,
            expected,
            mistakes=mistakes,
            context=f"x {tuple(x.shape)}, context {tuple(context.shape)}, heads={h}",
        )
    passed("cross_attention", trials)
