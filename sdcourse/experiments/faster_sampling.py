"""Lesson 11's sweep: sample quality against the number of network evaluations, for every sampler.

Each sampler of lessons 03 and 11 (``samplers``, ``solvers``) samples the same digits from the
same seeds; ``measure_sampler`` reports conditional accuracy (the course classifier) and FID
against as many real test digits, each as mean +/- sd over the seeds (``evaluate``), with the number of network
evaluations (NFE = ``len(sampler.timesteps)``) and the wall time per image. ``notebooks/11``
reads the full run's table, ``bench/solvers.py`` makes it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from .. import evaluate, validate
from ..samplers import DDIMSampler, DDPMSampler
from ..sampling import sample
from ..schedules import NoiseSchedule
from ..solvers import DPMSolverSampler, EulerSampler, HeunSampler, schedule_sigmas

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


class GaussianData(torch.nn.Module):
    """The exact noise predictor for data x_0 ~ N(0, c^2 I), whose ODE has a closed-form solution.

    With x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps, E[eps | x_t] = sqrt(1 - ab) x_t / (ab c^2 + 1 - ab),
    and the probability-flow ODE in sigma carries x(sigma_max) to x(0) = x(sigma_max) c / sqrt(c^2 +
    sigma_max^2) (``exact_x0``). alpha-bar at a fractional t comes from log sigma interpolated
    linearly in t, the inverse of ``solvers.sigma_to_timestep``, so model and solver agree on it.
    """

    def __init__(self, schedule, c: float = 0.5):
        super().__init__()
        self.log_sigmas = torch.from_numpy(schedule_sigmas(schedule)).log()
        self.c = validate.number("c", c, 0.0, low_open=True)

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        t = t.double().clamp(0, len(self.log_sigmas) - 1)
        low = t.floor().long().clamp(max=len(self.log_sigmas) - 2)
        log_sigma = torch.lerp(self.log_sigmas[low], self.log_sigmas[low + 1], t - low)
        ab = (1 / (1 + log_sigma.exp() ** 2)).to(x_t.dtype).view(-1, *[1] * (x_t.ndim - 1))
        return (1 - ab).sqrt() * x_t / (ab * self.c**2 + 1 - ab)


def exact_x0(x_T: Tensor, sampler, c: float) -> Tensor:
    """Where the exact ODE takes ``sampler``'s starting point x_T (already times init_noise_sigma)."""
    sigma_max = float(sampler.sigmas[0])
    if sampler.init_noise_sigma == 1.0:  # DPM-Solver starts from x_t itself: x(sigma_max) = x_T sqrt(sigma^2 + 1)
        x_T = x_T * (sigma_max**2 + 1) ** 0.5
    return x_T * c / (c**2 + sigma_max**2) ** 0.5


def ode_error(make_sampler, num_inference_steps: int, c: float = 0.5, shape=(64, 1, 4, 4), seed: int = 0,
              schedule=None) -> float:
    """Mean absolute error at x_0 of one solver on Gaussian data, against the exact ODE solution."""
    schedule = schedule if schedule is not None else NoiseSchedule.linear(1000)
    sampler = make_sampler(schedule, num_inference_steps)
    model = GaussianData(schedule, c)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x_T * sampler.init_noise_sigma
    for t in sampler.timesteps:
        x = sampler.step(model(sampler.scale_model_input(x, t), t.expand(shape[0])), t, x).prev_sample
    return float((x - exact_x0(x_T * sampler.init_noise_sigma, sampler, c)).abs().mean())


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def references(n: int) -> dict:
    """What real digits score at n (``evaluate``): the FID floor's mean and sd over training subsets,
    test vs test, and the classifier's accuracy on real digits (the ceiling of accuracy)."""
    floor_mean, floor_sd, subsets = evaluate.real_floor(n)
    test_vs_test, test_n = evaluate.test_vs_test(n)
    return {"fid_floor_mean": floor_mean, "fid_floor_sd": floor_sd, "fid_floor_subsets": subsets,
            "fid_test_vs_test": test_vs_test, "fid_test_vs_test_n": test_n,
            "classifier_real_accuracy": evaluate.classifier_real_accuracy()}


def measure_sampler(model, name: str, make_sampler, labels: Tensor, seeds) -> SweepRow:
    """Sample ``labels`` once per seed with a fresh ``make_sampler()``; accuracy and FID
    (``evaluate.evaluate_samples``: against as many real test digits) as mean and sd over seeds."""
    seeds = [validate.integer("seed", s) for s in seeds]
    accuracies, fids, seconds = [], [], 0.0
    for seed in seeds:
        sampler = make_sampler()
        start = time.perf_counter()
        images = sample(model, sampler, (len(labels), 1, 28, 28), labels,
                        torch.Generator().manual_seed(seed), progress=False).clamp(-1, 1)
        seconds += time.perf_counter() - start
        quality = evaluate.evaluate_samples(images, labels)
        accuracies.append(quality.accuracy)
        fids.append(quality.fid)
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
    rows = []
    if ddpm_reference:
        rows.append(measure_sampler(model, "ddpm", lambda: DDPMSampler(schedule), labels, seeds))
        report(format_row(rows[-1]))
    for name in names:
        for nfe in nfes:
            if name.startswith("heun") and nfe < 3:
                continue  # one Heun step with its corrector already costs 3 evaluations
            rows.append(measure_sampler(model, name, lambda n=nfe, k=name: SAMPLERS[k](schedule, n),
                                        labels, seeds))
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
