"""Where things live, which device to use, and whether to run the short version (fast mode).

Every lesson calls these, so a notebook behaves the same on a laptop, a GPU box and in CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"


_TRUE = {"1", "true", "yes", "on"}


def env_flag(name: str) -> bool:
    """True when the environment variable ``name`` is 1, true, yes or on (any case); else False."""
    return os.environ.get(name, "0").strip().lower() in _TRUE


def fast_mode() -> bool:
    """True when ``SDCOURSE_FAST=1``: notebooks shrink training, sample counts and steps."""
    return env_flag("SDCOURSE_FAST")


def offline() -> bool:
    """True when ``SDCOURSE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``: never try a download."""
    return env_flag("SDCOURSE_OFFLINE") or env_flag("HF_HUB_OFFLINE")


def pick(full, fast):
    """Return ``fast`` in fast mode and ``full`` otherwise: ``steps = pick(2000, 50)``."""
    return fast if fast_mode() else full


def home() -> Path:
    """The course cache (data, downloaded weights): ``$SDCOURSE_HOME``, default ``~/.cache/sdcourse``."""
    path = Path(os.environ.get("SDCOURSE_HOME", Path.home() / ".cache" / "sdcourse")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Where ``sdcourse train`` writes by default: ``$SDCOURSE_HOME/runs`` (never the repository)."""
    path = home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU (or ``prefer`` if given)."""
    if prefer is not None:
        try:
            chosen = torch.device(prefer)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {prefer!r}") from err
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={prefer!r} but this machine has no CUDA GPU; use device='cpu'")
        if chosen.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device={prefer!r} but Apple MPS is not available here; use device='cpu'")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
