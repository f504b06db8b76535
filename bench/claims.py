"""Lesson 10's slow measurements, written to bench/results/claims.json.

    python bench/claims.py --n 100       # claim 5: DDPM vs the articles' step; claim 10: Eq. 14 vs Eq. 5

Claim 5 samples the shipped ddpm_mnist with DDPM's posterior step (Ho et al. 2020, Algorithm 2) and
with the articles' inverse of Eq. 2 (``claims.NaiveSampler``), the same labels from the same seed,
scored by ``sdcourse.evaluate``. Claim 10 estimates the simplified loss (Eq. 14) and the KL part of
the bound (Eq. 5) on test digits for the shipped model and for the same network re-initialized.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from sdcourse import checkpoint, config, data, evaluate
from sdcourse.experiments import claims
from sdcourse.samplers import DDPMSampler
from sdcourse.sampling import sample

RESULTS = config.REPO_ROOT / "bench" / "results" / "claims.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="digits per sampler (claim 5)")
    parser.add_argument("--n-bound", type=int, default=2000, help="test digits for claim 10")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ddpm = checkpoint.load_model("ddpm_mnist")
    start = time.perf_counter()
    test = data.load_mnist("test", verbose=False)
    images, labels = test.images[: args.n_bound], test.labels[: args.n_bound]
    bound = {"shipped ddpm_mnist": claims.simple_and_bound(ddpm.model, ddpm.schedule, images, labels, args.seed),
             "re-initialized": claims.simple_and_bound(claims.reinitialized(ddpm.model, args.seed), ddpm.schedule,
                                                       images, labels, args.seed)}
    wanted = torch.arange(args.n) % 10
    rows = {}
    for name, sampler in (("DDPM posterior", DDPMSampler(ddpm.schedule)),
                          ("articles' step", claims.NaiveSampler(ddpm.schedule))):
        t0 = time.perf_counter()
        x = sample(ddpm.model, sampler, (args.n, 1, 28, 28), labels=wanted,
                   generator=torch.Generator().manual_seed(args.seed), progress=False)
        q = evaluate.evaluate_samples(x.clamp(-1, 1), wanted).as_dict()
        rows[name] = {**q, "seconds": time.perf_counter() - t0, "pixel_min": x.min().item(),
                      "pixel_max": x.max().item(), "pixel_std": x.std().item()}
    measured = [a for a in sys.argv[1:] if a != "--out" and a != str(args.out)]
    result = {"command": " ".join(["OMP_NUM_THREADS=1 python bench/claims.py", *measured]),
              "hardware": f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "wall_seconds": round(time.perf_counter() - start, 1), "n": args.n,
              "seed": args.seed, "checkpoint": "ddpm_mnist", "claim5": rows, "claim10": bound}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, row in rows.items():
        print(f"{name:>15}: accuracy {row['accuracy']:.3f}  FID {row['fid']:.1f} "
              f"(floor {row['fid_floor_mean']:.1f} +- {row['fid_floor_sd']:.1f})  pixels "
              f"[{row['pixel_min']:.2f}, {row['pixel_max']:.2f}]  {row['seconds']:.0f} s")
    for name, row in bound.items():
        print(f"{name:>20}: Eq. 14 {row['simple']:.4f} +- {row['simple_se']:.4f}   "
              f"Eq. 5 (t>=1) {row['bound']:.1f} +- {row['bound_se']:.1f} nats/image")


if __name__ == "__main__":
    main()
