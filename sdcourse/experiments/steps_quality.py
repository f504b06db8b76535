"""Lesson 03's measurement: sample quality against the number of sampling steps.

For DDIM (Song et al. 2020, arXiv:2010.02502) at several step counts, and DDPM's 1,000 steps
(Ho et al. 2020, arXiv:2006.11239), ``measure`` samples the same labels from the same seed and
scores them with ``sdcourse.evaluate`` (accuracy with the classifier's own ceiling, FID with the
floor's mean and sd, the memorization check). The full run takes about 20 minutes on one CPU
thread, so ``bench/quality_vs_steps.py`` ships it as JSON (``RESULTS``) and lesson 03 plots that
file unless the learner asks to recompute.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from .. import config, evaluate, validate
from ..samplers import DDIMSampler, DDPMSampler
from ..sampling import sample
from . import quality_plots

RESULTS = config.REPO_ROOT / "bench" / "results" / "quality_vs_steps.json"


def measure(model, schedule, n: int, step_counts, with_ddpm: bool, seed: int = 3,
            progress: bool = True) -> dict[str, dict]:
    """{"DDIM-<s>" or "DDPM-1000": evaluate.Quality as a dict plus "seconds"} for ``n`` digits
    (labels 0..9 in turn) sampled from ``torch.Generator().manual_seed(seed)`` by each sampler."""
    n = validate.integer("n", n, low=2)
    wanted = torch.arange(n) % 10
    samplers = {f"DDIM-{s}": DDIMSampler(schedule, validate.integer("step_counts", s, low=1)) for s in step_counts}
    if with_ddpm:
        samplers["DDPM-1000"] = DDPMSampler(schedule)
    rows = {}
    for name, sampler in samplers.items():
        start = time.perf_counter()
        images = sample(model, sampler, (n, 1, 28, 28), labels=wanted, generator=torch.Generator().manual_seed(seed),
                        progress=progress)
        seconds = time.perf_counter() - start
        rows[name] = {**evaluate.evaluate_samples(images, wanted).as_dict(), "seconds": seconds}
    return rows


def save(rows: dict[str, dict], path: Path, **meta) -> Path:
    """Write ``rows`` with ``meta`` (the command, the hardware, the wall time) as JSON to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    return path


def load(path: Path = RESULTS) -> dict:
    """The shipped measurement: {"command", "hardware", "wall_seconds", "n", ..., "rows": {...}}."""
    if not path.exists():
        raise FileNotFoundError(f"no shipped measurement at {path}; run bench/quality_vs_steps.py to make it")
    return json.loads(path.read_text())


def plot(rows: dict[str, dict], source: str, ddpm_accuracy: tuple[float, int] | None = None):
    """Accuracy and FID against DDIM steps with the reference lines of ``quality_plots``, and
    DDPM-1000 when ``rows`` holds it (else its accuracy from ``ddpm_accuracy`` = (accuracy, n),
    if given). ``source`` says how it was measured."""
    steps = sorted(int(name.split("-")[1]) for name in rows if name.startswith("DDIM-"))
    ddim = [rows[f"DDIM-{s}"] for s in steps]
    first = ddim[0]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax1.semilogx(steps, [q["accuracy"] for q in ddim], "o-", label="DDIM")
    ax2.semilogx(steps, [q["fid"] for q in ddim], "o-", label="DDIM")
    if "DDPM-1000" in rows:
        ax1.plot([1000], [rows["DDPM-1000"]["accuracy"]], "s", label="DDPM-1000")
        ax2.plot([1000], [rows["DDPM-1000"]["fid"]], "s", label="DDPM-1000")
    elif ddpm_accuracy is not None:
        ax1.plot([1000], [ddpm_accuracy[0]], "s", label=f"DDPM-1000 (n={ddpm_accuracy[1]})")
    quality_plots.draw_ceiling(ax1, first["classifier_real_accuracy"])
    quality_plots.draw_floor(ax2, first["fid_floor_mean"], first["fid_floor_sd"], first["fid_test_vs_test"],
                             first["fid_test_vs_test_n"], first["n"])
    lowest = min(q["accuracy"] for q in ddim)
    ax1.set(xlabel="steps", ylabel="conditional accuracy", title=f"{first['n']} samples per point",
            ylim=(max(0.0, lowest - 0.1), 1.0))
    ax2.set(xlabel="steps", ylabel="classifier FID", title="FID, with real digits at the same n")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.suptitle(source, fontsize=8)
    fig.tight_layout()
    return fig
