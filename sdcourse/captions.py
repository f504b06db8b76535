"""Captions for digits, measured from the pixels (lesson 09: text-to-image on captioned digits).

Each digit gets three measured attributes, computed on the ink mask ``m = image > 0`` (images in
[-1, 1]) and the ink weights ``w = (image + 1) / 2``:

- thickness = ink area / stroke length, the stroke length being half the mask's boundary length
  (a stroke of length L and width t has area L t and boundary about 2 L, so A / (P / 2) = t);
- slant = -mu_11 / mu_02 from the second central moments of ``w`` (x to the right, y down): the
  horizontal shift per row of the least-squares line x = a + s (y_c - y), > 0 leaning right;
- size = area of the bounding box of the mask (in pixels).

Each attribute is cut into three bins at its tertiles on the training digits (``Tertiles.fit``),
so each word (thin/medium/thick, left-slanted/upright/right-slanted, small/medium-sized/large)
covers a third of them. ``caption`` writes one of several templates in English words, numerals or
Chinese: "a thick, right-slanted seven", "a small 7", "一个粗的数字七", "手写数字七".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

Tensor = torch.Tensor
ATTRIBUTES = ("thickness", "slant", "size")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_CHINESE = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九")
WORDS = {  # bin 0, 1, 2 of each attribute; None: the middle bin is not named
    "thickness": ("thin", None, "thick"),
    "slant": ("left-slanted", "upright", "right-slanted"),
    "size": ("small", None, "large"),
}
CHINESE = {"thickness": ("细", None, "粗"), "slant": ("左倾", "直立", "右倾"), "size": ("小", None, "大")}
LANGUAGES = ("words", "numerals", "chinese")


def _check_images(images: Tensor) -> Tensor:
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    return images.float()


def thickness(images: Tensor) -> Tensor:
    """Mean stroke width in pixels: ink area / (boundary length / 2) of the mask ``image > 0``."""
    m = (_check_images(images) > 0).float()
    padded = torch.nn.functional.pad(m, (1, 1, 1, 1))
    edges = ((padded[..., 1:, :] - padded[..., :-1, :]).abs().sum((1, 2, 3))
             + (padded[..., :, 1:] - padded[..., :, :-1]).abs().sum((1, 2, 3)))  # 4-connected boundary
    return 2 * m.sum((1, 2, 3)) / edges.clamp(min=1)


def slant(images: Tensor) -> Tensor:
    """-mu_11 / mu_02 of the ink weights: horizontal shift per row upwards (> 0: leaning right)."""
    w = (_check_images(images) + 1).clamp(min=0)[:, 0] / 2
    h, wd = w.shape[-2:]
    y = torch.arange(h, dtype=w.dtype)[:, None].expand(h, wd)
    x = torch.arange(wd, dtype=w.dtype)[None, :].expand(h, wd)
    mass = w.sum((1, 2)).clamp(min=1e-8)
    yc = (w * y).sum((1, 2)) / mass
    xc = (w * x).sum((1, 2)) / mass
    dy, dx = y - yc[:, None, None], x - xc[:, None, None]
    mu11 = (w * dx * dy).sum((1, 2)) / mass
    mu02 = (w * dy * dy).sum((1, 2)) / mass
    return -mu11 / mu02.clamp(min=1e-8)


def size(images: Tensor) -> Tensor:
    """Area in pixels of the bounding box of the mask ``image > 0`` (0 for an empty image)."""
    m = _check_images(images)[:, 0] > 0
    rows, cols = m.any(2), m.any(1)

    def extent(flags: Tensor) -> Tensor:
        idx = torch.arange(flags.shape[1])
        first = torch.where(flags, idx, flags.shape[1]).min(1).values
        last = torch.where(flags, idx, -1).max(1).values
        return (last - first + 1).clamp(min=0)

    return (extent(rows) * extent(cols)).float()


def measure(images: Tensor) -> dict[str, Tensor]:
    """All three attributes of ``images`` (N, 1, H, W): {"thickness", "slant", "size"} -> (N,)."""
    return {"thickness": thickness(images), "slant": slant(images), "size": size(images)}


@dataclass(frozen=True)
class Tertiles:
    """The 1/3 and 2/3 quantiles of each attribute, measured on the training digits."""

    cuts: dict[str, tuple[float, float]]

    @classmethod
    def fit(cls, attributes: dict[str, Tensor]) -> Tertiles:
        cuts = {}
        for name in ATTRIBUTES:
            q = torch.quantile(attributes[name].double(), torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
            cuts[name] = (q[0].item(), q[1].item())
        return cls(cuts)

    def bins(self, attributes: dict[str, Tensor]) -> dict[str, Tensor]:
        """0, 1 or 2 per digit and attribute: below the first cut, between, at or above the second."""
        return {name: (attributes[name] >= self.cuts[name][0]).long() + (attributes[name] >= self.cuts[name][1]).long()
                for name in ATTRIBUTES}

    def to_dict(self) -> dict:
        return {name: list(c) for name, c in self.cuts.items()}

    @classmethod
    def from_dict(cls, d: dict) -> Tertiles:
        return cls({name: tuple(d[name]) for name in ATTRIBUTES})


def _english(digit: int, bins: dict[str, int], numeral: bool, rng: random.Random) -> str:
    name = str(digit) if numeral else DIGIT_WORDS[digit]
    adjectives = [WORDS[a][bins[a]] for a in ATTRIBUTES if WORDS[a][bins[a]] is not None]
    adjectives = [a for a in adjectives if rng.random() < 0.7]  # each named attribute appears 70 % of the time
    rng.shuffle(adjectives)
    noun = rng.choice([name, f"digit {name}", f"handwritten {name}", f"number {name}"])
    if not adjectives:
        return rng.choice([f"a {noun}", noun, f"a picture of a {noun}"])
    text = ", ".join(adjectives) + " " + noun
    return ("an " if text[0] in "aeiou" else "a ") + text


def _chinese(digit: int, bins: dict[str, int], rng: random.Random) -> str:
    adjectives = [CHINESE[a][bins[a]] for a in ATTRIBUTES if CHINESE[a][bins[a]] is not None]
    adjectives = [a for a in adjectives if rng.random() < 0.7]
    noun = rng.choice([f"数字{DIGIT_CHINESE[digit]}", f"手写数字{DIGIT_CHINESE[digit]}", DIGIT_CHINESE[digit]])
    if not adjectives:
        return rng.choice([noun, f"一个{noun}", f"手写数字{DIGIT_CHINESE[digit]}"])
    return "一个" + "、".join(adjectives) + "的" + noun


def caption(digit: int, bins: dict[str, int], language: str, rng: random.Random) -> str:
    """One caption of ``digit`` with attribute ``bins`` in ``language`` ("words", "numerals", "chinese")."""
    if not 0 <= digit <= 9:
        raise ValueError(f"digit must be in 0..9, got {digit}")
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    if language == "chinese":
        return _chinese(digit, bins, rng)
    return _english(digit, bins, language == "numerals", rng)


def captions_for(labels: Tensor, bins: dict[str, Tensor], per_digit: int, seed: int = 0) -> list[list[str]]:
    """``per_digit`` captions for each digit, languages in turn (seeded, so the same every run)."""
    rng = random.Random(seed)
    out = []
    for i, label in enumerate(labels.tolist()):
        b = {name: int(bins[name][i]) for name in ATTRIBUTES}
        out.append([caption(label, b, LANGUAGES[k % len(LANGUAGES)], rng) for k in range(per_digit)])
    return out
