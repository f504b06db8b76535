"""Lesson 11's sweep: sample quality against the number of network evaluations, for every sampler.

Each sampler of lessons 03 and 11 (``samplers``, ``solvers``) samples the same digits from the
same seeds; ``measure_sampler`` reports conditional accuracy (the course classifier) and FID
against as many real test digits, each as mean +/- sd over the seeds, with the number of network
evaluations (NFE = ``len(sampler.timesteps)``) and the wall time per image. ``notebooks/11``
reads the full run's table, ``bench/solvers.py`` makes it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from .. import evaluate, validate
from ..data import load_mnist
from ..samplers import DDIMSampler, DDPMSampler
from ..sampling import sample
from ..solvers import DPMSolverSampler, EulerSampler, HeunSampler

Tensor = torch.Tensor

# name -> (schedule, NFE budget) -> sampler. Heun evaluates the network 2n - 1 times for n steps,
# so it gets the largest n within the budget.
SAMPLERS = {
    "ddim": lambda s, nfe: DDIMSampler(s, nfe),
    "euler": lambda s, nfe: EulerSampler(s, nfe),
    "euler-karras": lambda s, nfe: EulerSampler(s, nfe, use_karras_sigmas=True),
    "heun": lambda s, nfe: HeunSampler(s, (nfe + 1) // 2),
    "heun-karras": lambda s, nfe: HeunSampler(s, (nfe + 1) // 2, use_karras_sigmas=True),
    "dpmsolver": lambda s, nfe: DPMSolverSampler(s, nfe),
    "dpmsolver-karras": lambda s, nfe: DPMSolverSampler(s, nfe, use_karras_sigmas=True),
}


@dataclass(frozen=True)
class SweepRow:
    """One sampler at one NFE: mean and sd over seeds of ``num_samples`` digits each."""

    sampler: str
    nfe: int
    steps: int
    accuracy: float
    accuracy_sd: float
    fid: float
    fid_sd: float
    ms_per_image: float


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def real_test_features(n: int) -> Tensor:
    """Classifier features of n real test digits (a fixed random subset): FID's reference."""
    test = load_mnist("test", verbose=False)
    chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:n]
    return evaluate.features_and_logits(test.images[chosen])[0]


def measure_sampler(model, name: str, make_sampler, labels: Tensor, seeds, real_features: Tensor) -> SweepRow:
    """Sample ``labels`` once per seed with a fresh ``make_sampler()``; accuracy and FID over seeds."""
    seeds = [validate.integer("seed", s) for s in seeds]
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
    return SweepRow(name, len(sampler.timesteps), sampler.num_inference_steps, acc, acc_sd, fid, fid_sd,
                    1000 * seconds / (len(seeds) * len(labels)))


def sweep(model, schedule, nfes, names=tuple(SAMPLERS), num_samples: int = 200, seeds=(0, 1),
          ddpm_reference: bool = True, report=print) -> list[SweepRow]:
    """DDPM-1000 (if asked) and every sampler in ``names`` at every NFE in ``nfes``."""
    num_samples = validate.integer("num_samples", num_samples, 10)
    for name in names:
        validate.one_of("sampler", name, SAMPLERS)
    labels = torch.arange(num_samples) % 10  # every digit equally often
    real = real_test_features(num_samples)
    rows = []
    if ddpm_reference:
        rows.append(measure_sampler(model, "ddpm", lambda: DDPMSampler(schedule), labels, seeds, real))
        report(format_row(rows[-1]))
    for name in names:
        for nfe in nfes:
            if name.startswith("heun") and nfe < 3:
                continue  # one Heun step with its corrector already costs 3 evaluations
            rows.append(measure_sampler(model, name, lambda n=nfe, k=name: SAMPLERS[k](schedule, n),
                                        labels, seeds, real))
            report(format_row(rows[-1]))
    return rows


def format_row(r: SweepRow) -> str:
    return (f"{r.sampler:17s} NFE {r.nfe:4d}  accuracy {r.accuracy:.3f} +/- {r.accuracy_sd:.3f}  "
            f"FID {r.fid:7.1f} +/- {r.fid_sd:5.1f}  {r.ms_per_image:6.1f} ms/image")


def smallest_nfe(rows: list[SweepRow], fraction: float = 0.95) -> dict[str, int | None]:
    """For each sampler, the smallest NFE whose mean accuracy reaches ``fraction`` of DDPM-1000's."""
    reference = next(r.accuracy for r in rows if r.sampler == "ddpm")
    names = dict.fromkeys(r.sampler for r in rows if r.sampler != "ddpm")
    return {name: min((r.nfe for r in rows if r.sampler == name and r.accuracy >= fraction * reference),
                      default=None) for name in names}
