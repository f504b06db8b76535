"""Lesson 09's check: a right InfoNCE passes, each typical mistake is named."""

import pytest
import torch
from torch.nn import functional as F

from sdcourse import checks


def right(logits):
    target = torch.arange(len(logits))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def written_out(logits):  # the same loss from log-softmax, both axes
    return -(logits.log_softmax(1).diagonal().mean() + logits.log_softmax(0).diagonal().mean()) / 2


def test_right_answers_pass(capsys):
    checks.check_info_nce(right)
    checks.check_info_nce(written_out)
    assert capsys.readouterr().out.count("✓") == 2


@pytest.mark.parametrize(("fn", "cause"), [
    (lambda L: F.cross_entropy(L, torch.arange(len(L))), "direction"),
    (lambda L: right(L) * 2, "summed the two directions"),
    (lambda L: right(L) * len(L), "summed over the batch"),
    (lambda L: right(L.flip(0)), "diagonal"),
])
def test_typical_mistakes_are_named(fn, cause):
    with pytest.raises(checks.CheckFailed, match=cause):
        checks.check_info_nce(fn, seed=0)
