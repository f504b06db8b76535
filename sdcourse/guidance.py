"""Classifier-free guidance (Ho and Salimans 2022, arXiv:2207.12598), lessons 04 and 08.

One model predicts the noise twice, with and without the condition, and the sampler extrapolates
from the unconditional prediction towards the conditional one:

    eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)

Convention (``diffusers``'): ``guidance_scale`` = 1 is the plain conditional prediction (no
guidance), 0 the unconditional one. The paper writes eps = (1 + w) eps_cond - w eps_uncond, so its
w equals ``guidance_scale - 1``: Stable Diffusion's default 7.5 is the paper's w = 6.5.

The model learns both predictions at once through label dropout: during training the label is
replaced by the "no label" entry ``NULL_LABEL`` some of the time (Ho and Salimans, Algorithm 1), so
``model(x_t, t, NULL_LABEL)`` is the unconditional eps_theta(x_t, t). Sampling then runs both halves
in ONE forward pass on a doubled batch, unconditional half first, as ``diffusers``' pipelines do:

    model(cat([x_t, x_t]), cat([t, t]), cat([null, labels])).chunk(2) -> eps_uncond, eps_cond

Guidance away from a label (a "negative label", the analogue of Stable Diffusion's negative
prompt) puts that label where the null label was: the sampler then extrapolates from "a 3" towards
"a 5" rather than from "any digit", so samples of 5 move away from whatever makes a digit look
like a 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .unet import NULL_LABEL  # 10: the class-embedding index meaning "no label"

Tensor = torch.Tensor
NUM_CLASSES = 10  # the digits 0..9 (the toy UNet's ``UNetConfig.num_classes``)


def classifier_free_guidance(eps_uncond: Tensor, eps_cond: Tensor, guidance_scale: float) -> Tensor:
    """The guided prediction eps_uncond + guidance_scale (eps_cond - eps_uncond); shapes must match."""
    if eps_uncond.shape != eps_cond.shape:
        raise ValueError(
            f"eps_uncond and eps_cond must have the same shape, got {tuple(eps_uncond.shape)} "
            f"and {tuple(eps_cond.shape)}"
        )
    if not guidance_scale >= 0:
        raise ValueError(f"guidance_scale must be >= 0 (1 = no guidance), got {guidance_scale!r}")
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)  # Eq. 6, Ho and Salimans, w = scale - 1


# ---- validation ---------------------------------------------------------------------------------


def check_guidance_scale(guidance_scale) -> float:
    """``guidance_scale`` as a float, or a ValueError unless it is a finite number >= 0."""
    if (
        isinstance(guidance_scale, bool)
        or not isinstance(guidance_scale, (int, float))
        or not math.isfinite(guidance_scale)
        or guidance_scale < 0
    ):
        raise ValueError(
            f"guidance_scale must be a finite number >= 0 (0 = unconditional, 1 = no guidance, "
            f"the paper's w = guidance_scale - 1), got {guidance_scale!r}"
        )
    return float(guidance_scale)


def check_labels(labels, batch: int, device: torch.device, name: str = "labels") -> Tensor:
    """``labels`` (an int, or int tensor of shape () or (B,)) as int64 (B,) digits 0..9, or a ValueError."""
    if labels is None:
        raise ValueError(f"{name} must be digits 0..{NUM_CLASSES - 1} for guidance, got None")
    if isinstance(labels, bool):
        raise ValueError(f"{name} must be digits 0..{NUM_CLASSES - 1}, got {labels!r}")
    labels = torch.as_tensor(labels, device=device)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"{name} must be integers 0..{NUM_CLASSES - 1}, got dtype {labels.dtype}")
    if labels.ndim == 0:
        labels = labels.expand(batch)  # () -> (B,)
    if labels.shape != (batch,):
        raise ValueError(f"{name} must be an int or have shape (B,) = ({batch},), got {tuple(labels.shape)}")
    bad = labels[(labels < 0) | (labels >= NUM_CLASSES)]
    if bad.numel():
        raise ValueError(
            f"{name} must be digits 0..{NUM_CLASSES - 1} (the null label {NULL_LABEL} is added by guidance "
            f"itself), got {int(bad[0])}"
        )
    return labels.long()


# ---- one batched forward pass -------------------------------------------------------------------


def guided_eps(
    model,
    x_t: Tensor,
    t: Tensor,
    labels,
    guidance_scale: float,
    negative_labels=None,
) -> Tensor:
    """The guided noise prediction from ONE forward pass of ``model`` on a doubled batch.

    Args:
        model: ``model(x_t, t, labels) -> eps``, trained with label dropout (``NULL_LABEL`` = no label).
        x_t: the current samples, (B, C, H, W).
        t: integer timesteps, (B,) or a scalar.
        labels: the digits to guide towards, an int or int64 (B,) in 0..9.
        guidance_scale: 0 = unconditional, 1 = conditional (no guidance), > 1 = guided;
            the paper's w is ``guidance_scale - 1``.
        negative_labels: digits to guide away from (an int or (B,) in 0..9), used in place of the
            null label in the unconditional half; None for plain classifier-free guidance.
    Returns:
        eps_uncond + guidance_scale (eps_cond - eps_uncond), (B, C, H, W).
    """
    guidance_scale = check_guidance_scale(guidance_scale)
    batch = x_t.shape[0]
    labels = check_labels(labels, batch, x_t.device)
    if negative_labels is None:
        uncond = torch.full((batch,), NULL_LABEL, dtype=torch.long, device=x_t.device)  # (B,)
    else:
        uncond = check_labels(negative_labels, batch, x_t.device, name="negative_labels")
    t = torch.as_tensor(t, device=x_t.device)
    t = t.expand(batch) if t.ndim == 0 else t  # () -> (B,)
    # unconditional half first, as diffusers' pipelines: (B, ...) -> (2B, ...)
    eps = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([uncond, labels]))
    eps_uncond, eps_cond = eps.chunk(2)  # (2B, C, H, W) -> 2 x (B, C, H, W)
    return classifier_free_guidance(eps_uncond, eps_cond, guidance_scale)


class GuidedModel(nn.Module):
    """A model with classifier-free guidance built in, for ``samplers.sample``'s ``model`` argument.

    ``GuidedModel(model, guidance_scale, negative_label)(x_t, t, labels)`` returns ``guided_eps``:
    the same call signature as ``model``, so ``sample(GuidedModel(unet, 3.0), sampler, shape,
    labels=labels)`` samples with guidance. At scale 1 (and at scale 0 without a negative label)
    one half of the doubled batch would be thrown away, so, as ``diffusers`` does, it runs only the
    half it needs: scale 1 then gives exactly the conditional model's samples, at half the cost.

    Args:
        model: ``model(x_t, t, labels) -> eps`` with the null label ``NULL_LABEL``.
        guidance_scale: 0 = unconditional, 1 = no guidance; the paper's w = guidance_scale - 1.
        negative_label: a digit 0..9 (or int64 (B,) of them) to guide away from; None = null label.
    """

    def __init__(self, model, guidance_scale: float, negative_label=None):
        super().__init__()
        self.model = model
        self.guidance_scale = check_guidance_scale(guidance_scale)
        if negative_label is not None:
            if isinstance(negative_label, bool):
                raise ValueError(f"negative_label must be a digit 0..{NUM_CLASSES - 1}, got {negative_label!r}")
            negative_label = torch.as_tensor(negative_label)
            batch = negative_label.numel() if negative_label.ndim else 1
            check_labels(negative_label, batch, torch.device("cpu"), name="negative_label")
        self.negative_label = negative_label  # None, or an int64 tensor of shape () or (B,)

    @property
    def config(self):
        """The wrapped model's config (sample shape, classes): code that reads ``model.config`` still works."""
        return self.model.config

    def forward(self, x_t: Tensor, t: Tensor, labels=None) -> Tensor:
        """Guided eps for x_t (B, C, H, W), t (B,), labels (B,) digits 0..9 -> (B, C, H, W)."""
        batch = x_t.shape[0]
        labels = check_labels(labels, batch, x_t.device)
        negative = None if self.negative_label is None else self.negative_label.to(x_t.device)
        if self.guidance_scale == 1.0:
            return self.model(x_t, t, labels)  # the conditional half alone
        if self.guidance_scale == 0.0:
            if negative is None:
                return self.model(x_t, t, torch.full_like(labels, NULL_LABEL))  # the unconditional half alone
            return self.model(x_t, t, check_labels(negative, batch, x_t.device, name="negative_label"))
        return guided_eps(self.model, x_t, t, labels, self.guidance_scale, negative)

    def __repr__(self) -> str:
        negative = None if self.negative_label is None else self.negative_label.tolist()
        return (f"GuidedModel({type(self.model).__name__}, guidance_scale={self.guidance_scale}, "
                f"negative_label={negative})")


# ---- measuring the trade-off (lesson 04) --------------------------------------------------------


def balanced_labels(num_samples: int, num_classes: int = NUM_CLASSES) -> Tensor:
    """0, 1, ..., 9, 0, 1, ...: ``num_samples`` int64 labels, every digit equally often (+-1), (N,)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
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
    """Sample the same seeds at every guidance scale: {scale: x_0 (N, 1, 28, 28)}, on the CPU.

    Args:
        model: the class-conditional ``model(x_t, t, labels) -> eps`` (with the null label).
        make_sampler: ``() -> DDPMSampler | DDIMSampler``, a fresh sampler per batch.
        labels: int64 (N,) digits 0..9 to sample, one per image.
        scales: the guidance scales (each >= 0).
        seed: batch k draws x_T (and any sampler noise) from ``torch.Generator().manual_seed(seed + k)``,
            the same at every scale, so a column of a grid differs only by the scale.
        negative_label: a digit to guide away from, or None (the null label).
        batch_size: images per call of ``sample``.
        progress: one tqdm bar over all batches of all scales.
    """
    from tqdm.auto import tqdm

    from .samplers import sample

    scales = [check_guidance_scale(s) for s in scales]
    labels = check_labels(labels, len(labels), torch.device("cpu"))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    chunks = labels.split(batch_size)
    bar = tqdm(total=len(scales) * len(chunks), desc="sampling scales", disable=not progress)
    out = {}
    for scale in scales:
        guided, images = GuidedModel(model, scale, negative_label), []
        for k, y in enumerate(chunks):
            bar.set_postfix(scale=scale)
            gen = torch.Generator().manual_seed(seed + k)
            images.append(sample(guided, make_sampler(), (len(y), 1, 28, 28), labels=y, generator=gen,
                                 progress=False).cpu())
            bar.update()
        out[scale] = torch.cat(images)  # (N, 1, 28, 28)
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
    from . import evaluate

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
    fid_floor: float  # the FID of real digits against real digits at the same count (the best possible)
    diversity: float  # mean pairwise feature distance within a label: lower = more alike
    saturated: float  # fraction of pixels at pure black or white (|x| >= 0.98)


def measure_scales(samples: dict[float, Tensor], labels: Tensor, progress: bool = False) -> list[ScaleResult]:
    """Accuracy, FID, diversity and saturation of ``sample_at_scales``' output, one row per scale,
    with ``sdcourse.evaluate``'s shipped classifier.

    Args:
        samples: {guidance_scale: images (N, 1, 28, 28)} in [-1, 1], N <= 1,000 (the real test digits).
        labels: int64 (N,), the labels the samples were drawn for.
    """
    from tqdm.auto import tqdm

    from . import evaluate

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
        ))
    return rows
