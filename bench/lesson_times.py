"""Wall time of every lesson, run top to bottom in a fresh kernel: the instructor's kit's table.

    PYTHONPATH=. python bench/lesson_times.py --mode fast full --threads 1     # every lesson, both modes
    PYTHONPATH=. python bench/lesson_times.py --mode fast --lessons 01 03      # a few lessons

Executes each ``notebooks/NN_*.ipynb`` (found by globbing, so new lessons join by themselves) with
nbclient, in fast mode (``SDCOURSE_FAST=1``) and/or full mode (unset), with ``OMP_NUM_THREADS``
set to ``--threads``, and records the wall time, the slowest cell and the 1-minute load average
before and after (the machine may be shared: a load above the core count means the times are
inflated). A cell that runs past ``--cell-timeout`` stops the lesson and is recorded as such.
Results are merged into ``results/lesson_times.json`` after every lesson, so an interrupted run
keeps what it measured and a rerun with ``--skip-done`` continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "lesson_times.json"


def run_lesson(path: Path, fast: bool, threads: int, cell_timeout: int) -> dict:
    """Execute one notebook in a fresh kernel; return its wall time and slowest cell."""
    env_before = dict(os.environ)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ["SDCOURSE_FAST"] = "1" if fast else ""
    if not fast:
        os.environ.pop("SDCOURSE_FAST")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}, record_timing=True)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    status = "ok"
    try:
        client.execute()
    except CellTimeoutError:
        status = f"cell timeout after {cell_timeout} s"
    except CellExecutionError as error:
        status = f"error: {str(error).strip().splitlines()[-1][:200]}"
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    seconds = time.perf_counter() - start
    slowest = (0.0, -1)
    for index, cell in enumerate(nb.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            begin = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
            slowest = max(slowest, ((end - begin).total_seconds(), index))
    return {"seconds": round(seconds, 1), "status": status, "slowest_cell": slowest[1],
            "slowest_cell_s": round(slowest[0], 1), "load_1min_before": round(load_before, 2),
            "load_1min_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", nargs="+", choices=["fast", "full"], default=["fast", "full"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lessons", nargs="+", help="lesson numbers (NN); default: every notebooks/NN_*.ipynb")
    parser.add_argument("--cell-timeout", type=int, default=1800, help="seconds one cell may run")
    parser.add_argument("--skip-done", action="store_true", help="skip lessons already in the JSON")
    args = parser.parse_args()

    paths = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.lessons:
        paths = [p for p in paths if p.name[:2] in args.lessons]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()}
    results["command"] = "PYTHONPATH=. python bench/lesson_times.py " + " ".join(
        f"--mode {' '.join(args.mode)} --threads {args.threads}".split())
    print(f"{'lesson':40s} {'mode':5s} {'thr':>3s} {'seconds':>8s}  load  status")
    for mode in args.mode:
        for path in paths:
            key = f"{path.stem}|{mode}|{args.threads}"
            if args.skip_done and key in results["runs"]:
                continue
            row = run_lesson(path, mode == "fast", args.threads, args.cell_timeout)
            results["runs"][key] = {"lesson": path.stem, "mode": mode, "threads": args.threads, **row,
                                    "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            RESULTS.parent.mkdir(exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{path.stem:40s} {mode:5s} {args.threads:3d} {row['seconds']:8.1f}  "
                  f"{row['load_1min_before']:4.1f}  {row['status']}", flush=True)


if __name__ == "__main__":
    main()
