"""The toy DDPM on a CPU: training speed against diffusers, sampling time, time to good digits.

    PYTHONPATH=. python bench/ddpm_cpu.py --threads 2                 # full: results/ddpm_cpu.json
    PYTHONPATH=. python bench/ddpm_cpu.py --skip speed sampling --recipe baseline --out /tmp/b.json  # the old recipe

Three measurements (issue 3, item 10):

1. Training images per second of ``sdcourse.unet.UNet`` (``UNetConfig.cpu()``, channels-last)
   and of a ``diffusers.UNet2DModel`` of similar parameter count (block_out_channels (16, 32, 32),
   layers_per_block 2, attention in the two lower levels: diffusers' default block layout, 11
   class embeddings), in the same loop, the course's one training loop ``train.fit`` (in memory):
   ``train.ddpm_loss`` on real MNIST batches of ``--batch-size``, backward, AdamW step. The two
   models run alternately, ``--rounds`` times, ``--steps`` timed steps each after one warm-up
   step; we report the median images/s of each and their ratio. The baseline gets its faster
   memory format (both are measured; the better counts).
2. Sampling time for 64 digits (one batch) with DDIM-50 and DDPM-1000, from the shipped
   ``checkpoints/ddpm_mnist.safetensors`` (random weights of the same shape if it is not there:
   the time does not depend on the weights).
3. Time to 90 %: wall time of loading the digits and training ``UNetConfig.cpu()`` from scratch
   with the recipe of ``sdcourse train ddpm --preset ten-minutes`` (``train_command.TEN_MINUTES_RECIPE``;
   ``--recipe NAME`` for one of ``experiments.ddpm_recipe.RECIPES``, "baseline" being ddpm_mnist's)
   until the EMA model first reaches 90 % conditional accuracy, checked every ``--check-every``
   steps on ``--eval-n`` DDIM-50 samples (equal counts per digit) with the course's classifier,
   within ``--minutes-to-90``. The checks are timed apart and the history (accuracy against wall
   time) is kept. The run is ``experiments.ddpm_recipe.accuracy_curve``: ``train.fit`` in chunks
   that resume exactly.

Threads: ``--threads`` (default 1). On an idle 2-core machine two threads train 1.6x as fast as
one (``bench/unet_speed.py``); on cores other processes also use, two torch threads wait on each
other at every barrier: on this course's shared machine one forward pass of the toy UNet took
13 ms (batch 4) with one thread and 355 ms with two.

The CPU may be shared with other work: the alternation keeps the ratio fair, absolute numbers are
what this machine gave at the time (the JSON records the load average before and after).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from bench.report import finish
from sdcourse import checkpoint, config, samplers
from sdcourse.data import load_mnist
from sdcourse.experiments.ddpm_recipe import RECIPES, accuracy_curve
from sdcourse.runs import DDPM_SCHEDULE
from sdcourse.schedules import NoiseSchedule
from sdcourse.train import TrainConfig, ddpm_loss, fit
from sdcourse.train_command import TEN_MINUTES_RECIPE
from sdcourse.unet import UNet, UNetConfig, count_parameters

RESULTS = Path(__file__).resolve().parent / "results"


class DiffusersUNet(nn.Module):
    """``diffusers.UNet2DModel`` behind our call signature ``model(x_t, t, labels) -> eps``."""

    def __init__(self, memory_format: torch.memory_format):
        super().__init__()
        from diffusers import UNet2DModel  # lazy: only this benchmark needs diffusers' UNet

        self.memory_format = memory_format  # train.fit hands over channels-last batches; convert if asked
        self.net = UNet2DModel(
            sample_size=28, in_channels=1, out_channels=1, block_out_channels=(16, 32, 32),
            layers_per_block=2, norm_num_groups=8, num_class_embeds=11,
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        )

    def forward(self, x_t, t, labels=None):
        labels = torch.full_like(t, 10) if labels is None else labels
        return self.net(x_t.contiguous(memory_format=self.memory_format), t, class_labels=labels).sample


def train_speed(args, digits) -> dict:
    """Median training images/s of each model, measured alternately in this process."""
    schedule = NoiseSchedule.from_config(DDPM_SCHEDULE)
    torch.manual_seed(0)
    ours = UNet(UNetConfig.cpu()).to(memory_format=torch.channels_last)
    base = DiffusersUNet(torch.contiguous_format)
    channels_last_base = copy.copy(base)  # the same weights, fed channels-last
    channels_last_base.memory_format = torch.channels_last
    models = {"sdcourse UNet (channels-last)": ours, "diffusers UNet2DModel (contiguous)": base,
              "diffusers UNet2DModel (channels-last)": channels_last_base}
    speeds: dict[str, list[float]] = {name: [] for name in models}

    def loss(m, x, y, gen):
        return ddpm_loss(m, schedule, x, y, gen)

    def run(name: str, steps: int, seed: int) -> float:
        model = models[name].to(memory_format=models[name].memory_format if name.startswith("diffusers")
                                else torch.channels_last)
        cfg = TrainConfig(steps=steps, batch_size=args.batch_size, lr=1.5e-3, seed=seed)
        result = fit(model, loss, (digits.images, digits.labels), cfg, path=None, progress=False)
        return steps * args.batch_size / sum(result.step_seconds)

    for name in models:
        run(name, 1, 0)  # warm-up: allocator, oneDNN kernels
    for r in range(args.rounds):
        for name in models:
            speeds[name].append(run(name, args.steps, 1 + r))
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{n.split()[0]} {s[-1]:.0f}" for n, s in speeds.items()))
    median = {name: statistics.median(s) for name, s in speeds.items()}
    baseline_name = max((n for n in median if n.startswith("diffusers")), key=median.get)
    return {
        "images_per_s": median, "all_rounds": speeds,
        "parameters": {"sdcourse UNet": count_parameters(ours),
                       "diffusers UNet2DModel": count_parameters(base)},
        "baseline": baseline_name, "ratio": median["sdcourse UNet (channels-last)"] / median[baseline_name],
    }


def sampling_time(args) -> dict:
    schedule = NoiseSchedule.from_config(DDPM_SCHEDULE)
    if (config.CHECKPOINTS_DIR / "ddpm_mnist.safetensors").exists():
        loaded = checkpoint.load_model("ddpm_mnist")
        model, schedule, weights = loaded.model, loaded.schedule, "checkpoints/ddpm_mnist.safetensors"
    else:
        model = UNet(UNetConfig.cpu()).to(memory_format=torch.channels_last).eval()
        weights = "random init of UNetConfig.cpu() (no shipped checkpoint; timing only)"
    labels = torch.arange(args.sample_n) % 10
    out = {"weights": weights, "n": args.sample_n}
    for name, sampler in (("DDIM-50", samplers.DDIMSampler(schedule, 50)),
                          ("DDPM-1000", samplers.DDPMSampler(schedule))):
        began = time.perf_counter()
        samplers.sample(model, sampler, (args.sample_n, 1, 28, 28), labels,
                        generator=torch.Generator().manual_seed(0), progress=False)
        out[name] = time.perf_counter() - began
        print(f"  {name}: {out[name]:.1f} s for {args.sample_n} digits")
    return out


def time_to_90(args, load_seconds: float) -> dict:
    """Train ``--recipe`` from scratch; every --check-every steps, DDIM-50 accuracy of the EMA, until 90 %.
    ``load_seconds``: this process's first load of the digits, what a fresh run pays before training."""
    recipe = (dataclasses.replace(TEN_MINUTES_RECIPE, name="ten-minutes") if args.recipe == "ten-minutes"
              else RECIPES[args.recipe])
    checks = list(range(args.check_every, 1_000_000, args.check_every))
    history = accuracy_curve(recipe, checks, args.eval_n, stop_at=0.9, max_seconds=60 * args.minutes_to_90,
                             progress=False)
    for h in history:
        h["wall_seconds"] = round(load_seconds + h["train_seconds"], 1)  # data loading + training, no checks
        print(f"  step {h['step']}: {h['wall_seconds'] / 60:.1f} min, DDIM-50 accuracy {100 * h['accuracy']:.1f} "
              f"+/- {100 * h['accuracy_binomial_sd']:.1f} %", flush=True)
    reached = next((h for h in history if h["accuracy"] >= 0.9), None)
    return {"recipe": dataclasses.asdict(recipe), "reached": reached is not None,
            "seconds_to_90": reached["wall_seconds"] if reached else None,
            "steps_to_90": reached["step"] if reached else None, "load_seconds": round(load_seconds, 2),
            "budget_minutes": args.minutes_to_90, "check_every": args.check_every, "eval_n": args.eval_n,
            "history": history, "check_seconds": round(sum(h["check_seconds"] for h in history), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the speed measurement")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per model per round")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--sample-n", type=int, default=64, help="digits per sampling-time measurement")
    parser.add_argument("--minutes-to-90", type=float, default=15.0, help="training budget of part 3")
    parser.add_argument("--check-every", type=int, default=250, help="steps between accuracy checks")
    parser.add_argument("--eval-n", type=int, default=500, help="DDIM-50 samples per accuracy check")
    parser.add_argument("--recipe", choices=["ten-minutes", *RECIPES], default="ten-minutes",
                        help="part 3's recipe: `sdcourse train ddpm --preset ten-minutes`'s, or one of ddpm_recipe's")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 is far faster than 2 when other processes share the cores")
    parser.add_argument("--skip", nargs="*", default=[], choices=["speed", "sampling", "to90"],
                        help="parts not measured this time; those already in --out are kept")
    parser.add_argument("--out", type=Path, default=RESULTS / "ddpm_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    began = time.perf_counter()
    digits = load_mnist("train", verbose=False)
    load_seconds = time.perf_counter() - began
    kept = json.loads(args.out.read_text()) if args.skip and args.out.exists() else {}  # a rerun of one part
    payload = {**{k: kept[k] for k in ("train_speed", "sampling_seconds", "time_to_90") if k in kept},
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
               "load_average_before": os.getloadavg(), "args": {k: str(v) for k, v in vars(args).items()}}
    if "speed" not in args.skip:
        print("training speed (images/s), alternated:")
        payload["train_speed"] = train_speed(args, digits)
    if "sampling" not in args.skip:
        print("sampling time:")
        payload["sampling_seconds"] = sampling_time(args)
    if "to90" not in args.skip:
        print("time to 90 % conditional accuracy (DDIM-50):")
        payload["time_to_90"] = time_to_90(args, load_seconds)
    payload["load_average_after"] = os.getloadavg()

    rows = []
    if "train_speed" in payload:
        s = payload["train_speed"]
        for name, ips in s["images_per_s"].items():
            rows.append((f"train {name}", f"{ips:.0f} images/s"))
        rows.append(("train ratio (ours / best diffusers)", f"{s['ratio']:.2f}x"))
        rows.append(("parameters (ours / diffusers)",
                     f"{s['parameters']['sdcourse UNet']:,} / {s['parameters']['diffusers UNet2DModel']:,}"))
    if "sampling_seconds" in payload:
        p = payload["sampling_seconds"]
        rows += [(f"sample {p['n']} digits, DDIM-50", f"{p['DDIM-50']:.1f} s"),
                 (f"sample {p['n']} digits, DDPM-1000", f"{p['DDPM-1000']:.1f} s")]
    if "time_to_90" in payload:
        q = payload["time_to_90"]
        last = q["history"][-1]
        rows.append((f"time to 90 % accuracy (DDIM-50, n={q['eval_n']}, {q['recipe']['name']})",
                     f"{q['seconds_to_90'] / 60:.1f} min ({q['steps_to_90']} steps)" if q["reached"] else
                     f"not within {q['budget_minutes']} min "
                     f"(best {100 * max(h['accuracy'] for h in q['history']):.1f} % by step {last['step']})"))
    finish(rows, payload, args.out)


if __name__ == "__main__":
    main()
