"""Quality against the number of network evaluations (NFE) for every sampler: lesson 11's table.

    PYTHONPATH=. python bench/solvers.py                              # 200 digits x 2 seeds per point
    PYTHONPATH=. python bench/solvers.py --num-samples 50 --seeds 0 --nfe 4 10 --no-ddpm   # a smoke run

Samples the shipped class-conditional ``checkpoints/ddpm_mnist`` (every digit equally often, no
guidance) with DDPM-1000 (the reference), deterministic DDIM, and the ODE solvers of
``sdcourse.solvers`` (Euler, Heun, DPM-Solver++(2M), each with and without Karras sigmas) at each
``--nfe``, from the same seeds for every sampler (``sdcourse.experiments.faster_sampling``), and
measures conditional accuracy and FID against as many real test digits, mean +/- sd over
``--seeds``. Reports the wall time per image and, for each sampler, the smallest NFE whose mean
accuracy reaches 95 % of DDPM-1000's. Writes ``results/solvers.json``.
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
from sdcourse.experiments.faster_sampling import SAMPLERS, references, smallest_nfe, sweep

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=200, help="digits per seed and point")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--nfe", type=int, nargs="+", default=[2, 4, 6, 10, 20, 50])
    parser.add_argument("--solvers", nargs="+", choices=list(SAMPLERS), default=list(SAMPLERS))
    parser.add_argument("--no-ddpm", action="store_true", help="skip the DDPM-1000 reference (9 min on 1 thread)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "solvers.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ddpm = checkpoint.load_model("ddpm_mnist")
    start = time.perf_counter()
    rows = sweep(ddpm.model, ddpm.schedule, args.nfe, args.solvers, args.num_samples, args.seeds,
                 ddpm_reference=not args.no_ddpm, report=lambda line: print(line, flush=True))
    smallest = {} if args.no_ddpm else smallest_nfe(rows)
    if smallest:
        print(f"\nsmallest NFE reaching 95 % of DDPM-1000's accuracy ({rows[0].accuracy:.3f}):")
        for name, nfe in smallest.items():
            print(f"  {name:17s} {nfe if nfe is not None else 'not within ' + str(max(args.nfe))}")
    result = {
        "checkpoint": "ddpm_mnist", "checkpoint_training_steps": ddpm.card.get("step"),
        "num_samples": args.num_samples, "seeds": args.seeds, "guidance": "none (scale 1)",
        "measured": "conditional accuracy (course classifier) and FID against as many real test digits "
                    "(sdcourse.evaluate.evaluate_samples), "
                    "mean and sd over seeds; DDPM and DDIM clip x0-hat (their default), the solvers do not "
                    "(diffusers' defaults)",
        "references": references(args.num_samples),
        "rows": [asdict(r) for r in rows], "smallest_nfe_at_95pct_of_ddpm": smallest,
        "wall_seconds": time.perf_counter() - start,
        "command": "PYTHONPATH=. python bench/solvers.py " + " ".join(sys.argv[1:]),
        "threads": args.threads, "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
