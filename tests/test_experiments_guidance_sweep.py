"""Lesson 04's guidance sweep: balanced labels, the same seeds at every scale, diversity, saturation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sdcourse import evaluate
from sdcourse.checks import ToyConditionalEps
from sdcourse.experiments.guidance_sweep import (
    balanced_labels,
    sample_at_scales,
    saturated_fraction,
    within_class_diversity,
)
from sdcourse.guidance import GuidedModel
from sdcourse.samplers import DDIMSampler, sample
from sdcourse.schedules import NoiseSchedule


def _with_config(model, channels=1, size=28):
    model.config = SimpleNamespace(in_channels=channels, image_size=size)  # what the toy UNet's config says
    return model


def test_balanced_labels():
    assert balanced_labels(12).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1, got 0"):
        balanced_labels(0)


def test_sample_at_scales_uses_the_same_seeds_at_every_scale():
    model, labels = _with_config(ToyConditionalEps(seed=15)), balanced_labels(5)
    schedule = NoiseSchedule.linear(1000)
    out = sample_at_scales(model, lambda: DDIMSampler(schedule, 5), labels, [1, 3.0], seed=20, batch_size=2,
                           progress=False)
    assert list(out) == [1.0, 3.0] and out[3.0].shape == (5, 1, 28, 28)
    # batch k of size 2 starts from the generator seeded with 20 + k
    for k, start in enumerate(range(0, 5, 2)):
        y = labels[start:start + 2]
        expected = sample(model, DDIMSampler(schedule, 5), (len(y), 1, 28, 28), labels=y,
                          generator=torch.Generator().manual_seed(20 + k), progress=False)
        assert torch.equal(out[1.0][start:start + 2], expected)
    assert not torch.allclose(out[1.0], out[3.0])
    with pytest.raises(ValueError, match="guidance_scale"):
        sample_at_scales(model, lambda: DDIMSampler(schedule, 5), labels, [-1], progress=False)


def test_within_class_diversity_equals_a_float64_loop():
    images = torch.rand(9, 1, 28, 28, generator=torch.Generator().manual_seed(16)) * 2 - 1
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3])
    features = evaluate.features_and_logits(images)[0].double()
    per_label = []
    for c in (0, 1, 3):  # label 2 has a single sample: no pair
        f = features[labels == c]
        pairs = [(f[i] - f[j]).norm().item() for i in range(len(f)) for j in range(len(f)) if i < j]
        per_label.append(sum(pairs) / len(pairs))
    assert within_class_diversity(images, labels) == pytest.approx(sum(per_label) / 3, rel=1e-6)
    # identical samples have no diversity
    assert within_class_diversity(images[:1].expand(4, -1, -1, -1), torch.full((4,), 5)) == pytest.approx(0)
    with pytest.raises(ValueError, match="at least one label with 2"):
        within_class_diversity(images[:2], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels \(N,\)"):
        within_class_diversity(images, labels[:3])


def test_saturated_fraction():
    images = torch.tensor([-1.0, -0.99, 0.0, 0.5, 0.97, 1.0])
    assert saturated_fraction(images) == pytest.approx(3 / 6)


def test_sample_at_scales_takes_the_sample_shape_from_the_model_config():
    model, labels = _with_config(ToyConditionalEps(seed=17), size=8), balanced_labels(3)
    out = sample_at_scales(model, lambda: DDIMSampler(NoiseSchedule.linear(1000), 2), labels, [2.0], progress=False)
    expected = sample(GuidedModel(model, 2.0), DDIMSampler(NoiseSchedule.linear(1000), 2), (3, 1, 8, 8),
                      labels=labels, generator=torch.Generator().manual_seed(0), progress=False)
    assert out[2.0].shape == (3, 1, 8, 8)
    assert torch.equal(out[2.0], expected)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        sample_at_scales(model, lambda: DDIMSampler(NoiseSchedule.linear(1000), 2), labels, [1], batch_size=0,
                         progress=False)
