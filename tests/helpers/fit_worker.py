"""One process of a distributed ``train.fit`` run (launched by tests/test_train_distributed.py).

    torchrun --nproc_per_node 2 tests/helpers/fit_worker.py RUN.safetensors STEPS [--resume]

A tiny UNet on 32 random binary digits, batch 8 in 2 shards, checkpoints every 2 steps.
"""

from __future__ import annotations

import sys

import torch

from sdcourse.schedules import NoiseSchedule
from sdcourse.train import TrainConfig, ddpm_loss, fit
from sdcourse.unet import UNet, UNetConfig


def data():
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(32, 1, 28, 28, generator=gen) > 0.7).float() * 2 - 1
    return images, torch.randint(0, 10, (32,), generator=gen)


def run(path, steps: int, resume: bool = False):
    torch.manual_seed(0)
    schedule = NoiseSchedule.linear(100)
    config = TrainConfig(steps=steps, batch_size=8, shards=2, lr=1e-3, checkpoint_every=2)
    meta = {"kind": "ddpm", "model_config": UNetConfig.tiny().to_dict()}
    return fit(UNet(UNetConfig.tiny()), lambda m, x, y, g: ddpm_loss(m, schedule, x, y, g), data(), config,
               path, meta, resume=resume, progress=False)


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(sys.argv[1], int(sys.argv[2]), resume="--resume" in sys.argv)
