"""Training: one small loop for every model of the course (lessons 02, 05, 07; ``sdcourse train``).

``fit(model, loss_fn, data, config, path)`` runs AdamW with an EMA copy of the weights, under
``accelerate`` (the same code on a CPU, one GPU, or several with ``accelerate launch``), with a
tqdm bar showing the loss and images per second, a budget in steps and/or minutes, and atomic
safetensors checkpoints every ``checkpoint_every`` steps that hold everything needed to resume:
weights, EMA weights, optimizer state, step and loss history.

Exact resume: every step draws its batch, timesteps, noise and label dropout from a generator
seeded by (seed, step) alone, so a run killed and resumed from its checkpoint performs the same
arithmetic as one never interrupted (on a CPU, bit for bit).

``ddpm_loss`` is the simple objective of Ho et al. 2020 (arXiv:2006.11239), Algorithm 1, with label
dropout for classifier-free guidance (Ho and Salimans 2022, arXiv:2207.12598).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import checkpoint
from .schedules import NoiseSchedule
from .unet import NULL_LABEL

Tensor = torch.Tensor


@dataclass(frozen=True)
class TrainConfig:
    """How long and how to train. Presets live with each model's command in ``cli.py``."""

    steps: int = 4000  # optimizer steps: the budget, unless `minutes` runs out first
    minutes: float | None = None  # wall-clock budget; on expiry the run checkpoints and stops
    batch_size: int = 128  # images per step
    lr: float = 1e-3  # AdamW learning rate; small models on MNIST tolerate this comfortably
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    ema_decay: float = 0.999  # EMA of the weights, sampled from instead of the raw weights
    label_dropout: float = 0.1  # fraction of labels replaced by "no label" (classifier-free guidance)
    checkpoint_every: int = 250  # steps between checkpoints (and always at the end)
    seed: int = 0  # the whole run (init, batches, noise) is a function of this seed

    def __post_init__(self):
        checks = {
            "steps": self.steps >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
            "checkpoint_every": self.checkpoint_every >= 1, "ema_decay": 0 <= self.ema_decay < 1,
            "label_dropout": 0 <= self.label_dropout <= 1, "weight_decay": self.weight_decay >= 0,
            "minutes": self.minutes is None or self.minutes > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is out of range (see TrainConfig)")


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator for one step: a function of (seed, step) only, which makes resume exact."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def ddpm_loss(model: nn.Module, schedule: NoiseSchedule, x0: Tensor, labels: Tensor | None,
              gen: torch.Generator, label_dropout: float = 0.1) -> Tensor:
    """Ho et al. Algorithm 1: || eps - eps_theta(sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t, y) ||^2.

    t ~ Uniform{0..T-1}, eps ~ N(0, I); each label is replaced by NULL_LABEL with probability
    ``label_dropout`` so that one network learns both eps(x_t, t, y) and eps(x_t, t).
    """
    b = x0.shape[0]
    t = torch.randint(0, schedule.num_steps, (b,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    if labels is not None:
        drop = torch.rand(b, generator=gen) < label_dropout
        labels = labels.masked_fill(drop.to(labels.device), NULL_LABEL)
    t, eps = t.to(x0.device), eps.to(x0.device, x0.dtype)
    x_t = schedule.add_noise(x0, eps, t)  # Eq. 4
    return F.mse_loss(model(x_t, t, labels), eps)  # the "simple" loss, Eq. 14


LossFn = Callable[[nn.Module, Tensor, Tensor, torch.Generator], Tensor]


@dataclass
class FitResult:
    model: nn.Module  # the trained weights
    ema: nn.Module  # their exponential moving average (what samplers should use)
    step: int  # steps done in total, including those before a resume
    losses: list[float]  # one per step, including those before a resume
    seconds: float  # wall time of this run and the runs it resumed


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], list]:
    state = optimizer.state_dict()
    tensors = {f"optim.{i}.{name}": value for i, entry in state["state"].items()
               for name, value in entry.items()}
    return tensors, state["param_groups"]


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], groups: list) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def fit(model: nn.Module, loss_fn: LossFn, data: tuple[Tensor, Tensor], config: TrainConfig,
        path: str | Path, meta: dict, resume: bool = False, progress: bool = True,
        stop_after: int | None = None) -> FitResult:
    """Train ``model`` on ``data`` = (images (N, ...), labels (N,)) with ``loss_fn(model, x, y, gen)``.

    Writes checkpoints to ``path`` with ``meta`` (must hold ``kind`` and ``model_config``; both are
    checked on resume). ``resume=True`` continues from ``path``. ``stop_after`` ends the run after
    that many steps of this call without the final checkpoint, as if killed (for tests).
    """
    from accelerate import Accelerator

    path = Path(path)
    meta = json.loads(json.dumps(meta))  # as stored: tuples become lists, so resume compares like with like
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = copy.deepcopy(model).requires_grad_(False)
    start, losses, seconds_before = 0, [], 0.0
    if resume:
        tensors, saved = checkpoint.load(path)
        for key in ("kind", "model_config"):
            if saved.get(key) != meta.get(key):
                raise ValueError(f"cannot resume from {path}: its {key} {saved.get(key)!r} differs from "
                                 f"this run's {meta.get(key)!r}")
        checkpoint.load_state_dict_strict(model, _prefixed(tensors, "model."), path)
        checkpoint.load_state_dict_strict(ema, _prefixed(tensors, "ema."), path)
        _load_optimizer(optimizer, tensors, saved["optimizer_param_groups"])
        start, losses, seconds_before = saved["step"], saved["losses"], saved["seconds"]
    model, optimizer = accelerator.prepare(model, optimizer)
    images, labels = data
    device = accelerator.device

    def save(step: int, elapsed: float) -> None:
        opt_tensors, groups = _optimizer_tensors(optimizer)
        tensors = {**{f"model.{k}": v for k, v in accelerator.unwrap_model(model).state_dict().items()},
                   **{f"ema.{k}": v for k, v in ema.state_dict().items()}, **opt_tensors}
        checkpoint.save(path, tensors, {**meta, "train_config": asdict(config), "step": step,
                                        "losses": losses, "seconds": elapsed,
                                        "optimizer_param_groups": groups})

    began = time.perf_counter()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress,
               desc=meta.get("kind", "train"), mininterval=1.0)
    step = start
    for step in bar:
        if stop_after is not None and step - start >= stop_after:
            return FitResult(accelerator.unwrap_model(model), ema, step, losses, 0.0)
        gen = step_generator(config.seed, step)
        index = torch.randint(0, len(images), (config.batch_size,), generator=gen)
        x = images[index].to(device).contiguous(memory_format=torch.channels_last) if images.ndim == 4 \
            else images[index].to(device)
        loss = loss_fn(model, x, labels[index].to(device), gen)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))  # warm-up: early EMA forgets the init
        with torch.no_grad():  # EMA: theta_ema <- d theta_ema + (1 - d) theta
            for e, p in zip(ema.parameters(), accelerator.unwrap_model(model).parameters(), strict=True):
                e.lerp_(p.detach(), 1 - decay)
        losses.append(loss.item())
        elapsed = seconds_before + time.perf_counter() - began
        done = step + 1
        bar.set_postfix(loss=f"{losses[-1]:.4f}",
                        img_s=f"{(done - start) * config.batch_size / (time.perf_counter() - began):.0f}")
        out_of_time = config.minutes is not None and elapsed > 60 * config.minutes
        if done % config.checkpoint_every == 0 or done == config.steps or out_of_time:
            save(done, elapsed)
        if out_of_time:
            break
    bar.close()
    return FitResult(accelerator.unwrap_model(model), ema, len(losses),
                     losses, seconds_before + time.perf_counter() - began)


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def smoothed(losses: list[float], window: int = 50) -> list[float]:
    """Moving average of a loss curve, for plots (window shrinks at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(losses):
        total += value
        if i >= window:
            total -= losses[i - window]
        out.append(total / min(i + 1, window))
    return out

