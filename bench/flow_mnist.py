"""Flow matching against noise prediction on digits: the card of ``checkpoints/flow_mnist`` (lesson 12).

    PYTHONPATH=. python bench/flow_mnist.py --curve /work/runs/flow_snaps      # the full run
    PYTHONPATH=. python bench/flow_mnist.py --num-samples 50 --seeds 0 --nfe 1 4 --no-card --out /tmp/f.json  # smoke

1. **Quality against NFE**: ``flow_mnist`` sampled with Euler on its own ODE
   (``flow.FlowMatchEulerSampler``, NFE = steps) next to ``ddpm_mnist`` with DDIM (the sampler that
   needs the fewest evaluations in lesson 11's table, ``results/solvers.json``) and DPM-Solver++(2M),
   at the same NFE, from the same seeds, every digit equally often, no guidance. Conditional
   accuracy (the course classifier) and FID against as many real test digits
   (``evaluate.evaluate_samples``), mean +/- sd over ``--seeds``.
2. **Training curve** (``--curve DIR``): the run's resume files saved at chosen steps
   (``DIR/stepN.safetensors``), each sampled with Euler-50 at ``--curve-samples`` digits (seed 0):
   accuracy with its binomial sd, and FID. Steps measured now replace those of the previous
   results file; the others are kept (the learning rate is constant and training deterministic, so a
   shorter rerun of the same command passes through the same weights). ``ddpm_mnist``'s own curve is
   the one its card records (DDIM-50, n = 1000, measured during its training with the same loop,
   batch and learning rate).
3. **Reflow** (``--reflow NAME``, the 2-rectified flow of ``sdcourse train reflow``): the same table
   at ``--reflow-nfe``, and the straightness (``experiments.flow_matching.digit_path_straightness``) of both
   flows' Euler-50 paths from the same noises (``--straightness-samples`` digits, seed 0).
4. **Guidance on the flow** (``--guidance``): classifier-free guidance on the velocity
   (``guidance.GuidedModel``, the same formula as on eps) at Euler-``--guidance-nfe``, next to
   ``ddpm_mnist`` with DDIM at the same steps: accuracy, FID, within-class diversity and saturated
   pixels (``experiments.guidance_sweep.measure_scales``), mean +/- sd over ``--seeds``.

Writes ``results/flow_mnist.json`` and, unless ``--no-card``, the cards' ``metrics`` (the flow's;
with ``--reflow`` also the 2-rectified flow's).
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
from sdcourse.experiments import guidance_sweep
from sdcourse.experiments.faster_sampling import mean_sd, sample_and_evaluate
from sdcourse.experiments.flow_matching import digit_path_straightness
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


def card_metrics(rows: list[dict], model: str, seeds: list[int], command: str) -> dict:
    """A card's ``metrics``: per NFE, the first seed's full ``Quality`` and the mean and sd over seeds."""
    return {f"euler-{r['nfe']}": {**r["first_seed"], "accuracy_mean_over_seeds": r["accuracy"],
                                  "accuracy_sd_over_seeds": r["accuracy_sd"], "fid_mean_over_seeds": r["fid"],
                                  "fid_sd_over_seeds": r["fid_sd"], "seeds": seeds, "seed": seeds[0],
                                  "command": command}
            for r in rows if r["model"] == model}


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


def merged_curve(previous: list[dict], measured: list[dict]) -> list[dict]:
    """The previous results' curve with the steps measured now replaced, in order of step."""
    rows = {r["step"]: r for r in previous}
    rows.update({r["step"]: r for r in measured})
    return [rows[step] for step in sorted(rows)]


def guidance_rows(models: dict, scales: list[float], steps: int, labels: torch.Tensor, seeds: list[int]) -> list[dict]:
    """Lesson 04's guidance measurements for each model at ``steps``, mean and sd over seeds."""
    rows = []
    for name, (model, make_sampler) in models.items():
        per_seed = []
        for seed in seeds:
            samples = guidance_sweep.sample_at_scales(model, lambda m=make_sampler: m(steps), labels, scales, seed,
                                                      progress=False)
            per_seed.append(guidance_sweep.measure_scales({k: v.clamp(-1, 1) for k, v in samples.items()}, labels))
        for i, scale in enumerate(scales):
            row = {"model": name.split()[0], "sampler": name.split()[1], "steps": steps, "guidance_scale": scale}
            for key in ("accuracy", "fid", "diversity", "saturated"):
                row[key], row[f"{key}_sd"] = mean_sd([getattr(r[i], key) for r in per_seed])
            rows.append(row)
            print(f"{name:21s} steps {steps:3d} guidance {scale:4.1f}  accuracy {row['accuracy']:.3f} +/- "
                  f"{row['accuracy_sd']:.3f}  FID {row['fid']:6.1f}  diversity {row['diversity']:.2f}  "
                  f"saturated {row['saturated']:.3f}", flush=True)
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
    parser.add_argument("--reflow", default=None, help="the 2-rectified flow's name in --checkpoints")
    parser.add_argument("--reflow-nfe", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--straightness-samples", type=int, default=200)
    parser.add_argument("--guidance", type=float, nargs="*", default=[], help="guidance scales to measure")
    parser.add_argument("--guidance-nfe", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-card", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "flow_mnist.json", help="the results file")
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
    reflow = checkpoint.load_model(args.reflow, args.checkpoints) if args.reflow else None
    points = [(nfe, name) for nfe in args.nfe for name in samplers]
    if reflow is not None:
        samplers["reflow_mnist euler"] = (reflow.model, lambda n: FlowMatchEulerSampler(n))
        points += [(nfe, "reflow_mnist euler") for nfe in args.reflow_nfe]
    rows = []
    for nfe, name in points:
        model, make = samplers[name]
        row = {"model": name.split()[0], "sampler": name.split()[1],
               **measure(model, lambda m=make, n=nfe: m(n), labels, args.seeds)}
        rows.append(row)
        print(f"{name:21s} NFE {row['nfe']:3d}  accuracy {row['accuracy']:.3f} +/- {row['accuracy_sd']:.3f}  "
              f"FID {row['fid']:7.1f} +/- {row['fid_sd']:5.1f}  {row['ms_per_image']:5.1f} ms/image", flush=True)
    paths = {}
    if reflow is not None:
        path_labels = torch.arange(args.straightness_samples) % 10
        paths = {name: digit_path_straightness(m.model, path_labels) for name, m in (("flow_mnist", flow),
                                                                               ("reflow_mnist", reflow))}
        print(f"straightness of Euler-50 paths (n = {args.straightness_samples}): {paths}", flush=True)
    guided = guidance_rows({"flow_mnist euler": samplers["flow_mnist euler"],
                            "ddpm_mnist ddim": samplers["ddpm_mnist ddim"]}, args.guidance, args.guidance_nfe,
                           labels, args.seeds) if args.guidance else []
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
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
        "curve": merged_curve(previous.get("curve", []), curve(args.curve, args.curve_samples) if args.curve else []),
        "reflow": None if reflow is None else {
            "checkpoint": args.reflow, "reflow_of": reflow.card.get("reflow_of"),
            "training_steps": reflow.card.get("step"),
            "straightness": paths, "straightness_samples": args.straightness_samples,
            "straightness_measured": "Euler-50 paths from the same noises (seed 0), every digit equally often: the "
                                     "largest distance of a path from the segment joining its ends, over that "
                                     "segment's mean length (experiments.flow_matching.straightness)"},
        "guidance_rows": guided,
        "ddpm_curve": DDPM_CURVE, "curve_measured": "flow: Euler-50, seed 0, binomial sd; ddpm: DDIM-50, n = 1000 "
                                                    "(its card's note)",
        "wall_seconds": time.perf_counter() - start, "command": command, "threads": args.threads,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    if not args.no_card:
        card = checkpoint.read_card(flow.path)
        card["metrics"] = card_metrics(rows, "flow_mnist", args.seeds, command)
        card["ddpm_mnist_at_same_nfe"] = [{k: v for k, v in r.items() if k != "first_seed"} for r in rows
                                          if r["model"] == "ddpm_mnist"]
        card["training_curve"] = result["curve"]
        if reflow is not None:
            card["reflow_mnist_at_same_nfe"] = [r for r in result["rows"] if r["model"] == "reflow_mnist"]
            card["straightness"] = paths
            reflow_card = checkpoint.read_card(reflow.path)
            reflow_card["metrics"] = card_metrics(rows, "reflow_mnist", args.seeds, command)
            reflow_card["straightness"] = {**paths, "n": args.straightness_samples}
            checkpoint.write_card(reflow.path, reflow_card)
        if guided:
            card["guidance"] = [r for r in guided if r["model"] == "flow_mnist"]
        checkpoint.write_card(flow.path, card)
        print(f"wrote the metrics into {checkpoint.card_path(flow.path)}")


if __name__ == "__main__":
    main()
