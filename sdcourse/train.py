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
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import checkpoint, stopping, validate
from .schedules import NoiseSchedule
from .unet import NULL_LABEL

Tensor = torch.Tensor


MAX_BATCH = 65_536  # images per step; far more than fits in memory for the course's models is refused up front


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
    shards: int = 1  # the batch in this many parts, each with its own noise: one per process, or in turn

    def __post_init__(self):  # each field checked and named (validate); shards must divide the batch
        validate.integer("steps", self.steps, low=1)
        validate.integer("batch_size", self.batch_size, low=1, high=MAX_BATCH)
        validate.number("lr", self.lr, low=0, high=1e3, low_open=True)
        validate.number("weight_decay", self.weight_decay, low=0)
        validate.number("ema_decay", self.ema_decay, low=0, high=1, high_open=True)
        validate.number("label_dropout", self.label_dropout, low=0, high=1)
        validate.integer("checkpoint_every", self.checkpoint_every, low=1)
        validate.integer("seed", self.seed, low=0)
        if self.minutes is not None:
            validate.number("minutes", self.minutes, low=0, low_open=True)
        validate.integer("shards", self.shards, low=1, high=self.batch_size)
        if self.batch_size % self.shards:
            raise ValueError(f"shards={self.shards} must divide batch_size={self.batch_size}")


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator for one step: a function of (seed, step) only, which makes resume exact."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


DDPM_PREDICTIONS = ("eps", "v")  # what the network outputs: the noise (Ho et al.), or v (Salimans & Ho)


def ddpm_loss(model: nn.Module, schedule: NoiseSchedule, x0: Tensor, labels: Tensor | None, gen: torch.Generator,
              label_dropout: float = 0.1, prediction: str = "eps", min_snr_gamma: float | None = None) -> Tensor:
    """Ho et al. Algorithm 1: || eps - eps_theta(sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t, y) ||^2.

    t ~ Uniform{0..T-1}, eps ~ N(0, I); each label is replaced by NULL_LABEL with probability
    ``label_dropout`` so that one network learns both eps(x_t, t, y) and eps(x_t, t). Issue 18's
    variants (off by default): ``prediction="v"`` regresses v = sqrt(ab_t) eps - sqrt(1 - ab_t) x0
    (Salimans & Ho 2022, arXiv:2202.00512, Sec. 4), and ``min_snr_gamma`` weighs each sample by
    min(SNR_t, gamma) / SNR_t for eps, / (SNR_t + 1) for v (Hang et al. 2023, arXiv:2303.09556, Eq. 8-9).
    """
    validate.one_of("prediction", prediction, DDPM_PREDICTIONS)
    if min_snr_gamma is not None:
        validate.number("min_snr_gamma", min_snr_gamma, low=0, low_open=True)
    b = validate.nonempty("x0", x0).shape[0]  # the mean of an empty batch is NaN
    t = torch.randint(0, schedule.num_steps, (b,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    if labels is not None:
        drop = torch.rand(b, generator=gen) < label_dropout
        labels = labels.masked_fill(drop.to(labels.device), NULL_LABEL)
    t, eps = t.to(x0.device), eps.to(x0.device, x0.dtype)
    x_t = schedule.add_noise(x0, eps, t)  # Eq. 4
    target = eps if prediction == "eps" else schedule.v_target(x0, eps, t)
    if min_snr_gamma is None:
        return F.mse_loss(model(x_t, t, labels), target)  # the "simple" loss, Eq. 14
    snr = schedule.snr(t.cpu()).to(x0.device)
    weight = (snr.clamp(max=min_snr_gamma) / (snr if prediction == "eps" else snr + 1)).to(x0.dtype)
    return (weight * (model(x_t, t, labels) - target).pow(2).flatten(1).mean(1)).mean()


RESUME_FIXED = ("batch_size", "lr", "weight_decay", "ema_decay", "label_dropout", "seed", "shards")  # what ran


class NonFiniteLoss(ValueError):
    """Training diverged: the loss (or the weights) stopped being finite at ``step``."""


def check_resume_config(saved: dict, config: TrainConfig, path) -> None:
    """A ValueError naming every field of ``RESUME_FIXED`` that differs from the run being resumed.

    The optimizer keeps its state and the batches their seed, so a changed learning rate, seed or
    batch size would run one thing and record another: refused (the budget fields may change).
    """
    now = asdict(config)
    changed = [f"--{k.replace('_', '-')} was {saved[k]!r}, now {now[k]!r}" for k in RESUME_FIXED
               if k in saved and saved[k] != now[k]]
    if changed:
        raise ValueError(f"cannot resume {path} with different settings ({'; '.join(changed)}): resume with the "
                         "values it was started with, or start a new run (another --out, or --force)")


LossFn = Callable[[nn.Module, Tensor, Tensor, torch.Generator], Tensor]


@dataclass
class FitResult:
    model: nn.Module  # the trained weights
    ema: nn.Module  # their exponential moving average (what samplers should use)
    step: int  # steps done in total, including those before a resume
    losses: list[float]  # one per step, including those before a resume
    seconds: float  # wall time of this run and the runs it resumed
    step_seconds: list[float]  # wall time of each step of this call (for speed measurements)


def shard_generator(seed: int, step: int, shard: int) -> torch.Generator:
    """The generator of one shard of one step's batch; shard 0 uses the step's own generator."""
    return step_generator(seed, step) if shard == 0 else torch.Generator().manual_seed(
        (seed * 1_000_003 + step) * 1_009 + shard)


def fit(model: nn.Module, loss_fn: LossFn, data: tuple[Tensor, Tensor], config: TrainConfig,
        path: str | Path | None = None, meta: dict | None = None, resume: bool = False, progress: bool = True,
        stop_after: int | None = None, monitor=None) -> FitResult:
    """Train ``model`` on ``data`` = (images (N, ...), labels (N,)) with ``loss_fn(model, x, y, gen)``.

    The one training loop of the course: the DDPM, the VAEs, the latent DDPM, the classifier, the
    lessons' short in-memory runs and the benchmarks all call it. Each step draws a batch of
    ``config.batch_size`` indices from ``step_generator(seed, step)``, cuts it into
    ``config.shards`` shards, averages the shards' losses (each shard draws its noise from
    ``shard_generator``), takes one AdamW step and updates the EMA.

    Several processes (``torchrun --nproc_per_node N``, N dividing ``shards``) each run their
    share of the shards and ``accelerate`` averages the gradients: the same arithmetic as one
    process running every shard, so N processes follow one process to float tolerance. Only the
    main process writes checkpoints.

    ``path`` None trains in memory (no checkpoints, no resume). Otherwise checkpoints go to
    ``path`` with ``meta`` (must hold ``kind`` and ``model_config``; both are checked on resume),
    and ``resume=True`` continues from ``path`` (refused if a field of ``RESUME_FIXED`` changed).
    SIGINT/SIGTERM end the run after the current step with a checkpoint (``stopping.Interrupted``);
    a loss or weights that stop being finite end it with ``NonFiniteLoss`` naming the step, the
    last good checkpoint left as it was. ``stop_after`` ends the run after that many steps
    of this call without the final checkpoint, as if killed (for tests). ``monitor(step, ema)``, if
    given, runs at every checkpoint and its dict (e.g. an accuracy estimate) joins the progress bar.
    """
    from accelerate import Accelerator  # lazy: accelerate imports its whole stack in about a second

    if path is None and resume:
        raise ValueError("resume=True needs the path of the checkpoint to resume from")
    path = None if path is None else Path(path)
    meta = json.loads(json.dumps(meta or {}))  # as stored: tuples become lists, so resume compares like with like
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    processes, rank = accelerator.num_processes, accelerator.process_index
    if config.shards % processes:
        raise ValueError(f"shards={config.shards} must be a multiple of the number of processes ({processes})")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = copy.deepcopy(model).requires_grad_(False)
    start, losses, seconds_before = 0, [], 0.0
    if resume:
        tensors, saved = checkpoint.load(path)
        for key in ("kind", "model_config"):
            if saved.get(key) != meta.get(key):
                raise ValueError(f"cannot resume from {path}: its {key} {saved.get(key)!r} differs from "
                                 f"this run's {meta.get(key)!r}")
        check_resume_config(saved.get("train_config", {}), config, path)
        checkpoint.load_state_dict_strict(model, _prefixed(tensors, "model."), path)
        checkpoint.load_state_dict_strict(ema, _prefixed(tensors, "ema."), path)
        checkpoint.load_optimizer_state(optimizer, tensors, saved["optimizer_param_groups"])
        start, losses, seconds_before = saved["step"], saved["losses"], saved["seconds"]
    model, optimizer = accelerator.prepare(model, optimizer)
    images, labels = data
    device = accelerator.device
    my_shards = range(rank * config.shards // processes, (rank + 1) * config.shards // processes)

    def save(step: int, elapsed: float) -> None:
        weights = accelerator.unwrap_model(model).parameters()
        if not all(bool(p.detach().isfinite().all()) for p in weights):
            raise NonFiniteLoss(f"the weights stopped being finite by step {step} (learning rate {config.lr:g} too "
                                f"high?); not saved, so {path} keeps the last good checkpoint")
        opt_tensors, groups = checkpoint.optimizer_tensors(optimizer)
        tensors = {**{f"model.{k}": v for k, v in accelerator.unwrap_model(model).state_dict().items()},
                   **{f"ema.{k}": v for k, v in ema.state_dict().items()}, **opt_tensors}
        if accelerator.is_main_process:
            checkpoint.save(path, tensors, {**meta, "train_config": asdict(config), "step": step,
                                            "losses": losses, "seconds": elapsed,
                                            "optimizer_param_groups": groups})
        accelerator.wait_for_everyone()

    def train_step(step: int) -> float:
        index = torch.randint(0, len(images), (config.batch_size,), generator=step_generator(config.seed, step))
        total = torch.zeros((), device=device)
        optimizer.zero_grad(set_to_none=True)
        for shard in my_shards:
            gen = shard_generator(config.seed, step, shard)
            if shard == 0:
                torch.randint(0, len(images), (config.batch_size,), generator=gen)  # the index draw, as above
            part = index.chunk(config.shards)[shard]
            x = images[part].to(device)
            x = x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
            loss = loss_fn(model, x, labels[part].to(device), gen) / config.shards
            # N processes average their gradients, so each scales its share by N: the mean over all shards
            accelerator.backward(loss * processes)
            total += loss.detach()
        optimizer.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))  # warm-up: early EMA forgets the init
        with torch.no_grad():  # EMA: theta_ema <- d theta_ema + (1 - d) theta
            for e, p in zip(ema.parameters(), accelerator.unwrap_model(model).parameters(), strict=True):
                e.lerp_(p.detach(), 1 - decay)
        return accelerator.reduce(total, reduction="sum").item() if processes > 1 else total.item()

    began = time.perf_counter()
    step_seconds: list[float] = []
    shown: dict = {}  # the monitor's last values, kept on the bar
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps,
               disable=not progress or not accelerator.is_main_process,
               desc=meta.get("kind", "train") + (f" ({config.minutes:g} min budget)" if config.minutes else ""),
               mininterval=1.0)
    with stopping.graceful_stop() as stop:
        for step in bar:
            if stop_after is not None and step - start >= stop_after:
                return FitResult(accelerator.unwrap_model(model), ema, step, losses, 0.0, step_seconds)
            tick = time.perf_counter()
            loss = train_step(step)
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"the loss became {loss} at step {step} (learning rate {config.lr:g} too high?); "
                                    f"stopped there, {path or 'nothing'} keeps the last good checkpoint")
            losses.append(loss)
            step_seconds.append(time.perf_counter() - tick)
            elapsed = seconds_before + time.perf_counter() - began
            done = step + 1
            out_of_time = config.minutes is not None and elapsed > 60 * config.minutes
            last = done % config.checkpoint_every == 0 or done == config.steps or out_of_time or stop.requested
            if path is not None and last:
                save(done, elapsed)
            if monitor is not None and last and accelerator.is_main_process:
                shown.update(monitor(done, ema))
                if not bar.disable:
                    bar.write(f"step {done}: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", **shown,
                            img_s=f"{(done - start) * config.batch_size / (time.perf_counter() - began):.0f}")
            if stop.requested:
                bar.close()
                raise stopping.Interrupted(done, path)
            if out_of_time:
                break
    bar.close()
    return FitResult(accelerator.unwrap_model(model), ema, len(losses), losses,
                     seconds_before + time.perf_counter() - began, step_seconds)


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

