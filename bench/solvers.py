"""Quality against the number of network evaluations (NFE) for every sampler: lesson 11's table.

    PYTHONPATH=. python bench/solvers.py                              # 200 digits x 2 seeds per point
    PYTHONPATH=. python bench/solvers.py --num-samples 50 --seeds 0 --nfe 4 10 --no-ddpm   # a smoke run

Samples the shipped class-conditional ``checkpoints/ddpm_mnist`` (every digit equally often, no
guidance) with DDPM-1000 (the reference), deterministic DDIM, and the ODE solvers of
``sdcourse.solvers`` (Euler, Heun, DPM-Solver++(2M), each with and without Karras sigmas) at each
``--nfe``, from the same seeds for every sampler, and measures conditional accuracy (the course
classifier) and FID against as many real test digits, each as mean +/- sd over ``--seeds``. Heun
evaluates the network 2n - 1 times for n steps, so it is run at the largest n within each NFE.
Also reports the wall time per image and, for each sampler, the smallest NFE whose mean accuracy
reaches 95 % of DDPM-1000's. Writes ``results/solvers.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from sdcourse import checkpoint, evaluate
from sdcourse.data import load_mnist
from sdcourse.samplers import DDIMSampler, DDPMSampler, sample
from sdcourse.solvers import DPMSolverSampler, EulerSampler, HeunSampler

RESULTS = Path(__file__).resolve().parent / "results"
SOLVERS = {
    "ddim": lambda s, n: DDIMSampler(s, n),
    "euler": lambda s, n: EulerSampler(s, n),
    "euler-karras": lambda s, n: EulerSampler(s, n, use_karras_sigmas=True),
    "heun": lambda s, n: HeunSampler(s, (n + 1) // 2),
    "heun-karras": lambda s, n: HeunSampler(s, (n + 1) // 2, use_karras_sigmas=True),
    "dpmsolver": lambda s, n: DPMSolverSampler(s, n),
    "dpmsolver-karras": lambda s, n: DPMSolverSampler(s, n, use_karras_sigmas=True),
}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def measure(model, make_sampler, labels, seeds, real_features) -> dict:
    """Accuracy and FID (mean, sd over seeds), NFE and seconds per image for one sampler."""
    accuracies, fids, seconds = [], [], 0.0
    for seed in seeds:
        sampler = make_sampler()
        start = time.perf_counter()
        images = sample(model, sampler, (len(labels), 1, 28, 28), labels,
                        torch.Generator().manual_seed(seed), progress=False).clamp(-1, 1)
        seconds += time.perf_counter() - start
        features, logits = evaluate.features_and_logits(images)
        accuracies.append(evaluate.conditional_accuracy(images, labels, logits))
        fids.append(evaluate.frechet_distance(features, real_features))
    (acc, acc_sd), (fid, fid_sd) = mean_sd(accuracies), mean_sd(fids)
    return {"nfe": len(sampler.timesteps), "steps": sampler.num_inference_steps, "accuracy": acc,
            "accuracy_sd": acc_sd, "fid": fid, "fid_sd": fid_sd,
            "ms_per_image": 1000 * seconds / (len(seeds) * len(labels))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=200, help="digits per seed and point")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--nfe", type=int, nargs="+", default=[2, 4, 6, 10, 20, 50])
    parser.add_argument("--solvers", nargs="+", choices=list(SOLVERS), default=list(SOLVERS))
    parser.add_argument("--no-ddpm", action="store_true", help="skip the DDPM-1000 reference (9 min on 1 thread)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "solvers.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ddpm = checkpoint.load_model("ddpm_mnist")
    model, schedule = ddpm.model, ddpm.schedule
    labels = torch.arange(args.num_samples) % 10
    test = load_mnist("test", verbose=False)
    chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:args.num_samples]
    real = evaluate.features_and_logits(test.images[chosen])[0]  # the FID reference: real test digits
    rows = []
    if not args.no_ddpm:
        rows.append({"sampler": "ddpm", **measure(model, lambda: DDPMSampler(schedule), labels, args.seeds, real)})
        print(f"ddpm  NFE 1000  accuracy {rows[0]['accuracy']:.3f}")
    for name in args.solvers:
        for nfe in args.nfe:
            if name.startswith("heun") and nfe < 3:
                continue  # Heun's first step already costs 3 evaluations with its corrector
            row = {"sampler": name, **measure(model, lambda n=nfe, k=name: SOLVERS[k](schedule, n), labels,
                                              args.seeds, real)}
            rows.append(row)
            print(f"{name:17s} NFE {row['nfe']:3d}  accuracy {row['accuracy']:.3f} +/- {row['accuracy_sd']:.3f}  "
                  f"FID {row['fid']:7.1f} +/- {row['fid_sd']:.1f}  {row['ms_per_image']:.1f} ms/image", flush=True)

    reference = rows[0]["accuracy"] if not args.no_ddpm else None
    smallest = {}
    if reference is not None:
        for name in args.solvers:
            hits = [r["nfe"] for r in rows if r["sampler"] == name and r["accuracy"] >= 0.95 * reference]
            smallest[name] = min(hits) if hits else None
        print(f"\nsmallest NFE reaching 95 % of DDPM-1000's accuracy ({reference:.3f}):")
        for name, nfe in smallest.items():
            print(f"  {name:17s} {nfe if nfe is not None else 'not within ' + str(max(args.nfe))}")
    result = {
        "checkpoint": "ddpm_mnist", "checkpoint_training_steps": ddpm.card.get("step"),
        "num_samples": args.num_samples, "seeds": args.seeds, "guidance": "none (scale 1)",
        "measured": "conditional accuracy (course classifier) and FID against as many real test digits, "
                    "mean and sd over seeds; DDIM clips x0-hat (its default), the solvers do not (diffusers')",
        "rows": rows, "ddpm_1000_accuracy": reference, "smallest_nfe_at_95pct_of_ddpm": smallest,
        "command": "python bench/solvers.py " + " ".join(sys.argv[1:]),
        "threads": args.threads, "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
