"""Seconds per image and peak GPU memory: StableDiffusionPipeline as shipped, our loop, faster variants.

On CUDA: the "sd15-random" pipeline (SD 1.5's exact shapes, random weights) in fp16 at 512x512 with
30 and 50 steps. On a CPU: the "tiny" pipeline as a smoke run (small size, few steps), which checks
that every variant runs and prints the same table, nothing more.

Variants (each in this process, alternated round by round, median of --repeats timed runs after one
untimed warm-up run each, which also absorbs torch.compile's compile time):
  diffusers        pipe(prompt, ...) as shipped
  ours             sdcourse.sd.generate, the hand-written loop (target: within 2 % of diffusers)
  channels_last    ours, UNet in channels-last memory format
  compile          ours, torch.compile(UNet)
  channels_last+compile                      (target: the best at least 1.3x faster than diffusers)
  attention_slicing, vae_tiling, cpu_offload ours with each memory option (CUDA only)

    python bench/sd_gpu.py                      # CUDA if present, else the CPU smoke run
    python bench/sd_gpu.py --variants diffusers ours --repeats 5

Writes a table to stdout and JSON to bench/results/sd_gpu_<device>.json (sd_gpu_cpu-smoke.json on a CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import diffusers
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sdcourse import sd  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse on mars"
ALL_VARIANTS = (
    "diffusers",
    "ours",
    "channels_last",
    "compile",
    "channels_last+compile",
    "attention_slicing",
    "vae_tiling",
    "cpu_offload",
)
CUDA_ONLY = {"attention_slicing", "vae_tiling", "cpu_offload"}


class Variant:
    """Switch a pipeline into one configuration (``enter``), run one image, switch back (``leave``)."""

    def __init__(self, name: str, pipe, device: torch.device):
        self.name, self.pipe, self.device = name, pipe, device
        self.unet = pipe.unet
        self.compiled = None

    def enter(self):
        pipe, parts = self.pipe, set(self.name.split("+"))
        if "channels_last" in parts:
            self.unet.to(memory_format=torch.channels_last)
        if "compile" in parts:
            if self.compiled is None:
                self.compiled = torch.compile(
                    self.unet,
                    mode="max-autotune-no-cudagraphs" if self.device.type == "cuda" else "default",
                )
            pipe.unet = self.compiled
        if "attention_slicing" in parts:
            pipe.enable_attention_slicing()
        if "vae_tiling" in parts:
            pipe.vae.enable_tiling()
        if "cpu_offload" in parts:
            pipe.enable_model_cpu_offload(device=self.device)

    def leave(self):
        pipe, parts = self.pipe, set(self.name.split("+"))
        if "cpu_offload" in parts:
            pipe.remove_all_hooks()
            pipe.to(self.device)
        if "vae_tiling" in parts:
            pipe.vae.disable_tiling()
        if "attention_slicing" in parts:
            pipe.disable_attention_slicing()
        if "compile" in parts:
            pipe.unet = self.unet
        if "channels_last" in parts:
            self.unet.to(memory_format=torch.contiguous_format)

    def run(self, steps: int, size: int, seed: int):
        if self.name == "diffusers":
            return self.pipe(
                PROMPT,
                num_inference_steps=steps,
                height=size,
                width=size,
                generator=torch.Generator("cpu").manual_seed(seed),
            ).images[0]
        return sd.generate(
            self.pipe, PROMPT, num_inference_steps=steps, height=size, width=size, seed=seed
        )


def timed(variant: Variant, steps: int, size: int, seed: int):
    """(seconds, peak GPU GiB or None, image) for one image."""
    cuda = variant.device.type == "cuda"
    variant.enter()
    try:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        image = variant.run(steps, size, seed)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    finally:
        variant.leave()
    return seconds, peak, image


def device_slug(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu-smoke"
    return re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(device)).strip("-")


def main(argv=None) -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="sd15-random" if cuda else "tiny")
    parser.add_argument("--size", type=int, default=512 if cuda else 64)
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 50] if cuda else [2, 4])
    parser.add_argument("--repeats", type=int, default=5 if cuda else 3)
    parser.add_argument("--variants", nargs="+", choices=ALL_VARIANTS, default=None)
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: 1 on a CPU)"
    )
    parser.add_argument(
        "--out", default=None, help="JSON path (default bench/results/sd_gpu_<device>.json)"
    )
    args = parser.parse_args(argv)

    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(args.threads or 1)  # the smoke run shares the machine
    names = args.variants or [v for v in ALL_VARIANTS if cuda or v not in CUDA_ONLY]
    pipe = sd.load_pipeline(args.model, device=device, memory=sd.MemoryOptions())
    pipe.set_progress_bar_config(disable=True)
    variants = [Variant(name, pipe, device) for name in names]

    results = []
    for steps in args.steps:
        reference = None
        warmup = {}
        for variant in variants:  # untimed warm-up (compilation, cuDNN autotuning, allocator)
            start = time.perf_counter()
            _, _, image = timed(variant, steps, args.size, seed=0)
            warmup[variant.name] = time.perf_counter() - start
            if variant.name == "diffusers":
                reference = np.asarray(image, dtype=int)
        runs = {v.name: [] for v in variants}
        peaks = {v.name: [] for v in variants}
        images = {}
        for _ in range(args.repeats):  # alternate: round r runs every variant once
            for variant in variants:
                seconds, peak, image = timed(variant, steps, args.size, seed=0)
                runs[variant.name].append(seconds)
                peaks[variant.name].append(peak)
                images[variant.name] = np.asarray(image, dtype=int)
        base = statistics.median(runs["diffusers"]) if "diffusers" in runs else None
        for variant in variants:
            median = statistics.median(runs[variant.name])
            diff = (
                None if reference is None else int(np.abs(images[variant.name] - reference).max())
            )
            peak = peaks[variant.name]
            results.append(
                {
                    "variant": variant.name,
                    "steps": steps,
                    "seconds_median": round(median, 4),
                    "seconds_runs": [round(s, 4) for s in runs[variant.name]],
                    "speedup_vs_diffusers": None if base is None else round(base / median, 3),
                    "peak_gpu_gib": None if peak[0] is None else round(max(peak), 3),
                    "max_pixel_diff_vs_diffusers": diff,
                    "warmup_seconds": round(warmup[variant.name], 2),
                }
            )

    hardware = (
        torch.cuda.get_device_name(device)
        if cuda
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    print(
        f"\n{args.model} pipeline, {pipe.unet.dtype}, {args.size}x{args.size}, {hardware}, "
        f"median of {args.repeats} alternated runs"
    )
    print(
        f"{'variant':24s} {'steps':>5s} {'s/image':>9s} {'vs diffusers':>12s} {'peak GiB':>9s} {'max px diff':>11s}"
    )
    for r in results:
        peak = "-" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.2f}"
        speed = "-" if r["speedup_vs_diffusers"] is None else f"{r['speedup_vs_diffusers']:.3f}x"
        print(
            f"{r['variant']:24s} {r['steps']:5d} {r['seconds_median']:9.3f} {speed:>12s} {peak:>9s} "
            f"{str(r['max_pixel_diff_vs_diffusers']):>11s}"
        )

    targets = {}
    for steps in args.steps:
        rows = {r["variant"]: r for r in results if r["steps"] == steps}
        if "diffusers" in rows and "ours" in rows:
            overhead = rows["ours"]["seconds_median"] / rows["diffusers"]["seconds_median"] - 1
            best = max(rows.values(), key=lambda r: r["speedup_vs_diffusers"])
            targets[str(steps)] = {
                "ours_overhead_pct": round(100 * overhead, 2),
                "ours_within_2pct": abs(overhead) <= 0.02,
                "best_variant": best["variant"],
                "best_speedup": best["speedup_vs_diffusers"],
                "best_at_least_1.3x": best["speedup_vs_diffusers"] >= 1.3,
            }
    print("targets:", json.dumps(targets))
    payload = {
        "command": " ".join(
            ["python bench/sd_gpu.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "model": args.model,
        "dtype": str(pipe.unet.dtype),
        "size": args.size,
        "repeats": args.repeats,
        "hardware": hardware,
        "device": str(device),
        "smoke_run": not cuda,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "results": results,
        "targets": targets,
    }
    out = (
        Path(args.out)
        if args.out
        else Path(__file__).parent / "results" / f"sd_gpu_{device_slug(device)}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
