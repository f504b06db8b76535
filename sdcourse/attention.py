"""Scaled dot-product attention, written out, and the self/cross attention layers of SD's UNet
(lesson 06; the toy UNet of lesson 02 uses ``SelfAttention``).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V          (Vaswani et al. 2017, arXiv:1706.03762, Eq. 1)

``SelfAttention`` and ``CrossAttention`` have the parameter layout of ``diffusers``' ``Attention``
(``to_q``, ``to_k``, ``to_v`` without bias, ``to_out.0`` with bias), so a ``diffusers`` block's
``state_dict()`` loads into ours unchanged and gives the same output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

Tensor = torch.Tensor


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
              return_probs: bool = False):
    """softmax(q k^T / sqrt(d_k) + mask) v, on (..., L_q, d_k), (..., L_k, d_k), (..., L_k, d_v).

    ``mask`` broadcasts to (..., L_q, L_k): boolean (True = may attend) or additive float, as in
    ``torch.nn.functional.scaled_dot_product_attention``. Returns (..., L_q, d_v), and the
    probabilities (..., L_q, L_k) too when ``return_probs``.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same last dimension d_k, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length L_k, got {k.shape[-2]} and {v.shape[-2]}")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., L_q, L_k)
    if mask is not None:
        try:
            torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                f"(..., L_q, L_k) = {tuple(scores.shape)}"
            ) from None
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    probs = scores.softmax(dim=-1)  # each query's weights over the keys sum to 1
    out = probs @ v  # (..., L_q, d_v)
    return (out, probs) if return_probs else out


class CrossAttention(nn.Module):
    """Multi-head attention from x (B, L, query_dim) to a context (B, L_ctx, context_dim).

    With ``context=None`` it attends to x itself (then ``context_dim`` must equal ``query_dim``).
    """

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8,
                 dim_head: int = 64, bias: bool = False):
        super().__init__()
        for name, value in (("query_dim", query_dim), ("heads", heads), ("dim_head", dim_head)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        context_dim = query_dim if context_dim is None else context_dim
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.query_dim, self.context_dim = query_dim, context_dim
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])

    def split_heads(self, x: Tensor) -> Tensor:
        b, length, _ = x.shape
        return x.view(b, length, self.heads, self.dim_head).transpose(1, 2)  # (B, L, h*d) -> (B, h, L, d)

    @staticmethod
    def merge_heads(x: Tensor) -> Tensor:
        b, h, length, d = x.shape
        return x.transpose(1, 2).reshape(b, length, h * d)  # (B, h, L, d) -> (B, L, h*d)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                return_probs: bool = False):
        if x.ndim != 3 or x.shape[-1] != self.query_dim:
            raise ValueError(f"x must have shape (B, L, query_dim={self.query_dim}), got {tuple(x.shape)}")
        context = x if context is None else context
        if context.ndim != 3 or context.shape[-1] != self.context_dim or context.shape[0] != x.shape[0]:
            raise ValueError(
                f"context must have shape (B={x.shape[0]}, L_ctx, context_dim={self.context_dim}), "
                f"got {tuple(context.shape)}"
            )
        q = self.split_heads(self.to_q(x))  # (B, h, L, d)
        k = self.split_heads(self.to_k(context))  # (B, h, L_ctx, d)
        v = self.split_heads(self.to_v(context))
        out, probs = attention(q, k, v, mask=mask, return_probs=True)
        out = self.to_out[1](self.to_out[0](self.merge_heads(out)))  # (B, L, query_dim)
        return (out, probs) if return_probs else out


class SelfAttention(CrossAttention):
    """Multi-head self-attention over (B, L, dim): queries, keys and values all come from x."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, bias: bool = False):
        super().__init__(dim, None, heads, dim_head, bias)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                return_probs: bool = False):
        if context is not None:
            raise ValueError("SelfAttention takes no context; use CrossAttention to attend to one")
        return super().forward(x, None, mask=mask, return_probs=return_probs)
