"""Measuring generated digits (lessons 02, 03, 04, 07; ``sdcourse evaluate``).

Two numbers, both from a small MNIST classifier that the course trains and ships
(``checkpoints/mnist_classifier.safetensors``):

* conditional accuracy: the fraction of digits generated for label y that the classifier reads as y;
* FID in the classifier's feature space (Heusel et al. 2017, arXiv:1706.08500): the Frechet
  distance between Gaussians fitted to the penultimate-layer features of generated and real digits,

      FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).

  Inception features mean nothing on 28x28 digits, so the numbers are only comparable within this
  course. FID is biased upwards at small sample counts, so it is always reported next to the
  real-vs-real floor: the FID between two disjoint sets of real digits of the same size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F

from . import checkpoint
from .data import load_mnist

Tensor = torch.Tensor


class Classifier(nn.Module):
    """Two conv blocks and a 128-d feature layer: about 99 % on MNIST, fast on a CPU."""

    def __init__(self, features: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.SiLU(), nn.MaxPool2d(2),   # 28 -> 14
            nn.Conv2d(32, 64, 3, padding=1), nn.GroupNorm(8, 64), nn.SiLU(), nn.MaxPool2d(2),  # 14 -> 7
            nn.Flatten(), nn.Linear(64 * 7 * 7, features), nn.SiLU(),
        )
        self.head = nn.Linear(features, 10)

    @classmethod
    def from_config(cls, model_config: dict) -> Classifier:
        """A fresh classifier from a card's ``model_config`` (what ``checkpoint.load_model`` calls)."""
        return cls(**model_config)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (B, 128) of digits x (B, 1, 28, 28) in [-1, 1]."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"images must have shape (B, 1, 28, 28), got {tuple(x.shape)}")
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, 10)."""
        return self.head(self.features(x))


def classifier_loss(model: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
    """Cross-entropy on digits shifted by up to 2 pixels (a little augmentation for robustness)."""
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return F.cross_entropy(model(torch.roll(x, shifts=(dy, dx), dims=(2, 3))), y)


@lru_cache(maxsize=2)
def load_classifier(name: str = "mnist_classifier") -> Classifier:
    """The shipped classifier in eval mode (cached)."""
    return checkpoint.load_model(name).model


@torch.no_grad()
def features_and_logits(images: Tensor, classifier: Classifier | None = None,
                        batch: int = 500) -> tuple[Tensor, Tensor]:
    classifier = classifier or load_classifier()
    feats, logits = [], []
    for chunk in images.split(batch):
        f = classifier.features(chunk.float().clamp(-1, 1))
        feats.append(f.double())
        logits.append(classifier.head(f))
    return torch.cat(feats), torch.cat(logits)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """FID between the Gaussians fitted to feature sets a (N, d) and b (M, d), in float64.

    Tr((S_a S_b)^(1/2)) is computed as the sum of the square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2), which is symmetric positive semi-definite (same eigenvalues).
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (N, d) and (M, d), got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 samples per set, got {len(a)} and {len(b)}")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(cov_a)
    sqrt_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    middle = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * middle)


@dataclass(frozen=True)
class Quality:
    """Sample quality: accuracy in [0, 1], FID, and the FID of real vs real digits at the same count."""

    accuracy: float | None  # None when the samples carry no labels (unconditional)
    fid: float
    fid_floor: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        acc = "n/a" if self.accuracy is None else f"{100 * self.accuracy:.1f} %"
        return f"accuracy {acc}, FID {self.fid:.2f} (real-vs-real floor {self.fid_floor:.2f}, n={self.n})"


@lru_cache(maxsize=8)
def _real_features(split: str, n: int) -> Tensor:
    digits = load_mnist(split, verbose=False)
    if n > len(digits):
        raise ValueError(f"n={n} is more than the {len(digits)} real {split} digits available")
    index = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))[:n]
    return features_and_logits(digits.images[index])[0]


def real_floor(n: int) -> float:
    """FID between n real training digits and n real test digits: the best a generator can expect."""
    return frechet_distance(_real_features("train", n), _real_features("test", n))


def conditional_accuracy(images: Tensor, labels: Tensor, logits: Tensor | None = None) -> float:
    """The fraction of ``images`` (N, 1, 28, 28) that the classifier reads as the digit asked for, ``labels`` (N,).

    ``logits`` (N, 10), when the classifier already ran on ``images``, saves running it again.
    """
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
    logits = features_and_logits(images)[1] if logits is None else logits
    return float((logits.argmax(1).cpu() == labels.cpu()).double().mean())


def evaluate_samples(images: Tensor, labels: Tensor | None = None) -> Quality:
    """Conditional accuracy and FID of generated ``images`` (N, 1, 28, 28) asked for ``labels`` (N,).

    FID compares against N held-out real test digits (so N is at most 1,000 offline).
    """
    if labels is not None and labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
    feats, logits = features_and_logits(images)
    accuracy = None if labels is None else conditional_accuracy(images, labels, logits)
    n = len(images)
    return Quality(accuracy, frechet_distance(feats, _real_features("test", n)), real_floor(n), n)


def mean_pairwise_distance(images: Tensor) -> float:
    """Diversity: the mean Euclidean distance between the classifier features of all pairs."""
    feats = features_and_logits(images)[0]
    if len(feats) < 2:
        raise ValueError("need at least 2 images to measure diversity")
    d = torch.cdist(feats, feats)
    return float(d.sum() / (len(feats) * (len(feats) - 1)))
