"""Lesson 04's sweep: what the classifier-free guidance scale buys and what it costs.

Classifier-free guidance (Ho and Salimans 2022, arXiv:2207.12598; ``sdcourse.guidance``) trades
diversity for fidelity to the label. This module measures the trade-off the way the paper's
Figure 4 does (IS and FID against w), with the course's own instruments: the same seeds sampled at
every scale (``sample_at_scales``), then per scale the conditional accuracy and classifier-feature
FID of ``sdcourse.evaluate``, the diversity within a digit and the fraction of saturated pixels
(``measure_scales``). ``notebooks/04`` runs it small, ``bench/guidance_sweep.py`` at full size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .. import config, evaluate, validate
from ..guidance import NUM_CLASSES, GuidedModel, digit_labels, guidance_scale_value
from ..sampling import sample

Tensor = torch.Tensor


def balanced_labels(num_samples: int, num_classes: int = NUM_CLASSES) -> Tensor:
    """0, 1, ..., 9, 0, 1, ...: ``num_samples`` int64 labels, every digit equally often (+-1), (N,)."""
    num_samples = validate.integer("num_samples", num_samples, low=1)
    return torch.arange(num_samples, dtype=torch.long) % num_classes


@torch.no_grad()
def sample_at_scales(
    model,
    make_sampler,
    labels: Tensor,
    scales,
    seed: int = 0,
    negative_label=None,
    batch_size: int = 250,
    progress: bool = True,
) -> dict[float, Tensor]:
    """Sample the same seeds at every guidance scale: {scale: x_0 (N, C, H, W)}, on the CPU.

    Args:
        model: the class-conditional ``model(x_t, t, labels) -> eps`` (with the null label); its
            ``config`` (``in_channels``, ``image_size``) gives the shape of a sample.
        make_sampler: ``() -> DDPMSampler | DDIMSampler``, a fresh sampler per batch.
        labels: int64 (N,) digits 0..9 to sample, one per image.
        scales: the guidance scales (each >= 0).
        seed: batch k draws x_T (and any sampler noise) from ``torch.Generator().manual_seed(seed + k)``,
            the same at every scale, so a column of a grid differs only by the scale.
        negative_label: a digit to guide away from, or None (the null label).
        batch_size: images per call of ``sample``.
        progress: one tqdm bar over all batches of all scales.
    """
    scales = [guidance_scale_value(s) for s in scales]
    labels = digit_labels(labels, len(labels), torch.device("cpu"))
    batch_size = validate.integer("batch_size", batch_size, low=1)
    channels, size = model.config.in_channels, model.config.image_size
    chunks = labels.split(batch_size)
    bar = tqdm(total=len(scales) * len(chunks), desc="sampling scales", disable=not progress)
    out = {}
    for scale in scales:
        guided, images = GuidedModel(model, scale, negative_label), []
        for k, y in enumerate(chunks):
            bar.set_postfix(scale=scale)
            gen = torch.Generator().manual_seed(seed + k)
            images.append(sample(guided, make_sampler(), (len(y), channels, size, size), labels=y, generator=gen,
                                 progress=False).cpu())
            bar.update()
        out[scale] = torch.cat(images)  # (N, C, H, W)
    bar.close()
    return out


def within_class_diversity(images: Tensor, labels: Tensor) -> float:
    """Diversity within a class: ``evaluate.mean_pairwise_distance`` (the mean distance between the
    classifier features of two different samples) of the samples of each label, averaged over the
    labels that have at least 2 samples (each label weighs the same).

    Args:
        images: (N, 1, 28, 28) in [-1, 1].
        labels: (N,), the label each image was sampled for.
    """
    if images.ndim != 4 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"images must be (N, 1, 28, 28) and labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    per_label = [evaluate.mean_pairwise_distance(images[labels == y]) for y in labels.unique()
                 if int((labels == y).sum()) >= 2]
    if not per_label:
        raise ValueError("within_class_diversity needs at least one label with 2 or more samples")
    return sum(per_label) / len(per_label)


def saturated_fraction(images: Tensor, threshold: float = 0.98) -> float:
    """The fraction of pixels at the ends of [-1, 1] (|x| >= ``threshold``): pure black or pure white."""
    return (images.abs() >= threshold).double().mean().item()


@dataclass(frozen=True)
class ScaleResult:
    """What one guidance scale gives, measured on samples of known labels (one row of lesson 04's table)."""

    guidance_scale: float  # 0 = unconditional, 1 = no guidance; the paper's w = guidance_scale - 1
    accuracy: float  # fraction of samples the evaluation classifier reads as the label asked for
    fid: float  # classifier-feature FID against as many real test digits: lower = closer to real digits
    fid_floor: float  # real training digits against the same test digits, mean over subsets (a reference)
    diversity: float  # mean pairwise feature distance within a label: lower = more alike
    saturated: float  # fraction of pixels at pure black or white (|x| >= 0.98)
    fid_floor_sd: float  # the floor's sd over disjoint training subsets (evaluate.real_floor)
    fid_test_vs_test: float  # test digits against other test digits (evaluate.test_vs_test)
    classifier_real_accuracy: float  # the classifier on real digits: the ceiling of the accuracy curve


def measure_scales(samples: dict[float, Tensor], labels: Tensor, progress: bool = False) -> list[ScaleResult]:
    """Accuracy, FID, diversity and saturation of ``sample_at_scales``' output, one row per scale,
    with ``sdcourse.evaluate``'s shipped classifier.

    Args:
        samples: {guidance_scale: images (N, 1, 28, 28)} in [-1, 1], N <= 1,000 (the real test digits).
        labels: int64 (N,), the labels the samples were drawn for.
    """
    rows = []
    for scale, images in tqdm(samples.items(), desc="measuring", disable=not progress):
        quality = evaluate.evaluate_samples(images, labels)
        rows.append(ScaleResult(
            guidance_scale=float(scale),
            accuracy=quality.accuracy,
            fid=quality.fid,
            fid_floor=quality.fid_floor,
            diversity=within_class_diversity(images, labels),
            saturated=saturated_fraction(images),
            fid_floor_sd=quality.fid_floor_sd,
            fid_test_vs_test=quality.fid_test_vs_test,
            classifier_real_accuracy=quality.classifier_real_accuracy,
        ))
    return rows


SHIPPED = config.REPO_ROOT / "bench" / "results" / "guidance_sweep.json"


def load_shipped() -> dict:
    """The full-size sweep ``bench/guidance_sweep.py`` wrote: its "command", "hardware",
    "num_samples", "steps" and one ``ScaleResult`` as a dict per scale in "rows"."""
    if not SHIPPED.exists():
        raise FileNotFoundError(f"no shipped sweep at {SHIPPED}; run bench/guidance_sweep.py to make it")
    return json.loads(SHIPPED.read_text())
