"""Flow matching against noise prediction on digits: the card of ``checkpoints/flow_mnist`` (lesson 12).

    PYTHONPATH=. python bench/flow_mnist.py --curve /work/runs/flow_snaps      # the full run
    PYTHONPATH=. python bench/flow_mnist.py --num-samples 50 --seeds 0 --nfe 1 4 --no-card   # a smoke run

1. **Quality against NFE**: ``flow_mnist`` sampled with Euler on its own ODE
   (``flow.FlowMatchEulerSampler``, NFE = steps) next to ``ddpm_mnist`` with DDIM (the sampler that
   needs the fewest evaluations in lesson 11's table, ``results/solvers.json``) and DPM-Solver++(2M),
   at the same NFE, from the same seeds, every digit equally often, no guidance. Conditional
   accuracy (the course classifier) and FID against as many real test digits
   (``evaluate.evaluate_samples``), mean +/- sd over ``--seeds``.
2. **Training curve** (``--curve DIR``): the run's resume files saved at chosen steps
   (``DIR/stepN.safetensors``), each sampled with Euler-50 at ``--curve-samples`` digits (seed 0):
   accuracy with its binomial sd, and FID. ``ddpm_mnist``'s own curve is the one its card records
   (DDIM-50, n = 1000, measured during its training with the same loop, batch and learning rate).

Writes ``results/flow_mnist.json`` and, unless ``--no-card``, the flow card's ``metrics``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

import torch

from sdcourse import checkpoint
from sdcourse.experiments.faster_sampling import mean_sd, sample_and_evaluate
from sdcourse.flow import FlowMatchEulerSampler
from sdcourse.samplers import DDIMSampler
from sdcourse.solvers import DPMSolverSampler

RESULTS = Path(__file__).resolve().parent / "results"
DDPM_CURVE = [  # ddpm_mnist's card, "note": DDIM-50 accuracy and FID at n = 1000 during its training
    {"step": 3354, "accuracy": 0.894, "fid": 34.7},
    {"step": 6250, "accuracy": 0.939, "fid": 26.8},
    {"step": 9272, "accuracy": 0.954, "fid": 27.97},
]


def measure(model, make_sampler, labels: torch.Tensor, seeds: list[int]) -> dict:
    """Accuracy and FID (mean, sd over seeds) and the first seed's full ``Quality`` (the card's entry)."""
    qualities, seconds, sampler = sample_and_evaluate(model, make_sampler, labels, seeds)
    (acc, acc_sd), (fid, fid_sd) = mean_sd([q.accuracy for q in qualities]), mean_sd([q.fid for q in qualities])
    return {"accuracy": acc, "accuracy_sd": acc_sd, "fid": fid, "fid_sd": fid_sd, "nfe": len(sampler.timesteps),
            "ms_per_image": 1000 * seconds / (len(seeds) * len(labels)), "first_seed": qualities[0].as_dict()}


def curve(directory: Path, n: int) -> list[dict]:
    """Euler-50 accuracy (binomial sd) and FID of every ``stepN.safetensors`` in ``directory``."""
    labels = torch.arange(n) % 10
    rows = []
    for path in sorted(directory.glob("step*.safetensors"), key=lambda p: int(re.sub(r"\D", "", p.stem))):
        model = checkpoint.load_model(path.stem, directory).model
        row = measure(model, lambda: FlowMatchEulerSampler(50), labels, [0])
        acc = row["accuracy"]
        rows.append({"step": int(re.sub(r"\D", "", path.stem)), "accuracy": acc,
                     "accuracy_binomial_sd": (acc * (1 - acc) / n) ** 0.5, "fid": row["fid"], "n": n})
        print(f"flow step {rows[-1]['step']:5d}: Euler-50 accuracy {acc:.3f} +/- {rows[-1]['accuracy_binomial_sd']:.3f}"
              f"  FID {row['fid']:.1f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", default="flow_mnist", help="the flow checkpoint's name in --checkpoints")
    parser.add_argument("--checkpoints", type=Path, default=None, help="default: the repository's checkpoints/")
    parser.add_argument("--num-samples", type=int, default=500, help="digits per seed and point")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 4, 8, 16, 50])
    parser.add_argument("--curve", type=Path, default=None, help="a folder of stepN.safetensors of the flow run")
    parser.add_argument("--curve-samples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-card", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    flow = checkpoint.load_model(args.flow, args.checkpoints)
    ddpm = checkpoint.load_model("ddpm_mnist")
    labels = torch.arange(args.num_samples) % 10
    samplers = {
        "flow_mnist euler": (flow.model, lambda n: FlowMatchEulerSampler(n)),
        "ddpm_mnist ddim": (ddpm.model, lambda n: DDIMSampler(ddpm.schedule, n)),
        "ddpm_mnist dpmsolver": (ddpm.model, lambda n: DPMSolverSampler(ddpm.schedule, n)),
    }
    rows = []
    for nfe in args.nfe:
        for name, (model, make) in samplers.items():
            row = {"model": name.split()[0], "sampler": name.split()[1],
                   **measure(model, lambda m=make, n=nfe: m(n), labels, args.seeds)}
            rows.append(row)
            print(f"{name:21s} NFE {row['nfe']:3d}  accuracy {row['accuracy']:.3f} +/- {row['accuracy_sd']:.3f}  "
                  f"FID {row['fid']:7.1f} +/- {row['fid_sd']:5.1f}  {row['ms_per_image']:5.1f} ms/image", flush=True)
    command = "PYTHONPATH=. python bench/flow_mnist.py " + " ".join(sys.argv[1:])
    result = {
        "flow": args.flow, "flow_training_steps": flow.card.get("step"), "ddpm_training_steps": ddpm.card.get("step"),
        "num_samples": args.num_samples, "seeds": args.seeds, "guidance": "none (scale 1)",
        "measured": "conditional accuracy (course classifier) and FID against as many real test digits "
                    "(sdcourse.evaluate.evaluate_samples), mean and sd over seeds; DDIM clips x0-hat (its default), "
                    "DPM-Solver++ and the flow's Euler do not",
        "rows": [{k: v for k, v in r.items() if k != "first_seed"} for r in rows],
        "references": {k: rows[0]["first_seed"][k] for k in ("fid_floor_mean", "fid_floor_sd", "fid_floor_subsets",
                                                               "fid_test_vs_test", "fid_test_vs_test_n",
                                                               "classifier_real_accuracy")},
        "curve": curve(args.curve, args.curve_samples) if args.curve else [],
        "ddpm_curve": DDPM_CURVE, "curve_measured": "flow: Euler-50, seed 0, binomial sd; ddpm: DDIM-50, n = 1000 "
                                                    "(its card's note)",
        "wall_seconds": time.perf_counter() - start, "command": command, "threads": args.threads,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "flow_mnist.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    if not args.no_card:
        card = checkpoint.read_card(flow.path)
        card["metrics"] = {f"euler-{r['nfe']}": {**r["first_seed"], "accuracy_mean_over_seeds": r["accuracy"],
                                                 "accuracy_sd_over_seeds": r["accuracy_sd"], "fid_mean_over_seeds":
                                                 r["fid"], "fid_sd_over_seeds": r["fid_sd"], "seeds": args.seeds,
                                                 "seed": args.seeds[0], "command": command}
                           for r in rows if r["model"] == "flow_mnist"}
        card["ddpm_mnist_at_same_nfe"] = [{k: v for k, v in r.items() if k != "first_seed"} for r in rows
                                          if r["model"] == "ddpm_mnist"]
        card["training_curve"] = result["curve"]
        checkpoint.write_card(flow.path, card)
        print(f"wrote the metrics into {checkpoint.card_path(flow.path)}")


if __name__ == "__main__":
    main()
