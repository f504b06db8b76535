"""Argument checks that every layer repeats, each in one line at a function's boundary.

Each helper returns the value in its usable form (an ``int``, a ``float``, a ``long`` tensor) or
raises a ``ValueError`` that names the parameter, the value it got and what is allowed, so that the
function that calls it can read as its equation from the next line on. NumPy scalars and 0-d
tensors count as numbers; ``bool`` never does (``True`` is not a step count).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch

Tensor = torch.Tensor


def _range_text(low, high, low_open: bool = False, high_open: bool = False) -> str:
    """" in [0, 1]", " >= 1", " in (0, 1)" or "" (no bound): what the messages say is allowed."""
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def _scalar(value):
    """A Python scalar from a NumPy scalar or a one-element tensor; anything else unchanged."""
    if isinstance(value, Tensor) and value.numel() == 1 and value.ndim == 0:
        return value.item()
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalars and 0-d arrays
        return value.item()
    return value


def integer(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` in [low, high] (either end optional), or a ValueError naming ``name``."""
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer{_range_text(low, high)}, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer{_range_text(low, high)}, got {value}")
    return value


def number(name: str, value, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, meaning: str = "") -> float:
    """``value`` as a finite ``float`` within the bounds (open or closed), or a ValueError.

    ``meaning`` is appended to the message, e.g. "(0 = deterministic, 1 = DDPM-like)".
    """
    value = _scalar(value)
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = not ((low is not None and (v < low or (low_open and v == low)))
                  or (high is not None and (v > high or (high_open and v == high))))
    if not ok:
        suffix = f" {meaning}" if meaning else ""
        raise ValueError(f"{name} must be a finite number{_range_text(low, high, low_open, high_open)}{suffix}, "
                         f"got {value!r}")
    return float(value)


def one_of(name: str, value, choices: Iterable):
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def tensor(name: str, value) -> Tensor:
    """``value`` if it is a tensor, else a ValueError naming ``name`` and the type it got."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def floating_tensor(name: str, value) -> Tensor:
    """A real floating-point tensor (images, noise, latents), else a ValueError naming ``name``.

    Integer images would be noised in integer arithmetic, complex ones would lose their imaginary
    part: both are refused rather than silently changed.
    """
    value = tensor(name, value)
    if not value.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor (e.g. float32), got dtype {value.dtype}")
    return value


def integer_tensor(name: str, value, device: torch.device | str | None = None) -> Tensor:
    """``value`` (an int or an integer tensor) as an int64 tensor, or a ValueError naming ``name``."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name} must be an integer tensor, got {value!r}")
    try:
        value = torch.as_tensor(value, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be an integer tensor, got {type(value).__name__}") from err
    if value.dtype.is_floating_point or value.dtype == torch.bool or value.is_complex():
        raise ValueError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    return value.long()


def same_real_shape(name: str, value, like_name: str, like) -> None:
    """Both floating-point tensors (``floating_tensor``) of one shape (``same_shape``), or a ValueError."""
    same_shape(name, floating_tensor(name, value), like_name, floating_tensor(like_name, like))


def same_dtype(name: str, value: Tensor, like_name: str, like: Tensor) -> None:
    """A ValueError unless ``value`` has ``like``'s dtype (no silent promotion to float64)."""
    if value.dtype != like.dtype:
        raise ValueError(f"{name} must have the dtype of {like_name} ({like.dtype}), got {value.dtype}")


def same_shape(name: str, value: Tensor, like_name: str, like: Tensor, leading: bool = False) -> None:
    """A ValueError unless tensor ``value`` has the shape of ``like`` (no silent broadcasting).

    ``leading=True`` also allows extra leading dimensions, (S, *like.shape): S samples of one shape.
    """
    shape = tuple(value.shape[max(value.ndim - like.ndim, 0):]) if leading else tuple(value.shape)
    if shape != tuple(like.shape) or value.ndim < like.ndim:
        extra = " (or (S, *that))" if leading else ""
        raise ValueError(f"{name} must have the shape of {like_name} {tuple(like.shape)}{extra}, "
                         f"got {tuple(value.shape)}")


def nonempty(name: str, value: Tensor) -> Tensor:
    """``value`` unless its batch is empty (a mean over no samples is NaN), else a ValueError."""
    if value.ndim == 0 or value.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(value.shape)}): pass at least one sample")
    return value
