"""Attention: the written-out formula equals PyTorch's fused kernel and a float64 recomputation,
our layers load a diffusers UNet's attention weights and give the same output, bad input is
refused."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sdcourse.attention import (
    CrossAttention,
    SelfAttention,
    attention,
    attention_fused,
    merge_heads,
    split_heads,
)

ATOL = 1e-5


def _qkv(gen, lead, lq, lk, dk, dv):
    q = torch.randn(*lead, lq, dk, generator=gen)
    k = torch.randn(*lead, lk, dk, generator=gen)
    v = torch.randn(*lead, lk, dv, generator=gen)
    return q, k, v


def _bool_mask(gen, shape):
    mask = torch.rand(shape, generator=gen) > 0.4
    mask[..., 0] = True  # every query may attend to at least one key
    return mask


def _reference64(q, k, v, mask=None):
    """Eq. 1 of Vaswani et al. in float64 with an explicit exp / sum (an independent check)."""
    q, k, v = q.double(), k.double(), v.double()
    scores = torch.einsum("...id,...jd->...ij", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = (
            scores.masked_fill(~mask, -math.inf)
            if mask.dtype == torch.bool
            else scores + mask.double()
        )
    weights = torch.exp(scores - scores.amax(-1, keepdim=True))
    probs = weights / weights.sum(-1, keepdim=True)
    return torch.einsum("...ij,...jd->...id", probs, v), probs


# ---- the formula against the fused kernel and float64 -------------------------------------------


@pytest.mark.parametrize(
    "lead,lq,lk,dk,dv",
    [
        ((), 1, 1, 1, 1),
        ((3,), 5, 7, 4, 6),
        ((2, 4), 16, 9, 8, 8),
        ((1, 8), 64, 77, 40, 40),
    ],
)
@pytest.mark.parametrize("mask_kind", [None, "bool", "additive"])
def test_attention_equals_sdpa_and_float64(lead, lq, lk, dk, dv, mask_kind):
    gen = torch.Generator().manual_seed(lq * 1000 + lk)
    q, k, v = _qkv(gen, lead, lq, lk, dk, dv)
    mask = None
    if mask_kind == "bool":
        mask = _bool_mask(gen, (*lead, lq, lk))
    elif mask_kind == "additive":
        mask = torch.randn(*lead, lq, lk, generator=gen)
    ours, probs = attention(q, k, v, mask, return_probs=True)
    fused = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref, ref_probs = _reference64(q, k, v, mask)
    assert ours.shape == (*lead, lq, dv) and probs.shape == (*lead, lq, lk)
    torch.testing.assert_close(ours, fused, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.double(), ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(probs.double(), ref_probs, atol=ATOL, rtol=0)
    torch.testing.assert_close(attention(q, k, v, mask, fused=True), fused, atol=ATOL, rtol=0)
    torch.testing.assert_close(attention_fused(q, k, v, mask), fused, atol=0, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 4),
    lq=st.integers(1, 20),
    lk=st.integers(1, 20),
    dk=st.integers(1, 32),
    dv=st.integers(1, 16),
    mask_kind=st.sampled_from([None, "bool", "additive"]),
    mask_lead=st.sampled_from(["full", "per_batch", "shared"]),
    scale=st.floats(0.1, 5.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_attention_property_matches_sdpa(
    batch, heads, lq, lk, dk, dv, mask_kind, mask_lead, scale, seed
):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _qkv(gen, (batch, heads), lq, lk, dk, dv)
    q = q * scale  # larger scores: sharper softmax
    lead = {"full": (batch, heads), "per_batch": (batch, 1), "shared": ()}[mask_lead]
    mask = None
    if mask_kind == "bool":
        mask = _bool_mask(gen, (*lead, lq, lk))
    elif mask_kind == "additive":
        mask = torch.randn(*lead, 1, lk, generator=gen) * 3  # broadcasts over queries
    ours, probs = attention(q, k, v, mask, return_probs=True)
    torch.testing.assert_close(
        ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=ATOL, rtol=0
    )
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(batch, heads, lq), atol=ATOL, rtol=0)
    if mask_kind == "bool":
        assert (probs[~mask.expand_as(probs)] == 0).all(), "a blocked key got weight"


def test_probabilities_are_nonnegative_and_sum_to_one():
    gen = torch.Generator().manual_seed(0)
    q, k, v = _qkv(gen, (2, 3), 10, 12, 16, 16)
    _, probs = attention(q * 10, k, v, return_probs=True)  # sharp softmax, values near 0 and 1
    assert (probs >= 0).all() and (probs <= 1).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3, 10), atol=ATOL, rtol=0)


def test_query_with_every_key_blocked_gets_zero_like_sdpa():
    gen = torch.Generator().manual_seed(1)
    q, k, v = _qkv(gen, (2,), 4, 6, 8, 5)
    mask = torch.ones(2, 4, 6, dtype=torch.bool)
    mask[0, 2] = False
    out, probs = attention(q, k, v, mask, return_probs=True)
    assert torch.isfinite(out).all()
    assert (out[0, 2] == 0).all() and (probs[0, 2] == 0).all()
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=ATOL, rtol=0
    )


def test_scale_is_one_over_sqrt_dk():
    # two keys, the query aligned with the first: scores 4 and 0, then 4 / sqrt(d_k = 16) = 1
    q = torch.tensor([[2.0, 0, 0, 0] * 4]) / 2
    k = torch.tensor([[2.0, 0, 0, 0] * 4, [0.0, 0, 0, 0] * 4]) / 2
    v = torch.eye(2)
    _, probs = attention(q, k, v, return_probs=True)
    # q.k = 4, d_k = 16: softmax([1, 0]) = [e / (e + 1), 1 / (e + 1)]
    torch.testing.assert_close(probs[0], torch.tensor([math.e / (math.e + 1), 1 / (math.e + 1)]))


# ---- heads --------------------------------------------------------------------------------------


def test_split_and_merge_heads_are_inverse_and_ordered():
    x = torch.arange(2 * 3 * 12, dtype=torch.float32).view(2, 3, 12)  # (B, L, h*d) with h=4, d=3
    heads = split_heads(x, 4)
    assert heads.shape == (2, 4, 3, 3)
    torch.testing.assert_close(heads[1, 2, 0], x[1, 0, 6:9])  # head 2 holds channels 6..8
    torch.testing.assert_close(merge_heads(heads), x)


# ---- layers against diffusers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_unet_block():
    """A transformer block from a tiny, randomly initialized UNet2DConditionModel."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24,
        attention_head_dim=4,
        norm_num_groups=8,
    ).eval()
    block = unet.down_blocks[0].attentions[0].transformer_blocks[0]
    with torch.no_grad():  # the UNet starts to_out at random; make every weight matter
        for attn in (block.attn1, block.attn2):
            for p in attn.parameters():
                p.normal_(0, 0.3)
    return block


@pytest.mark.parametrize("fused", [False, True])
def test_cross_attention_loads_diffusers_attn2(tiny_unet_block, fused):
    theirs = tiny_unet_block.attn2
    assert theirs.is_cross_attention and theirs.heads == 4
    ours = CrossAttention(
        32, 24, heads=theirs.heads, dim_head=theirs.inner_dim // theirs.heads, fused=fused
    )
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    ours.load_state_dict(theirs.state_dict())
    gen = torch.Generator().manual_seed(2)
    x, context = torch.randn(3, 64, 32, generator=gen), torch.randn(3, 7, 24, generator=gen)
    padding = torch.zeros(3, 1, 7)
    padding[1, :, 5:] = float("-inf")  # sample 1 has two padding tokens
    with torch.no_grad():
        for mask in (None, padding):
            expected = theirs(x, encoder_hidden_states=context, attention_mask=mask)
            torch.testing.assert_close(ours(x, context, mask=mask), expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(
            ours(x, context, mask=padding.isfinite()),
            theirs(x, encoder_hidden_states=context, attention_mask=padding),
            atol=ATOL,
            rtol=0,
        )
        loaded = CrossAttention.from_diffusers(theirs)
        torch.testing.assert_close(
            loaded(x, context), theirs(x, encoder_hidden_states=context), atol=ATOL, rtol=0
        )


@pytest.mark.parametrize("cls", [CrossAttention, SelfAttention])
def test_self_attention_loads_diffusers_attn1(tiny_unet_block, cls):
    theirs = tiny_unet_block.attn1
    assert not theirs.is_cross_attention
    ours = cls(32, heads=theirs.heads, dim_head=theirs.inner_dim // theirs.heads)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 64, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = theirs(x)
        torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(cls.from_diffusers(theirs)(x), expected, atol=ATOL, rtol=0)


def test_layer_probabilities_shape_and_sum():
    layer = CrossAttention(16, 10, heads=2, dim_head=8)
    x, context = torch.randn(2, 5, 16), torch.randn(2, 3, 10)
    out, probs = layer(x, context, return_probs=True)
    assert out.shape == (2, 5, 16) and probs.shape == (2, 2, 5, 3)
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 5), atol=ATOL, rtol=0)


def test_fused_layer_equals_written_out_layer():
    torch.manual_seed(4)
    layer = SelfAttention(24, heads=3, dim_head=None)  # d = 24 / 3
    x = torch.randn(2, 11, 24)
    slow = layer(x)
    layer.fused = True
    torch.testing.assert_close(layer(x), slow, atol=ATOL, rtol=0)
    assert layer.dim_head == 8


def test_selfattention_keeps_diffusers_state_dict_keys():
    from diffusers.models.attention_processor import Attention

    ours, theirs = SelfAttention(40, heads=8, dim_head=5), Attention(40, heads=8, dim_head=5)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda: CrossAttention(30, 16, heads=4, dim_head=None), ["heads=4", "query_dim=30"]),
        (lambda: SelfAttention(30, heads=7, dim_head=None), ["heads=7", "query_dim=30"]),
        (lambda: split_heads(torch.randn(2, 3, 10), 4), ["heads=4", "width 10"]),
        (lambda: CrossAttention(0, 16), ["query_dim", "0"]),
        (lambda: CrossAttention(16, 8, heads=0), ["heads", "0"]),
        (lambda: CrossAttention(16, 8, heads=2, dim_head=-1), ["dim_head", "-1"]),
    ],
)
def test_bad_sizes_raise_value_error_naming_them(make, words):
    with pytest.raises(ValueError) as err:
        make()
    for word in words:
        assert word in str(err.value)


def test_wrong_context_width_is_named():
    layer = CrossAttention(16, 10, heads=2, dim_head=8)
    with pytest.raises(ValueError, match=r"context.*context_dim=10.*\(2, 3, 12\)"):
        layer(torch.randn(2, 5, 16), torch.randn(2, 3, 12))
    with pytest.raises(ValueError, match=r"context is None.*context_dim=10"):
        layer(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match=r"x must have shape.*query_dim=16"):
        layer(torch.randn(2, 5, 10), torch.randn(2, 3, 10))
    with pytest.raises(ValueError, match="SelfAttention takes no context"):
        SelfAttention(16, 2, 8)(torch.randn(1, 3, 16), torch.randn(1, 3, 16))


@pytest.mark.parametrize("fn", [attention, attention_fused])
def test_mask_that_does_not_broadcast_is_named(fn):
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    for bad in (torch.ones(4, 5, dtype=torch.bool), torch.ones(3, 4, 6), torch.ones(7, 2, 4, 6)):
        with pytest.raises(ValueError, match=rf"mask of shape {re.escape(str(tuple(bad.shape)))}"):
            fn(q, k, v, bad)
    with pytest.raises(ValueError, match="mask must be boolean"):
        fn(q, k, v, torch.ones(4, 6, dtype=torch.int64))


def test_layer_mask_that_does_not_broadcast_is_named():
    layer = CrossAttention(16, 10, heads=2, dim_head=8)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 4\).*\(2, 5, 4\)"):
        layer(torch.randn(2, 5, 16), torch.randn(2, 4, 10), mask=torch.ones(2, 4, dtype=torch.bool))


def test_mismatched_qkv_are_named():
    with pytest.raises(ValueError, match="d_k"):
        attention(torch.randn(3, 8), torch.randn(5, 7), torch.randn(5, 8))
    with pytest.raises(ValueError, match="L_k"):
        attention(torch.randn(3, 8), torch.randn(5, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match="return_probs"):
        attention(
            torch.randn(3, 8), torch.randn(5, 8), torch.randn(5, 8), return_probs=True, fused=True
        )


def test_self_from_diffusers_refuses_cross(tiny_unet_block):
    with pytest.raises(ValueError, match="CrossAttention"):
        SelfAttention.from_diffusers(tiny_unet_block.attn2)
