"""Which change to ddpm_mnist's recipe reaches 90 % accuracy in fewer training steps (issue 18).

    PYTHONPATH=. python bench/ddpm_recipe.py --recipes baseline v-prediction         # some recipes
    PYTHONPATH=. python bench/ddpm_recipe.py --recipes baseline --checks 20 --eval-n 20 --out /tmp/r.json  # smoke

Each recipe of ``sdcourse.experiments.ddpm_recipe.RECIPES`` (one change each to the shipped
recipe) trains the 0.4 M-parameter UNet from scratch, seed 0, through ``train.fit``; at each of
``--checks`` its EMA samples ``--eval-n`` digits with DDIM-50 (equal counts per digit) and the
course classifier reads them: accuracy (binomial sd) against steps. Steps, not seconds, compare
recipes that cost the same per step (every recipe here but ``batch-64``, which costs half) on a
machine shared with other work; training seconds are recorded beside. Several processes may run
recipes at once: each result is merged into ``--out`` under a file lock.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import platform
import sys
from pathlib import Path

import torch

from sdcourse.experiments.ddpm_recipe import RECIPES, accuracy_curve

RESULTS = Path(__file__).resolve().parent / "results"


def merge(out: Path, name: str, entry: dict) -> None:
    """Put ``entry`` under ``recipes[name]`` of the JSON file ``out``, atomically and under a lock."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(out.read_text()) if out.exists() else {"recipes": {}}
        data["recipes"][name] = entry
        data["measured"] = ("DDIM-50 conditional accuracy (course classifier) of the EMA at each check, binomial sd; "
                            "seed 0; one process per recipe on a shared 2-core machine")
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--checks", type=int, nargs="+", default=[250, 500, 750, 1000, 1500, 2000])
    parser.add_argument("--eval-n", type=int, default=300)
    parser.add_argument("--stop-at", type=float, default=None, help="stop a recipe once it reaches this accuracy")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "ddpm_recipe.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.recipes:
        recipe = RECIPES[name]
        load_before = os.getloadavg()
        rows = accuracy_curve(recipe, args.checks, args.eval_n, stop_at=args.stop_at)
        for r in rows:
            print(f"{name:16s} step {r['step']:5d}  accuracy {r['accuracy']:.3f} +/- {r['accuracy_binomial_sd']:.3f}  "
                  f"train {r['train_seconds']:7.1f} s", flush=True)
        merge(args.out, name, {"recipe": dataclasses.asdict(recipe), "history": rows, "eval_n": args.eval_n,
                               "threads": args.threads, "load_average_before": load_before,
                               "load_average_after": os.getloadavg(), "torch": torch.__version__,
                               "cpu": platform.processor() or platform.machine(),
                               "command": "PYTHONPATH=. python bench/ddpm_recipe.py " + " ".join(sys.argv[1:])})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
