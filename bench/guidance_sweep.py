"""Guidance scale against accuracy, FID, diversity and saturation: the table of lesson 04, larger.

    PYTHONPATH=. python bench/guidance_sweep.py                         # 500 per scale, DDIM-50
    PYTHONPATH=. python bench/guidance_sweep.py --num-samples 100 --steps 10

Samples ``--num-samples`` digits (every digit equally often) from the shipped class-conditional
UNet ``checkpoints/ddpm_mnist`` at each guidance scale, from the same seeds at every scale, with
deterministic DDIM (eta = 0), and measures them with ``sdcourse.evaluate``'s classifier against the
real test digits (lesson 04's sweep, ``sdcourse.experiments.guidance_sweep``). Also reports the
real-vs-real FID floor (as many real training digits against real test digits) and the wall time.
Writes ``results/guidance_sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from sdcourse import checkpoint
from sdcourse.data import load_mnist
from sdcourse.experiments.guidance_sweep import balanced_labels, measure_scales, sample_at_scales
from sdcourse.samplers import DDIMSampler

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=500, help="samples per scale")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--scales", type=float, nargs="+", default=[0, 1, 2, 3, 5, 8, 15])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "guidance_sweep.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ddpm = checkpoint.load_model("ddpm_mnist")  # the model and the schedule it was trained with
    model, schedule = ddpm.model, ddpm.schedule
    real = load_mnist("test", verbose=False)
    labels = balanced_labels(args.num_samples)
    start = time.perf_counter()
    samples = sample_at_scales(model, lambda: DDIMSampler(schedule, args.steps), labels, args.scales, seed=args.seed)
    sampling_s = time.perf_counter() - start
    rows = measure_scales(samples, labels, progress=True)
    floor = rows[0].fid_floor

    print(f"{args.num_samples} samples per scale, DDIM-{args.steps}, real digits: {real.source} ({len(real)})")
    print(f"{'scale':>6} {'w':>5} {'accuracy':>9} {'FID':>8} {'diversity':>10} {'saturated':>10}")
    for r in rows:
        print(f"{r.guidance_scale:6g} {r.guidance_scale - 1:5g} {r.accuracy:9.3f} {r.fid:8.2f} "
              f"{r.diversity:10.3f} {r.saturated:10.3f}")
    print(f"real-vs-real FID floor at {args.num_samples} digits: {floor:.2f}")
    print(f"sampling took {sampling_s:.0f} s on {args.threads} thread(s)")
    result = {
        "command": " ".join(["python bench/guidance_sweep.py", *sys.argv[1:]]),
        "hardware": f"{platform.processor() or platform.machine()} CPU, {args.threads} thread(s)",
        "num_samples": args.num_samples, "steps": args.steps, "seed": args.seed,
        "sampler": "DDIM eta=0, x0-hat clipped, eps re-derived from it (DDIMSampler's default)",
        "real_digits": f"{real.source} ({len(real)} test digits)",
        "checkpoint": "ddpm_mnist", "fid_floor_real_vs_real": floor,
        "checkpoint_training_steps": ddpm.card.get("step"),
        "rows": [asdict(r) for r in rows], "sampling_s": sampling_s, "threads": args.threads,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
