"""Lesson 09 (Stable Diffusion on captioned digits): a check for CLIP's symmetric InfoNCE loss
(Radford et al. 2021, arXiv:2103.00020, Figure 3), against ``sdcourse.clip.info_nce``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from ..clip import info_nce
from .core import call, compare, exercise, generator, passed

__all__ = ["check_info_nce"]


@exercise("info_nce")
def check_info_nce(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(logits) -> (CE(L, diag) + CE(L^T, diag)) / 2`` for square logits L (images x texts)."""
    gen = generator(seed)
    for _ in range(trials):
        n = int(torch.randint(3, 9, (1,), generator=gen))
        logits = 5 * torch.randn(n, n, generator=gen)
        target = torch.arange(n)
        got = call(fn, logits.clone(), what="info_nce")
        rows, cols = F.cross_entropy(logits, target), F.cross_entropy(logits.T, target)
        compare("loss", got, info_nce(logits), context=f"{n} pairs", mistakes={
            "only the image -> text direction (rows); CLIP averages both directions.": rows,
            "only the text -> image direction (columns); CLIP averages both directions.": cols,
            "summed the two directions; CLIP takes their mean, (rows + columns) / 2.": rows + cols,
            "summed over the batch instead of averaging: use the mean cross-entropy.": (rows + cols) / 2 * n,
            "the targets are not the diagonal: pair i's match is text i, target = arange(N).":
                (F.cross_entropy(logits, target.flip(0)) + F.cross_entropy(logits.T, target.flip(0))) / 2,
            "softmax over the wrong axis twice: the columns need logits.T (or dim 0).":
                F.cross_entropy(logits, target),
        })
    passed("info_nce", trials)
