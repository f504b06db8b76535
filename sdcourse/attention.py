"""Scaled dot-product attention, written out beside the fused kernel, and the multi-head self- and
cross-attention layers of Stable Diffusion's UNet (lesson 06; the toy UNet uses ``SelfAttention``).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V     (Eq. 1 of Vaswani et al. 2017,
    head_i = Attention(x W_i^Q, c W_i^K, c W_i^V)            arXiv:1706.03762;
    MultiHead(x, c) = Concat(head_1, ..., head_h) W^O         multi-head: their Sec. 3.2.2)

Self-attention takes the context c to be x itself; cross-attention takes c from elsewhere (in SD,
the text encoder's token embeddings), which is how the words of a prompt reach the pixels
(Rombach et al. 2022, arXiv:2112.10752, Eq. 3).

``attention`` is the formula line by line; ``attention_fused`` hands the same computation to
``torch.nn.functional.scaled_dot_product_attention`` (one kernel that never stores the L_q x L_k
probabilities on GPUs). The two agree to float32 rounding (tests/test_attention.py).

``SelfAttention`` and ``CrossAttention`` have the parameter layout of ``diffusers``' ``Attention``
(``to_q``, ``to_k``, ``to_v`` without bias, ``to_out.0`` with bias), so the ``state_dict()`` of a
``diffusers`` block (``attn1`` is self-, ``attn2`` cross-attention) loads into ours unchanged and
gives the same output.

Shapes: B batch, h heads, d = dim_head, L_q query positions, L_k key positions (= L_ctx).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import validate

Tensor = torch.Tensor


# ---- the formula ----------------------------------------------------------------------------


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.ndim < 2:
            raise ValueError(
                f"{name} must have shape (..., L, d) with at least 2 dims, got {tuple(t.shape)}"
            )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension d_k, got q {tuple(q.shape)} and "
            f"k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same length L_k, got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"the leading (batch, head) dims of q, k and v must broadcast, got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        ) from None


def _check_mask(mask: Tensor, scores_shape: tuple[int, ...]) -> None:
    if not (mask.dtype == torch.bool or mask.is_floating_point()):
        raise ValueError(
            f"mask must be boolean (True = may attend) or floating (added to the scores), "
            f"got dtype {mask.dtype}"
        )
    try:
        shape = torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        shape = None
    if shape != tuple(scores_shape):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
            f"(..., L_q, L_k) = {tuple(scores_shape)}"
        )


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
              return_probs: bool = False, fused: bool = False):
    """softmax(q k^T / sqrt(d_k) + mask) v, written out.

    q: (..., L_q, d_k), k: (..., L_k, d_k), v: (..., L_k, d_v); leading dims broadcast.
    mask (optional) broadcasts to (..., L_q, L_k): boolean (True = may attend, False = may not) or
    a float added to the scores (0 to keep, -inf to block), as in
    ``torch.nn.functional.scaled_dot_product_attention``. A query that may attend to no key at
    all gets zero weights and a zero output (the fused kernel's convention), not NaN.

    Returns (..., L_q, d_v); with ``return_probs`` also the probabilities (..., L_q, L_k), each
    query's row non-negative and summing to 1 over the keys. ``fused=True`` runs
    ``attention_fused`` instead (it cannot return probabilities).
    """
    if fused:
        if return_probs:
            raise ValueError("return_probs=True needs the written-out path (fused=False): "
                             "the fused kernel never forms the probabilities")
        return attention_fused(q, k, v, mask)
    _check_qkv(q, k, v)
    # Eq. 1: (..., L_q, d) @ (..., d, L_k) -> (..., L_q, L_k), scaled by 1 / sqrt(d_k)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        _check_mask(mask, scores.shape)
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(scores.dtype)
    probs = scores.softmax(dim=-1)  # over the keys: each query's weights sum to 1
    if mask is not None:  # a query with every key blocked: softmax gives 0/0 = NaN; use 0 instead
        probs = probs.masked_fill(torch.isneginf(scores).all(dim=-1, keepdim=True), 0.0)
    out = probs @ v  # (..., L_q, L_k) @ (..., L_k, d_v) -> (..., L_q, d_v)
    return (out, probs) if return_probs else out


def attention_fused(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """The same as ``attention(q, k, v, mask)`` through PyTorch's fused
    ``scaled_dot_product_attention`` (flash / memory-efficient kernels where available)."""
    _check_qkv(q, k, v)
    if mask is not None:
        lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
        _check_mask(mask, (*lead, q.shape[-2], k.shape[-2]))
        if mask.dtype != torch.bool:
            mask = mask.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


# ---- heads ----------------------------------------------------------------------------------


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, L, h*d) -> (B, h, L, d): the width is cut into ``heads`` slices of d = width / heads."""
    if x.ndim != 3:
        raise ValueError(f"x must have shape (B, L, heads*dim_head), got {tuple(x.shape)}")
    if heads < 1 or x.shape[-1] % heads:
        raise ValueError(
            f"heads={heads} must be >= 1 and divide the width {x.shape[-1]} of x {tuple(x.shape)}"
        )
    b, length, width = x.shape
    return x.view(b, length, heads, width // heads).transpose(1, 2)  # (B, L, h, d) -> (B, h, L, d)


def merge_heads(x: Tensor) -> Tensor:
    """(B, h, L, d) -> (B, L, h*d): the heads' outputs side by side, head 0 first (undoes split)."""
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, heads, L, dim_head), got {tuple(x.shape)}")
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)  # (B, h, L, d) -> (B, L, h*d)


# ---- layers ---------------------------------------------------------------------------------


class CrossAttention(nn.Module):
    """Multi-head attention from x (B, L, query_dim) to a context (B, L_ctx, context_dim).

    query_dim: width of x (the image features); context_dim: width of the context (the text
    embeddings; None: the same as query_dim, for self-attention); heads: number of heads h;
    dim_head: width d of each head (None: query_dim // heads, which heads must divide);
    bias: biases on to_q/to_k/to_v (diffusers' ``bias``, False in SD); fused: compute with
    ``scaled_dot_product_attention`` when the probabilities are not asked for.
    """

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8,
                 dim_head: int | None = 64, bias: bool = False, fused: bool = False):
        super().__init__()
        query_dim = validate.integer("query_dim", query_dim, low=1)
        context_dim = query_dim if context_dim is None else validate.integer("context_dim", context_dim, low=1)
        heads = validate.integer("heads", heads, low=1)
        if dim_head is None:
            if query_dim % heads:
                raise ValueError(
                    f"heads={heads} must divide query_dim={query_dim} when dim_head is None "
                    f"(dim_head = query_dim / heads)"
                )
            dim_head = query_dim // heads
        dim_head = validate.integer("dim_head", dim_head, low=1)
        inner = heads * dim_head
        self.query_dim, self.context_dim = query_dim, context_dim
        self.heads, self.dim_head, self.fused = heads, dim_head, fused
        self.to_q = nn.Linear(query_dim, inner, bias=bias)  # W^Q: image features -> queries
        self.to_k = nn.Linear(context_dim, inner, bias=bias)  # W^K: context -> keys
        self.to_v = nn.Linear(context_dim, inner, bias=bias)  # W^V: context -> values
        # W^O, then a no-op dropout: the same module list (to_out.0, to_out.1) as diffusers
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])

    @classmethod
    def from_diffusers(cls, attn: nn.Module, **kwargs) -> CrossAttention:
        """Our layer with the sizes and weights of a ``diffusers`` ``Attention`` (``attn2``)."""
        layer = cls(attn.query_dim, attn.cross_attention_dim, heads=attn.heads,
                    dim_head=attn.inner_dim // attn.heads, bias=attn.to_q.bias is not None,
                    **kwargs)
        layer.load_state_dict(attn.state_dict())
        return layer.to(attn.to_q.weight.device, attn.to_q.weight.dtype)

    def split_heads(self, x: Tensor) -> Tensor:
        return split_heads(x, self.heads)  # (B, L, h*d) -> (B, h, L, d)

    @staticmethod
    def merge_heads(x: Tensor) -> Tensor:
        return merge_heads(x)  # (B, h, L, d) -> (B, L, h*d)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                return_probs: bool = False):
        """x: (B, L, query_dim); context: (B, L_ctx, context_dim), None for x itself.

        mask (optional) broadcasts to (B, L, L_ctx), e.g. (B, 1, L_ctx) to hide padding tokens;
        boolean (True = may attend) or additive float, the same for every head.
        Returns (B, L, query_dim), and with ``return_probs`` the probabilities (B, h, L, L_ctx).
        """
        if x.ndim != 3 or x.shape[-1] != self.query_dim:
            raise ValueError(
                f"x must have shape (B, L, query_dim={self.query_dim}), got {tuple(x.shape)}"
            )
        if context is None:
            if self.context_dim != self.query_dim:
                raise ValueError(
                    f"context is None (attend to x itself) but context_dim={self.context_dim} != "
                    f"query_dim={self.query_dim}; pass a context of width {self.context_dim}"
                )
            context = x
        ctx_shape = tuple(context.shape)
        if len(ctx_shape) != 3 or ctx_shape[0] != x.shape[0] or ctx_shape[-1] != self.context_dim:
            raise ValueError(
                f"context must have shape (B={x.shape[0]}, L_ctx, context_dim={self.context_dim}), "
                f"got {tuple(context.shape)}"
            )
        if mask is not None:
            _check_mask(mask, (x.shape[0], x.shape[1], context.shape[1]))
            mask = mask.unsqueeze(-3)  # (B, L, L_ctx) -> (B, 1, L, L_ctx): the same for every head
        q = self.split_heads(self.to_q(x))  # (B, L, h*d) -> (B, h, L, d)
        k = self.split_heads(self.to_k(context))  # (B, L_ctx, h*d) -> (B, h, L_ctx, d)
        v = self.split_heads(self.to_v(context))  # (B, L_ctx, h*d) -> (B, h, L_ctx, d)
        if return_probs or not self.fused:
            # (B, h, L, d) and the probabilities (B, h, L, L_ctx)
            out, probs = attention(q, k, v, mask=mask, return_probs=True)
        else:
            out, probs = attention_fused(q, k, v, mask=mask), None
        out = self.merge_heads(out)  # (B, h, L, d) -> (B, L, h*d): Concat(head_1, ..., head_h)
        out = self.to_out[1](self.to_out[0](out))  # W^O: (B, L, h*d) -> (B, L, query_dim)
        return (out, probs) if return_probs else out


class SelfAttention(CrossAttention):
    """Multi-head self-attention over x (B, L, dim): queries, keys and values all come from x."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int | None = 64, bias: bool = False,
                 fused: bool = False):
        super().__init__(dim, None, heads, dim_head, bias, fused)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                return_probs: bool = False):
        """x: (B, L, dim) -> (B, L, dim); mask broadcasts to (B, L, L). See ``CrossAttention``."""
        if context is not None:
            raise ValueError(
                "SelfAttention takes no context (got one); use CrossAttention to attend to one"
            )
        return super().forward(x, None, mask=mask, return_probs=return_probs)

    @classmethod
    def from_diffusers(cls, attn: nn.Module, **kwargs) -> SelfAttention:
        """Our layer with the sizes and weights of a ``diffusers`` self-attention (``attn1``)."""
        if attn.cross_attention_dim != attn.query_dim:
            raise ValueError(
                f"attn attends to a context of width {attn.cross_attention_dim} != query_dim="
                f"{attn.query_dim}; load it into CrossAttention instead"
            )
        layer = cls(attn.query_dim, heads=attn.heads, dim_head=attn.inner_dim // attn.heads,
                    bias=attn.to_q.bias is not None, **kwargs)
        layer.load_state_dict(attn.state_dict())
        return layer.to(attn.to_q.weight.device, attn.to_q.weight.dtype)
