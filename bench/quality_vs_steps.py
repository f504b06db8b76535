"""Lesson 03's quality against sampling steps at full size, written to bench/results/quality_vs_steps.json.

    python bench/quality_vs_steps.py            # 500 digits per sampler, DDIM 5..100 and DDPM-1000
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from sdcourse import checkpoint
from sdcourse.experiments import steps_quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="digits per sampler")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 25, 50, 100], help="DDIM step counts")
    parser.add_argument("--no-ddpm", action="store_true", help="skip DDPM's 1,000 steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=steps_quality.RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ddpm = checkpoint.load_model("ddpm_mnist")
    start = time.perf_counter()
    rows = steps_quality.measure(ddpm.model, ddpm.schedule, args.n, args.steps, not args.no_ddpm, args.seed)
    wall = time.perf_counter() - start
    hardware = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    measured = [a for a in sys.argv[1:] if a != "--out" and a != str(args.out)]  # --out changes no number
    command = " ".join(["python bench/quality_vs_steps.py", *measured])
    path = steps_quality.save(rows, args.out, command=command, hardware=hardware, torch=torch.__version__,
                              wall_seconds=round(wall, 1), n=args.n, seed=args.seed, checkpoint="ddpm_mnist")
    for name, row in rows.items():
        print(f"{name:>10}: accuracy {row['accuracy']:.3f}  FID {row['fid']:.1f}  "
              f"(floor {row['fid_floor_mean']:.1f} +/- {row['fid_floor_sd']:.1f})  {row['seconds']:.0f} s")
    print(f"wrote {path} ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
