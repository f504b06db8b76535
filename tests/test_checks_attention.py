"""Lesson 06's checks pass the reference and reject typical wrong answers, naming the mistake."""

from __future__ import annotations

import math

import pytest
import torch

from sdcourse import checks
from sdcourse.attention import attention, merge_heads, split_heads

# ---- attention ----------------------------------------------------------------------------------


def _attention_no_scale(q, k, v):
    return (q @ k.transpose(-2, -1)).softmax(-1) @ v


def _attention_wrong_axis(q, k, v):
    return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-2) @ v


def _attention_divide_by_dk(q, k, v):
    return (q @ k.transpose(-2, -1) / q.shape[-1]).softmax(-1) @ v


def _attention_sqrt_dv(q, k, v):
    return (q @ k.transpose(-2, -1) / math.sqrt(v.shape[-1])).softmax(-1) @ v


def _attention_returns_probs(q, k, v):
    return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)


def test_check_attention_passes_reference_and_a_handwritten_one():
    checks.check_attention(attention, seed=0)
    checks.check_attention(
        lambda q, k, v: torch.softmax(q @ k.mT * q.shape[-1] ** -0.5, dim=-1) @ v, seed=1
    )


@pytest.mark.parametrize(
    "wrong,cause",
    [
        (_attention_no_scale, "not scaled"),
        (_attention_wrong_axis, "wrong axis"),
        (_attention_divide_by_dk, "divided by d_k"),
        (_attention_sqrt_dv, "sqrt(d_v)"),
        (_attention_returns_probs, "expected shape"),
    ],
)
def test_check_attention_rejects_and_names_mistake(wrong, cause):
    with pytest.raises(checks.CheckFailed) as err:
        checks.check_attention(wrong, seed=2)
    assert cause in str(err.value)


# ---- split and merge heads ----------------------------------------------------------------------


def test_check_split_and_merge_pass_reference():
    checks.check_split_heads(split_heads, seed=0)
    checks.check_merge_heads(merge_heads, seed=0)
    checks.check_split_heads(  # the einops-style spelling
        lambda x, h: x.unflatten(-1, (h, x.shape[-1] // h)).permute(0, 2, 1, 3), seed=1
    )


@pytest.mark.parametrize(
    "wrong,cause",
    [
        (
            lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h),
            "straight to (B, heads",
        ),
        (lambda x, h: x.view(*x.shape[:2], x.shape[2] // h, h).permute(0, 3, 1, 2), "interleaved"),
        (
            lambda x, h: x.view(*x.shape[:2], h, x.shape[2] // h),
            "expected shape",
        ),  # forgot transpose
    ],
)
def test_check_split_heads_rejects(wrong, cause):
    with pytest.raises(checks.CheckFailed) as err:
        checks.check_split_heads(wrong, seed=3)
    assert cause in str(err.value)


@pytest.mark.parametrize(
    "wrong,cause",
    [
        (lambda x: x.reshape(x.shape[0], x.shape[2], -1), "wrong order"),  # no transpose
        (lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1), "interleaved"),
        (lambda x: x.transpose(1, 2), "expected shape"),  # forgot to flatten the heads
    ],
)
def test_check_merge_heads_rejects_heads_merged_in_wrong_order(wrong, cause):
    with pytest.raises(checks.CheckFailed) as err:
        checks.check_merge_heads(wrong, seed=4)
    assert cause in str(err.value)


# ---- cross-attention ----------------------------------------------------------------------------


def _cross(
    x,
    context,
    to_q,
    to_k,
    to_v,
    to_out,
    heads,
    kv_from="context",
    swap=False,
    project=True,
    one_head=False,
):
    kv = context if kv_from == "context" else x
    if swap:
        to_k, to_v = to_v, to_k
    h = 1 if one_head else heads
    q, k, v = split_heads(to_q(x), h), split_heads(to_k(kv), h), split_heads(to_v(kv), h)
    merged = merge_heads(attention(q, k, v))
    return to_out(merged) if project else merged


def test_check_cross_attention_passes_reference():
    checks.check_cross_attention(_cross, seed=0)


@pytest.mark.parametrize(
    "kwargs,cause",
    [
        ({"kv_from": "x"}, "not from x"),
        ({"swap": True}, "swapped"),
        ({"project": False}, "output projection"),
        ({"one_head": True}, "one head"),
    ],
)
def test_check_cross_attention_rejects(kwargs, cause):
    with pytest.raises(checks.CheckFailed) as err:
        checks.check_cross_attention(lambda *args: _cross(*args, **kwargs), seed=5)
    assert cause in str(err.value)


def test_unfinished_exercise_is_not_hidden():
    def unfinished(q, k, v):
        raise NotImplementedError("write attention")

    with pytest.raises(NotImplementedError):
        checks.check_attention(unfinished)
