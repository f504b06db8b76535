"""Lesson 10's measurements: claims from popular articles about Stable Diffusion, tested.

Three claims need formulas of their own, kept here so they can be unit tested:

* Claim 5, the articles' reverse step x_{t-1} = (x_t - sqrt(beta_t) eps) / sqrt(1 - beta_t): the
  algebraic inverse of one forward step (Ho et al. 2020, arXiv:2006.11239, Eq. 2). It is right
  only when eps is the noise of that last step; the model's eps_theta estimates the total noise of
  Eq. 4, and the inverse adds no fresh noise. ``NaiveSampler`` runs it in ``sampling.sample``.
* Claim 6, "x_t = x_0 + sum of the eps_i": variance exploding, Var[x_t] = Var[x_0] + (t + 1) with
  0-based t, against the variance preserving Eq. 4, Var[x_t] = alpha_bar_t Var[x_0] + 1 - alpha_bar_t.
* Claim 10, the simplified loss against the variational bound: the KL term L_{t-1} of Eq. 5 between
  two Gaussians of equal variance (Eq. 8) equals the eps-error weighted as in Eq. 12; Eq. 14 drops
  that weight. ``reinitialized`` and ``perturbed`` make worse "checkpoints" of one network to rank.

``compare_reverse_steps`` is claim 5's measurement over seeds, as lesson 10 runs it (``bench/claims.py``
wrote the single-seed n = 100 run the lesson shows beside it).
"""

from __future__ import annotations

import copy

import torch

from .. import evaluate, validate
from ..samplers import DDPMSampler, SamplerOutput, _check_step_inputs
from ..sampling import sample
from ..schedules import NoiseSchedule
from .guidance_sweep import within_class_diversity

Tensor = torch.Tensor


def naive_reverse_step(x_t: Tensor, eps: Tensor, beta_t: float) -> Tensor:
    """The articles' step: x_{t-1} = (x_t - sqrt(beta_t) eps) / sqrt(1 - beta_t), Eq. 2 solved for x_{t-1}."""
    validate.same_shape("eps", validate.floating_tensor("eps", eps), "x_t", validate.floating_tensor("x_t", x_t))
    beta_t = validate.number("beta_t", beta_t, low=0.0, high=1.0, high_open=True)
    return (x_t - beta_t ** 0.5 * eps) / (1.0 - beta_t) ** 0.5


class NaiveSampler(DDPMSampler):
    """DDPM's 1,000 timesteps with ``naive_reverse_step`` in place of Algorithm 2 (no fresh noise).

    ``pred_x0`` is Eq. 15's x0_hat, reported so the trajectory can be compared with DDPM's; the
    step itself does not use it.
    """

    def step(self, model_output: Tensor, t, x_t: Tensor, generator=None, noise=None) -> SamplerOutput:
        """x_{t-1} = (x_t - sqrt(beta_t) eps_theta) / sqrt(1 - beta_t); ``generator``/``noise`` are unused."""
        t = _check_step_inputs(self, model_output, t, x_t)
        beta_t = float(self.schedule.betas[t])
        pred_x0 = self.schedule.predict_x0(x_t, model_output, torch.tensor(t))
        return SamplerOutput(prev_sample=naive_reverse_step(x_t, model_output, beta_t), pred_x0=pred_x0)


def _check_schedule(schedule) -> NoiseSchedule:
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a sdcourse.schedules.NoiseSchedule, got {type(schedule).__name__}")
    return schedule


def ve_variance(var_x0: float, t: Tensor) -> Tensor:
    """Var[x_t] for x_t = x_0 + sum_{i=0..t} eps_i (unit-variance eps_i, 0-based t): Var[x_0] + t + 1."""
    var_x0 = validate.number("var_x0", var_x0, low=0.0)
    return var_x0 + validate.integer_tensor("t", t).to(torch.float64) + 1.0


def vp_variance(schedule, var_x0: float, t: Tensor) -> Tensor:
    """Var[x_t] under Ho et al. Eq. 4: alpha_bar_t Var[x_0] + (1 - alpha_bar_t); 1 when Var[x_0] = 1."""
    schedule = _check_schedule(schedule)
    var_x0 = validate.number("var_x0", var_x0, low=0.0)
    ab = schedule.alphas_cumprod[schedule._check_t(t)].to(torch.float64)
    return ab * var_x0 + (1.0 - ab)


def ve_snr(var_x0: float, t: Tensor) -> Tensor:
    """Signal-to-noise ratio of the unscaled sum: Var[x_0] / (t + 1) (compare ``NoiseSchedule.snr``)."""
    var_x0 = validate.number("var_x0", var_x0, low=0.0)
    return var_x0 / (validate.integer_tensor("t", t).to(torch.float64) + 1.0)


def gaussian_kl(mean_q: Tensor, var_q: Tensor, mean_p: Tensor, var_p: Tensor) -> Tensor:
    """KL(N(mean_q, var_q) || N(mean_p, var_p)) per element (diagonal Gaussians), Ho et al. Eq. 5's terms:

        1/2 (log(var_p / var_q) + (var_q + (mean_q - mean_p)^2) / var_p - 1)
    """
    for name, value in (("mean_q", mean_q), ("var_q", var_q), ("mean_p", mean_p), ("var_p", var_p)):
        validate.floating_tensor(name, value)
    if bool((var_q <= 0).any()) or bool((var_p <= 0).any()):
        raise ValueError("var_q and var_p must be positive")
    return 0.5 * (torch.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1.0)


def vlb_eps_weight(schedule, t: Tensor) -> Tensor:
    """Eq. 12's weight beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)), sigma_t^2 = beta-tilde_t (t >= 1).

    With it, L_{t-1} = weight * ||eps - eps_theta||^2 (per element: divide by nothing, sum over
    elements for the image); Eq. 14's simplified loss sets the weight to 1.
    """
    schedule = _check_schedule(schedule)
    t = schedule._check_t(t)
    if bool((t < 1).any()):
        raise ValueError("t must be >= 1 for the KL terms (t = 0 is the decoder term L_0)")
    beta, alpha = schedule.betas[t], schedule.alphas[t]
    return beta ** 2 / (2.0 * schedule.posterior_variance[t] * alpha * (1.0 - schedule.alphas_cumprod[t]))


def vlb_term(schedule, x0: Tensor, noise: Tensor, eps_pred: Tensor, t: Tensor) -> Tensor:
    """L_{t-1} per image, nats summed over elements: KL(q(x_{t-1}|x_t,x_0) || p_theta(x_{t-1}|x_t)).

    q's mean is Eq. 7's mu-tilde(x_t, x_0), p's is mu-tilde(x_t, x0_hat) with x0_hat from Eq. 15
    (unclipped, which equals Eq. 11); both have variance beta-tilde_t, so only the means differ.
    """
    schedule = _check_schedule(schedule)
    vlb_eps_weight(schedule, t)  # validates t >= 1
    x_t = schedule.add_noise(x0, noise, t)
    mean_q = schedule.posterior_mean(x0, x_t, t)
    mean_p = schedule.posterior_mean(schedule.predict_x0(x_t, eps_pred, t), x_t, t)
    var = schedule.posterior_var(t, like=x_t).expand_as(x_t).to(x_t.dtype)
    return gaussian_kl(mean_q, var, mean_p, var).flatten(1).sum(1)


@torch.no_grad()
def simple_and_bound(model, schedule, images: Tensor, labels: Tensor | None, seed: int = 0) -> dict:
    """Monte Carlo estimates, one random t in [1, T) per image, of Eq. 14 and of Eq. 5's KL part.

    ``simple``: mean over elements of ||eps - eps_theta(x_t, t)||^2 (Eq. 14, the training loss).
    ``bound``: (T - 1) * mean of ``vlb_term`` in nats per image, i.e. sum_{t>=1} L_{t-1}; L_0 and L_T
    (the decoder and prior terms) are left out, so it is the part of -log p the model controls
    through t >= 1, not the whole bound. Each comes with its standard error (sd / sqrt(n)).
    """
    schedule = _check_schedule(schedule)
    images = validate.floating_tensor("images", images)
    g = torch.Generator().manual_seed(validate.integer("seed", seed, low=0))
    t = torch.randint(1, schedule.num_steps, (images.shape[0],), generator=g)
    noise = torch.randn(images.shape, generator=g)
    eps_pred = model(schedule.add_noise(images, noise, t), t, labels)
    simple = (noise - eps_pred).pow(2).flatten(1).mean(1)
    bound = (schedule.num_steps - 1) * vlb_term(schedule, images.double(), noise.double(), eps_pred.double(), t)
    n = images.shape[0] ** 0.5
    return {"simple": simple.mean().item(), "simple_se": simple.std().item() / n,
            "bound": bound.mean().item(), "bound_se": bound.std().item() / n, "n": images.shape[0]}


REVERSE_STEPS = ("DDPM posterior", "articles' step")  # Ho et al. Algorithm 2; ``NaiveSampler``


def compare_reverse_steps(model, schedule, labels: Tensor, seeds, fid: bool = True, progress: bool = False) -> dict:
    """Claim 5: for each seed, digits asked for ``labels`` (N,) from the same x_T with each of
    ``REVERSE_STEPS``, scored by ``sdcourse.evaluate``.

    Returns ``{"rows": [{"seed", "sampler", "accuracy", "fid" (None unless ``fid``), "diversity",
    "pixel_std"}, ...], "summary": {sampler: {key: (mean, sd over seeds)}}, "images": {sampler: the
    first seed's digits (N, 1, 28, 28)}}``. ``diversity`` is ``within_class_diversity`` (0 when
    every seed gives the same digit for a label); sd is 0.0 with one seed.
    """
    schedule = _check_schedule(schedule)
    labels = validate.integer_tensor("labels", labels)
    seeds = [validate.integer("seed", s, low=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    rows, images = [], {}
    for seed in seeds:
        for name, sampler in zip(REVERSE_STEPS, (DDPMSampler(schedule), NaiveSampler(schedule)), strict=True):
            x = sample(model, sampler, (len(labels), 1, 28, 28), labels=labels,
                       generator=torch.Generator().manual_seed(seed), progress=progress).clamp(-1, 1)
            images.setdefault(name, x)
            rows.append({"seed": seed, "sampler": name, "accuracy": evaluate.conditional_accuracy(x, labels),
                         "fid": evaluate.evaluate_samples(x, labels).fid if fid else None,
                         "diversity": within_class_diversity(x, labels), "pixel_std": x.std().item()})
    summary = {}
    for name in REVERSE_STEPS:
        mine = [r for r in rows if r["sampler"] == name]
        summary[name] = {}
        for key in ("accuracy", "fid", "diversity", "pixel_std"):
            if mine[0][key] is not None:
                values = torch.tensor([r[key] for r in mine], dtype=torch.float64)
                summary[name][key] = (values.mean().item(), values.std().item() if len(values) > 1 else 0.0)
    return {"rows": rows, "summary": summary, "images": images}


def reinitialized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of ``model`` with every submodule that has ``reset_parameters`` reset (an untrained model)."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state untouched
        torch.manual_seed(validate.integer("seed", seed, low=0))
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return fresh.eval()


@torch.no_grad()
def perturbed(model: torch.nn.Module, scale: float, seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` with Gaussian noise of ``scale`` times each weight tensor's sd added to it
    (a worse checkpoint of the same network, for ranking: larger ``scale``, worse model)."""
    scale = validate.number("scale", scale, low=0.0)
    noisy = copy.deepcopy(model)
    g = torch.Generator().manual_seed(validate.integer("seed", seed, low=0))
    for p in noisy.parameters():
        if p.numel() > 1:
            p.add_(torch.randn(p.shape, generator=g).to(p) * p.std() * scale)
    return noisy.eval()
