"""Issue 18's recipe search: what makes lesson 02's DDPM reach good digits in fewer steps.

Each ``Recipe`` changes one thing of ``ddpm_mnist``'s recipe (those named "a+b", two) (lesson 02's loss, uniform t, eps
prediction, AdamW at 1.5e-3, batch 128, EMA 0.999 with warm-up, the 0.4 M-parameter UNet):
the prediction target (v, Salimans & Ho 2022), the Min-SNR-gamma loss weights (Hang et al. 2023),
the EMA's decay, the learning rate, the batch, the noise schedule, the UNet's width, or random
shifts of the training digits (augmentation). ``accuracy_curve`` trains one from scratch through
the course's one training loop (``train.fit``, in chunks that resume exactly) and after each chunk
samples its EMA with DDIM-50 and reads the digits with the course classifier: accuracy against
training steps, which does not depend on how busy the machine is (seconds do; they are recorded
beside).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .. import evaluate, validate
from ..data import load_mnist
from ..samplers import DDIMSampler
from ..sampling import sample
from ..schedules import EpsFromV, NoiseSchedule
from ..train import TrainConfig, ddpm_loss, fit
from ..unet import UNet, UNetConfig

Tensor = torch.Tensor
LINEAR_SCHEDULE = {"name": "linear", "num_steps": 1000}  # ddpm_mnist's (runs.DDPM_SCHEDULE)


@dataclass(frozen=True)
class Recipe:
    """One way to train the DDPM: ``ddpm_mnist``'s unless a field says otherwise."""

    name: str
    prediction: str = "eps"  # "eps" or "v" (train.ddpm_loss)
    min_snr_gamma: float | None = None  # Min-SNR-gamma loss weights; None = the simple loss
    lr: float = 1.5e-3
    batch_size: int = 128
    ema_decay: float = 0.999
    schedule: dict = field(default_factory=lambda: dict(LINEAR_SCHEDULE))
    channels: tuple[int, ...] = UNetConfig.channels  # the UNet's width per level
    max_shift: int = 0  # augmentation: each training digit moved by up to this many pixels (0 = none)

    def model_config(self) -> UNetConfig:
        return UNetConfig(channels=self.channels)

    def loss(self, schedule: NoiseSchedule):
        def loss(m, x, y, gen):
            x = random_shift(x, self.max_shift, gen) if self.max_shift else x
            return ddpm_loss(m, schedule, x, y, gen, 0.1, self.prediction, self.min_snr_gamma)
        return loss


def random_shift(x: Tensor, max_shift: int, gen: torch.Generator, background: float = -1.0) -> Tensor:
    """Each image of ``x`` (B, C, H, W) moved by its own (dy, dx), uniform in [-max_shift, max_shift],
    the uncovered border filled with ``background`` (MNIST's -1): translation augmentation."""
    validate.integer("max_shift", max_shift, low=0)
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=background)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=gen).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


RECIPES = {r.name: r for r in (
    Recipe("baseline"),
    Recipe("v-prediction", prediction="v"),
    Recipe("min-snr-5", min_snr_gamma=5.0),
    Recipe("ema-0.995", ema_decay=0.995),
    Recipe("lr-3e-3", lr=3e-3),
    Recipe("batch-64", batch_size=64),
    Recipe("cosine-schedule", schedule={"name": "cosine", "num_steps": 1000}),
    Recipe("width-24", channels=(24, 48, 96)),  # 2.2x the parameters; compare it in seconds, not steps
    Recipe("shift-2", max_shift=2),
    Recipe("v+min-snr-5", prediction="v", min_snr_gamma=5.0),  # the two that helped, together
    Recipe("v+lr-3e-3", prediction="v", lr=3e-3),
    Recipe("v+batch-64", prediction="v", batch_size=64),
)}


def eps_model(model: nn.Module, prediction: str, schedule: NoiseSchedule) -> nn.Module:
    """What a sampler calls: the model itself for eps, behind ``EpsFromV`` for v."""
    return EpsFromV(model, schedule) if prediction == "v" else model


@torch.no_grad()
def ddim_accuracy(model: nn.Module, prediction: str, schedule: NoiseSchedule, n: int, steps: int = 50) -> float:
    """Conditional accuracy (the course classifier) of ``n`` DDIM-``steps`` digits of ``model``, every
    digit equally often, from fixed noise (seed 1): the check of the recipe search and of the
    ten-minute run's progress bar."""
    labels = torch.arange(n) % 10
    x0 = sample(eps_model(model.eval(), prediction, schedule), DDIMSampler(schedule, steps), (n, 1, 28, 28), labels,
                torch.Generator().manual_seed(1), progress=False)
    return evaluate.conditional_accuracy(x0, labels)


def accuracy_curve(recipe: Recipe, checks: list[int], eval_n: int = 300, seed: int = 0,
                   model_config: UNetConfig | None = None, stop_at: float | None = None,
                   max_seconds: float | None = None, progress: bool = True) -> list[dict]:
    """Train ``recipe`` from scratch; at each step count in ``checks`` (increasing), the DDIM-50
    conditional accuracy of its EMA on ``eval_n`` digits (equal counts per digit, noise seed 1),
    with the training seconds so far. Stops early once the accuracy reaches ``stop_at``, or after the
    check at which training has taken more than ``max_seconds``."""
    checks = [validate.integer("check", c, 1) for c in checks]
    if checks != sorted(set(checks)):
        raise ValueError(f"checks must be increasing step counts, got {checks}")
    digits = load_mnist("train", verbose=False)
    schedule = NoiseSchedule.from_config(recipe.schedule)
    model_config = model_config or recipe.model_config()
    torch.manual_seed(seed)
    model = UNet(model_config).to(memory_format=torch.channels_last)
    meta = {"kind": "ddpm", "model_config": model_config.to_dict()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.safetensors"
        for i, steps in enumerate(tqdm(checks, desc=recipe.name, disable=not progress)):
            cfg = TrainConfig(steps=steps, batch_size=recipe.batch_size, lr=recipe.lr, ema_decay=recipe.ema_decay,
                              checkpoint_every=steps, seed=seed)
            result = fit(model, recipe.loss(schedule), (digits.images, digits.labels), cfg, path, meta,
                         resume=i > 0, progress=False)
            began = time.perf_counter()
            accuracy = ddim_accuracy(result.ema, recipe.prediction, schedule, eval_n)
            rows.append({"step": steps, "train_seconds": round(result.seconds, 1), "accuracy": accuracy,
                         "accuracy_binomial_sd": (accuracy * (1 - accuracy) / eval_n) ** 0.5,
                         "check_seconds": round(time.perf_counter() - began, 1)})
            model = result.model
            reached = stop_at is not None and accuracy >= stop_at
            if reached or (max_seconds is not None and result.seconds > max_seconds):
                break
    return rows
