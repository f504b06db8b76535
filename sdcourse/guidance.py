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

Measuring what the scale buys and costs (lesson 04's sweep) is an experiment, in
``sdcourse.experiments.guidance_sweep``.
"""

from __future__ import annotations

import torch
from torch import nn

from . import validate
from .unet import NULL_LABEL  # 10: the class-embedding index meaning "no label"

Tensor = torch.Tensor
NUM_CLASSES = 10  # the digits 0..9 (the toy UNet's ``UNetConfig.num_classes``)


def classifier_free_guidance(eps_uncond: Tensor, eps_cond: Tensor, guidance_scale: float) -> Tensor:
    """The guided prediction eps_uncond + guidance_scale (eps_cond - eps_uncond); shapes must match."""
    validate.same_shape("eps_uncond", eps_uncond, "eps_cond", eps_cond)
    guidance_scale = guidance_scale_value(guidance_scale)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)  # Eq. 6, Ho and Salimans, w = scale - 1


# ---- validation ---------------------------------------------------------------------------------


def guidance_scale_value(guidance_scale) -> float:
    """``guidance_scale`` (a number, NumPy scalar or 0-d tensor) as a float >= 0, or a ValueError."""
    return validate.number("guidance_scale", guidance_scale, low=0,
                           meaning="(0 = unconditional, 1 = no guidance, the paper's w = guidance_scale - 1)")


def digit_labels(labels, batch: int, device: torch.device, name: str = "labels") -> Tensor:
    """``labels`` (an int, or int tensor of shape () or (B,)) as int64 (B,) digits 0..9, or a ValueError."""
    if labels is None:
        raise ValueError(f"{name} must be digits 0..{NUM_CLASSES - 1} for guidance, got None")
    labels = validate.integer_tensor(name, labels, device)
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
    return labels


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
    guidance_scale = guidance_scale_value(guidance_scale)
    batch = x_t.shape[0]
    labels = digit_labels(labels, batch, x_t.device)
    if negative_labels is None:
        uncond = torch.full((batch,), NULL_LABEL, dtype=torch.long, device=x_t.device)  # (B,)
    else:
        uncond = digit_labels(negative_labels, batch, x_t.device, name="negative_labels")
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
        self.guidance_scale = guidance_scale_value(guidance_scale)
        if negative_label is not None:
            negative_label = validate.integer_tensor("negative_label", negative_label)
            batch = negative_label.numel() if negative_label.ndim else 1
            digit_labels(negative_label, batch, torch.device("cpu"), name="negative_label")
        self.negative_label = negative_label  # None, or an int64 tensor of shape () or (B,)

    @property
    def config(self):
        """The wrapped model's config (sample shape, classes): code that reads ``model.config`` still works."""
        return self.model.config

    def forward(self, x_t: Tensor, t: Tensor, labels=None) -> Tensor:
        """Guided eps for x_t (B, C, H, W), t (B,), labels (B,) digits 0..9 -> (B, C, H, W)."""
        batch = x_t.shape[0]
        labels = digit_labels(labels, batch, x_t.device)
        negative = None if self.negative_label is None else self.negative_label.to(x_t.device)
        if self.guidance_scale == 1.0:
            return self.model(x_t, t, labels)  # the conditional half alone
        if self.guidance_scale == 0.0:
            if negative is None:
                return self.model(x_t, t, torch.full_like(labels, NULL_LABEL))  # the unconditional half alone
            return self.model(x_t, t, digit_labels(negative, batch, x_t.device, name="negative_label"))
        return guided_eps(self.model, x_t, t, labels, self.guidance_scale, negative)

    def __repr__(self) -> str:
        negative = None if self.negative_label is None else self.negative_label.tolist()
        return (f"GuidedModel({type(self.model).__name__}, guidance_scale={self.guidance_scale}, "
                f"negative_label={negative})")
