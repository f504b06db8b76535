"""The reference lines every quality plot of the course draws (lessons 03, 04, 07): the evaluation
classifier's own accuracy on real digits as the ceiling of an accuracy axis, and the FID of real
digits at the same count (the floor's mean +/- sd over training subsets, and test vs test) on an
FID axis. See ``sdcourse.evaluate`` for what each number is."""

from __future__ import annotations

from .. import evaluate


def draw_ceiling(ax, accuracy: float | None = None) -> None:
    """A dashed line at the classifier's accuracy on real test digits (``accuracy``, or measured)."""
    accuracy = evaluate.classifier_real_accuracy() if accuracy is None else accuracy
    ax.axhline(accuracy, color="black", ls="--", lw=1, label=f"classifier on real digits ({accuracy:.1%})")


def draw_floor(ax, mean: float, sd: float, test_vs_test: float | None = None, test_n: int | None = None,
               n: int | None = None) -> None:
    """A gray band at the real-vs-real floor mean +/- sd, and a dotted line at test vs test."""
    ax.axhspan(mean - sd, mean + sd, color="gray", alpha=0.25, label=f"real train vs test: {mean:.1f} +/- {sd:.1f}")
    ax.axhline(mean, color="gray", lw=1)
    if test_vs_test is not None:
        at = "" if test_n is None or test_n == n else f" (n={test_n})"
        ax.axhline(test_vs_test, color="gray", ls=":", label=f"real test vs test{at}: {test_vs_test:.1f}")
