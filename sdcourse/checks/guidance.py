"""Lesson 04 (conditioning and guidance): checks for classifier-free guidance (Ho and Salimans 2022,
Eq. 6) as a formula and in one forward pass on the doubled batch, and ``ToyConditionalEps``, the tiny
class-conditional model they (and the tests) run."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..unet import NULL_LABEL
from .core import CheckFailed, call, compare, exercise, generator, passed

__all__ = ["ONE_PASS_REASON", "ToyConditionalEps", "check_guidance", "check_guided_eps"]


class ToyConditionalEps(torch.nn.Module):
    """A tiny stand-in for the class-conditional UNet, ``model(x_t, t, labels) -> eps``.

    eps = tanh(x_t (1 + a_y) + b_y + c_y roll(x_t) + sin(t / 100)): per-image and elementwise, so a
    batch gives exactly the numbers of its images run one by one, and labels 0..10 (10 = no label)
    change the answer non-linearly. It records the batch size of every call in ``calls``.
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.num_classes = num_classes
        self.coef = torch.nn.Parameter(0.5 * torch.randn(3, num_classes + 1, channels, generator=gen))  # a, b, c
        self.calls: list[int] = []

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        batch = x_t.shape[0]
        for name, value in (("t", t), ("labels", labels)):
            if not isinstance(value, torch.Tensor) or value.shape != (batch,):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(
                    f"x_t holds {batch} images but {name} is {shape}: the model needs one {name} entry "
                    f"per image, shape ({batch},)"
                )
        if labels.dtype.is_floating_point or int(labels.min()) < 0 or int(labels.max()) > self.num_classes:
            raise ValueError(
                f"labels must be integers 0..{self.num_classes} ({self.num_classes} = no label), got {labels.tolist()}"
            )
        self.calls.append(batch)
        a, b, c = (p[labels.long()][:, :, None, None] for p in self.coef)  # (B, C) -> (B, C, 1, 1)
        time = torch.sin(t.double() / 100).to(x_t.dtype)[:, None, None, None]  # (B,) -> (B, 1, 1, 1)
        return torch.tanh(x_t * (1 + a) + b + c * x_t.roll(1, dims=-1) + time)


ONE_PASS_REASON = (
    "Two separate calls give the same numbers, but the denoiser is the expensive part of every step, and "
    "one call on the doubled batch reads its weights once and keeps the matrix products large. "
    "diffusers' pipelines do exactly this, so the checks of lessons 04 and 08 both ask for it."
)

_SWAPPED = (
    "swapped the halves: start from eps_uncond and move towards eps_cond, eps_uncond + s (eps_cond - eps_uncond)."
)


def _guidance_mistakes(u: Tensor, c: Tensor, s: float, swapped: str = _SWAPPED) -> dict[str, Tensor]:
    """What typical wrong combinations give, from eps_uncond u and eps_cond c at scale s."""
    return {
        swapped: c + s * (u - c),
        "used guidance_scale as the paper's w: (1 + w) eps_cond - w eps_uncond holds with "
        "w = guidance_scale - 1 (scale 1 must give eps_cond).": u + (s + 1) * (c - u),
        "used guidance_scale - 1 as the scale: the formula eps_uncond + s (eps_cond - eps_uncond) "
        "takes guidance_scale itself.": u + (s - 1) * (c - u),
        "returned only the guidance direction s (eps_cond - eps_uncond); add it to eps_uncond.": s * (c - u),
        "wrong sign: guidance moves towards the condition, eps_uncond + s (eps_cond - eps_uncond).":
            u - s * (c - u),
        "scaled the conditional prediction alone (s eps_cond); guidance extrapolates from eps_uncond.": s * c,
    }


@exercise("guidance")
def check_guidance(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(eps_uncond, eps_cond, guidance_scale) -> eps``, classifier-free guidance.

    Expected: eps_uncond + guidance_scale (eps_cond - eps_uncond) (``diffusers``' convention: scale
    1 = eps_cond, 0 = eps_uncond; the paper's w = guidance_scale - 1). Inputs are (B, C, H, W).
    """
    gen = generator(seed)
    for trial in range(trials):
        shape = ((2, 1, 28, 28), (3, 4, 8, 8))[trial % 2]  # toy digits, then SD-like latents
        u, c = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
        s = 7.5 if trial == 0 else round(float(torch.empty(1).uniform_(1.5, 12.0, generator=gen)), 3)
        got = call(fn, u.clone(), c.clone(), s, what="guidance")
        u64, c64 = u.double(), c.double()
        expected = u64 + s * (c64 - u64)  # Eq. 6, Ho and Salimans 2022, w = s - 1
        compare("guided eps", got, expected, mistakes=_guidance_mistakes(u64, c64, s),
                context=f"guidance_scale={s}")
    passed("guidance", trials)


@exercise("guided_eps")
def check_guided_eps(fn: Callable, trials: int = 3, seed: int | None = None) -> None:
    """Check ``fn(model, x_t, t, labels, guidance_scale) -> eps``, guidance in one forward pass.

    ``model(x_t, t, labels) -> eps`` takes labels 0..9 or 10 (= ``NULL_LABEL``, no label); ``x_t``
    is (B, 1, 28, 28), ``t`` and ``labels`` int64 (B,). Expected: one call of ``model`` on the
    doubled batch (unconditional half first), then eps_uncond + guidance_scale (eps_cond - eps_uncond).
    """
    gen = generator(seed)
    for trial in range(trials):
        batch = int(torch.randint(2, 6, (1,), generator=gen))
        model = ToyConditionalEps(seed=int(torch.randint(0, 2**31, (1,), generator=gen)))
        x_t = torch.randn(batch, 1, 28, 28, generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        labels = torch.randint(1, 10, (batch,), generator=gen)  # 1..9, so label 0 differs from them
        s = 7.5 if trial == 0 else round(float(torch.empty(1).uniform_(1.5, 12.0, generator=gen)), 3)
        with torch.no_grad():
            u = model(x_t, t, torch.full_like(labels, NULL_LABEL)).double()  # eps_theta(x_t, t)
            c = model(x_t, t, labels).double()  # eps_theta(x_t, t, y)
            zero = model(x_t, t, torch.zeros_like(labels)).double()
        model.calls.clear()
        with torch.no_grad():
            got = call(fn, model, x_t.clone(), t.clone(), labels.clone(), s, what="guided_eps")
        swapped = ("swapped the halves: the doubled batch puts the unconditional half first, "
                   "torch.cat([null_labels, labels]), and .chunk(2) returns (eps_uncond, eps_cond).")
        mistakes = _guidance_mistakes(u, c, s, swapped)
        mistakes.update({
            f"used label 0 as \"no label\"; 0 is a digit, the null label is NULL_LABEL = {NULL_LABEL}.":
                zero + s * (c - zero),
            "both halves got the labels: the unconditional half needs the null label "
            f"(NULL_LABEL = {NULL_LABEL}).": c,
        })
        context = f"B={batch}, guidance_scale={s}, labels={labels.tolist()}"
        compare("guided eps", got, u + s * (c - u), mistakes=mistakes, context=context)
        if model.calls != [2 * batch]:
            raise CheckFailed(
                f"guided_eps ({context}): the value is right, but the model was called {len(model.calls)} "
                f"time(s) with batches {model.calls}; run ONE forward pass on the doubled batch "
                f"torch.cat([x_t, x_t]) ({2 * batch} images). {ONE_PASS_REASON}"
            )
    passed("guided_eps", trials)
