"""Guidance measured on the shipped checkpoint: it must raise the conditional accuracy.

A test that fails if guidance were wired backwards (halves swapped, or the scale applied to the
wrong difference): at scale 3 the evaluation classifier must read the asked-for digit far more
often than at scale 0, where the label is ignored.
"""

from __future__ import annotations

from sdcourse import checkpoint, evaluate
from sdcourse.experiments.guidance_sweep import balanced_labels, sample_at_scales
from sdcourse.samplers import DDIMSampler


def test_accuracy_at_scale_3_is_above_accuracy_at_scale_0():
    ddpm, labels = checkpoint.load_model("ddpm_mnist"), balanced_labels(100)
    samples = sample_at_scales(ddpm.model, lambda: DDIMSampler(ddpm.schedule, 10), labels, [0, 3], seed=0,
                               progress=False)
    accuracy = {s: evaluate.conditional_accuracy(x, labels) for s, x in samples.items()}
    # scale 0 ignores the label: about 1 in 10 right by chance
    assert accuracy[0.0] < 0.3, accuracy
    assert accuracy[3.0] > accuracy[0.0] + 0.4, accuracy
