"""Lesson 11's sweep: sample quality against the number of network evaluations, for every sampler.

The same solvers also drive Stable Diffusion: ``measure_sd_solver`` runs ``sd.generate`` (lesson
08's hand-written loop) on ``sd-mnist`` with each ``diffusers`` scheduler swapped in
(``bench/sd_mnist_solvers.py``).

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

import numpy as np
import torch

from .. import evaluate, sd, validate
from ..samplers import DDIMSampler, DDPMSampler
from ..sampling import sample
from ..schedules import NoiseSchedule
from ..sd import mnist
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


def sample_and_evaluate(model, make_sampler, labels: Tensor, seeds):
    """Sample ``labels`` once per seed with a fresh ``make_sampler()`` and evaluate each set
    (``evaluate.evaluate_samples``: against as many real test digits). Returns the ``Quality`` of
    each seed, the seconds spent sampling, and the last sampler (its timesteps give the NFE)."""
    seeds = [validate.integer("seed", s) for s in seeds]
    qualities, seconds = [], 0.0
    for seed in seeds:
        sampler = make_sampler()
        start = time.perf_counter()
        images = sample(model, sampler, (len(labels), 1, 28, 28), labels,
                        torch.Generator().manual_seed(seed), progress=False).clamp(-1, 1)
        seconds += time.perf_counter() - start
        qualities.append(evaluate.evaluate_samples(images, labels))
    return qualities, seconds, sampler


def measure_sampler(model, name: str, make_sampler, labels: Tensor, seeds) -> SweepRow:
    """``sample_and_evaluate``'s accuracy and FID as mean and sd over seeds, with NFE and time per image."""
    qualities, seconds, sampler = sample_and_evaluate(model, make_sampler, labels, seeds)
    (acc, acc_sd), (fid, fid_sd) = mean_sd([q.accuracy for q in qualities]), mean_sd([q.fid for q in qualities])
    return SweepRow(name, len(sampler.timesteps), sampler.num_inference_steps, acc, acc_sd, fid, fid_sd,
                    1000 * seconds / (len(qualities) * len(labels)))


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


# ---- the same sweep on Stable Diffusion (sd-mnist), through the hand-written loop -----------------

SD_SOLVERS = {  # name -> (sd.SCHEDULERS name, Karras sigmas); the pipeline's PNDM is the reference
    "ddim": ("ddim", False), "euler": ("euler", False), "euler-karras": ("euler", True),
    "heun": ("heun", False), "dpmsolver": ("dpmsolver", False), "dpmsolver-karras": ("dpmsolver", True),
}


def sd_steps_for(name: str, nfe: int) -> int:
    """The steps that spend ``nfe`` UNet calls: n for the first-order and multistep solvers, the
    largest n with 2n - 1 <= nfe for Heun (its corrector calls the UNet again on every step but the last)."""
    return (nfe + 1) // 2 if name.startswith("heun") else nfe


def _digit_image(pil) -> Tensor:
    """A PIL image from sd-mnist's pipeline (32 x 32 RGB) -> (1, 1, 28, 28) in [-1, 1]."""
    pixels = torch.from_numpy(np.asarray(pil, dtype="float32")).permute(2, 0, 1)[None] / 255
    return mnist.to_grey(pixels * 2 - 1)


def sd_images(pipe, name: str, nfe: int, prompts: list[str], seeds, guidance_scale: float = 5.0):
    """``sd.generate`` (the hand-written loop) with solver ``name`` of ``SD_SOLVERS`` (or "pndm", the
    pipeline's own, at ``nfe`` - 1 steps) for each seed and prompt: digits (seeds, prompts, 1, 28, 28)
    in [-1, 1], the UNet calls per image (the guided pair is one batched call) and the seconds spent."""
    validate.one_of("sampler", name, {**SD_SOLVERS, "pndm": None})
    steps = nfe - 1 if name == "pndm" else sd_steps_for(name, nfe)  # PNDM's first step calls the UNet twice
    scheduler, karras = SD_SOLVERS.get(name, (None, False))
    images, seconds, calls = [], 0.0, []
    for seed in seeds:
        for prompt in prompts:
            counted = []
            start = time.perf_counter()
            image = sd.generate(pipe, prompt, guidance_scale=guidance_scale, num_inference_steps=steps, seed=seed,
                                scheduler=scheduler, karras=karras, on_step=lambda *a, c=counted: c.append(1))
            seconds += time.perf_counter() - start
            images.append(_digit_image(image))
            calls.append(len(counted))  # one per loop step
    return torch.cat(images).view(len(seeds), len(prompts), 1, 28, 28), max(calls), seconds


def measure_sd_solver(pipe, name: str, nfe: int, prompts: list[str], labels: Tensor, seeds, reference: Tensor,
                      guidance_scale: float = 5.0) -> dict:
    """One solver at one NFE on Stable Diffusion: the course classifier's accuracy on the digits asked
    for, and the mean absolute pixel distance (in [0, 1] units) to ``reference``, the same seeds and
    prompts solved finely (where the ODE's solution is); each as mean and sd over seeds."""
    images, calls, seconds = sd_images(pipe, name, nfe, prompts, seeds, guidance_scale)
    accuracies = [evaluate.conditional_accuracy(per_seed, labels) for per_seed in images]
    # pixels in [-1, 1]: half the mean absolute difference is the distance in [0, 1] units
    distances = [float((a - b).abs().mean() / 2) for a, b in zip(images, reference, strict=True)]
    (acc, acc_sd), (dist, dist_sd) = mean_sd(accuracies), mean_sd(distances)
    return {"sampler": name, "nfe": calls, "steps": nfe - 1 if name == "pndm" else sd_steps_for(name, nfe),
            "accuracy": acc, "accuracy_sd": acc_sd, "distance_to_converged": dist, "distance_sd": dist_sd,
            "ms_per_image": 1000 * seconds / images.shape[0] / images.shape[1]}
