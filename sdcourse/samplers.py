"""The reverse process: DDPM and DDIM samplers and the sampling loop (lesson 03; also 02, 04, 07).

A sampler turns the model's noise prediction eps_theta(x_t, t) at one timestep into a sample at the
previous timestep. Both samplers here follow ``diffusers``' scheduler contract (``timesteps``,
``step(model_output, t, x_t)``) and give the same numbers as ``DDPMScheduler`` / ``DDIMScheduler``
configured equivalently (see ``tests/test_samplers.py``):

* ``DDPMSampler``: ancestral sampling, Ho et al. 2020 (arXiv:2006.11239), Algorithm 2, with the
  posterior variance sigma_t^2 = beta-tilde_t (Eq. 7) and no noise at the last step (t = 0). It
  visits every one of the T training timesteps.
* ``DDIMSampler``: Song et al. 2020 (arXiv:2010.02502), Eq. 12 with sigma_t from Eq. 16. It visits
  ``num_inference_steps`` of the T timesteps; ``eta`` = 0 is deterministic DDIM, ``eta`` = 1 has
  DDPM's variance on the coarser grid.

Notation. Timesteps are 0-based as in ``diffusers`` and ``schedules.py``: ``t = 0`` is the first
noising step, so Ho et al.'s t = 1 is our t = 0. ``alpha_bar`` is Ho et al.'s alpha-bar_t, which
Song et al. write alpha_t (their alpha_t is a cumulative product). Both samplers take a
``NoiseSchedule`` and use its formulas (``predict_x0``, ``posterior_mean``, ``posterior_var``)
rather than recomputing them.

Clipping. With ``clip_sample=True`` (the default, as in both ``diffusers`` schedulers) the predicted
x_0 is clipped to [-1, 1], the range of the training images, before it is used. This helps most at
large t, where x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) divides by a small
number and a slightly wrong eps gives wild values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import validate
from .sampling import Trajectory, sample  # noqa: F401 -- the loop every sampler runs in, re-exported
from .schedules import NoiseSchedule

Tensor = torch.Tensor


@dataclass(frozen=True)
class SamplerOutput:
    """What one ``step`` returns (``diffusers``: ``prev_sample`` and ``pred_original_sample``)."""

    prev_sample: Tensor  # x at the previous timestep (x_{t-1} for DDPM, x_{t_prev} for DDIM), x_t's shape
    pred_x0: Tensor  # the model's current guess of the clean image, x0_hat (after clipping, if on)


# ---- shared helpers -----------------------------------------------------------------------------


def _check_schedule(schedule) -> NoiseSchedule:
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(
            f"schedule must be a sdcourse.schedules.NoiseSchedule, got {type(schedule).__name__}"
        )
    return schedule


def _as_int_timestep(t, name: str = "t") -> int:
    """A Python int from an int or a one-element integer tensor (from ``timesteps``)."""
    if isinstance(t, torch.Tensor):
        if t.numel() != 1 or t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
            raise ValueError(
                f"{name} must be an int or a one-element integer tensor, got a {t.dtype} tensor "
                f"of shape {tuple(t.shape)}"
            )
        return int(t.item())
    if isinstance(t, bool) or not isinstance(t, int):
        raise ValueError(f"{name} must be an int or a one-element integer tensor, got {t!r}")
    return t


def _check_step_inputs(sampler, model_output: Tensor, t, x_t: Tensor) -> int:
    validate.floating_tensor("model_output", model_output)
    validate.floating_tensor("x_t", x_t)
    validate.same_shape("model_output", model_output, "x_t", x_t)
    t = _as_int_timestep(t)
    if t not in sampler._timestep_set:
        steps = sampler.timesteps
        raise ValueError(
            f"t must be one of this sampler's timesteps ({len(steps)} values from {int(steps[0])} "
            f"down to {int(steps[-1])}), got {t}"
        )
    return t


def _noise_like(x: Tensor, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
    """Standard normal noise z of x's shape, drawn like ``diffusers``' ``randn_tensor``.

    With a CPU generator and x on another device, the noise is drawn on the CPU and moved, so a
    seed gives the same numbers on every device (and the same numbers ``diffusers`` draws).
    """
    if noise is not None:
        if generator is not None:
            raise ValueError("pass either generator or noise to step, not both")
        validate.same_shape("noise", noise, "x_t", x)
        return noise.to(device=x.device, dtype=x.dtype)
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


# ---- DDPM ---------------------------------------------------------------------------------------


class DDPMSampler:
    """Ancestral sampling, Ho et al. 2020, Algorithm 2: x_{t-1} ~ p_theta(x_{t-1} | x_t), t = T-1..0

    Symbols (ours -> Ho et al.): ``x_t`` -> x_t; ``model_output`` -> eps_theta(x_t, t);
    ``pred_x0`` -> x0_hat (Eq. 15); the step's mean -> mu-tilde_t(x_t, x0_hat) (Eq. 7, which with
    x0_hat unclipped equals Eq. 11); its variance sigma_t^2 = beta-tilde_t (Eq. 7, the "fixed_small"
    choice of Sec. 3.2); ``noise`` -> z ~ N(0, I).

    Equivalent to ``diffusers.DDPMScheduler(beta_schedule=..., variance_type="fixed_small",
    clip_sample=clip_sample, prediction_type="epsilon")`` without ``set_timesteps``.

    Args:
        schedule: the ``NoiseSchedule`` the model was trained with (T = ``schedule.num_steps``).
        clip_sample: clip x0_hat to [-1, 1] before taking the mean (``diffusers``' default, True).
    """

    def __init__(self, schedule: NoiseSchedule, clip_sample: bool = True):
        self.schedule = _check_schedule(schedule)
        self.clip_sample = bool(clip_sample)
        self.num_inference_steps = schedule.num_steps
        self.timesteps = torch.arange(schedule.num_steps - 1, -1, -1, dtype=torch.int64)  # (T,) T-1..0
        self._timestep_set = frozenset(range(schedule.num_steps))

    init_noise_sigma = 1.0  # x_T ~ N(0, I) (the common contract with sdcourse.solvers)

    def scale_model_input(self, x_t: Tensor, t) -> Tensor:
        """The model takes x_t as it is (the common contract; the sigma-space solvers rescale)."""
        return x_t

    def prev_timestep(self, t) -> int:
        """The timestep after ``t`` in the reverse process: t - 1 (-1 after the last step)."""
        return _as_int_timestep(t) - 1

    def step(
        self,
        model_output: Tensor,
        t,
        x_t: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> SamplerOutput:
        """One step of Algorithm 2: x_{t-1} = mu-tilde_t(x_t, x0_hat) + sqrt(beta-tilde_t) z.

        Args:
            model_output: eps_theta(x_t, t), shape (B, C, H, W) like ``x_t``.
            t: the current timestep, an int or one-element integer tensor in ``timesteps``.
            x_t: the current sample, (B, C, H, W).
            generator: draws z (not used at t = 0, where no noise is added).
            noise: z given instead of drawn (for tests and exercises); not with ``generator``.
        Returns:
            ``SamplerOutput(prev_sample=x_{t-1}, pred_x0=x0_hat)``.
        """
        t = _check_step_inputs(self, model_output, t, x_t)
        schedule, t_tensor = self.schedule, torch.tensor(t)
        # 1. predicted x_0 from the predicted noise, by inverting Eq. 4 (Ho et al. Eq. 15)
        pred_x0 = schedule.predict_x0(x_t, model_output, t_tensor)
        # 2. clip x0_hat to the data range [-1, 1] (optional)
        if self.clip_sample:
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
        # 3. mean of the posterior q(x_{t-1} | x_t, x_0 = x0_hat), mu-tilde_t (Eq. 7)
        mean = schedule.posterior_mean(pred_x0, x_t, t_tensor)
        # 4. add sigma_t z, sigma_t^2 = beta-tilde_t (Eq. 7); z = 0 at t = 0 (Algorithm 2, line 3)
        if t > 0:
            z = _noise_like(model_output, generator, noise)
            prev_sample = mean + schedule.posterior_var(t_tensor, like=x_t).sqrt() * z
        else:
            prev_sample = mean
        return SamplerOutput(prev_sample=prev_sample, pred_x0=pred_x0)

    def __repr__(self) -> str:
        return f"DDPMSampler({self.schedule!r}, clip_sample={self.clip_sample})"


# ---- DDIM ---------------------------------------------------------------------------------------


class DDIMSampler:
    """Denoising diffusion implicit models, Song et al. 2020, Eq. 12 with sigma_t(eta) from Eq. 16.

    Symbols (ours -> Song et al.; their alpha_t is our cumulative alpha_bar_t):
    ``alpha_bar[t]`` -> alpha_t; ``alpha_bar[t_prev]`` -> alpha_{t-1} (the previous *visited*
    timestep, = 1 after the last step, "alpha_0 := 1"); ``model_output`` -> eps_theta^(t)(x_t);
    ``pred_x0`` -> the "predicted x_0" term of Eq. 12 (= f_theta^(t)(x_t), Eq. 9); ``sigma`` ->
    sigma_t(eta) of Eq. 16; ``direction`` -> "direction pointing to x_t"; ``noise`` -> eps_t.

    Timesteps: ``diffusers``' default "leading" spacing with ``steps_offset=0``: with
    k = T // num_inference_steps, the timesteps are (n-1) k, ..., 2k, k, 0. (So with T = 1000 and
    3 steps the first is 666, not 999; "trailing" spacing would start at 999, Lin et al. 2023,
    arXiv:2305.08891, Table 2.)

    Equivalent to ``diffusers.DDIMScheduler(beta_schedule=..., clip_sample=clip_sample,
    set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading", prediction_type="epsilon")``
    after ``set_timesteps(num_inference_steps)``, with ``step(..., eta=eta,
    use_clipped_model_output=use_clipped_model_output)``.

    Args:
        schedule: the ``NoiseSchedule`` the model was trained with (T = ``schedule.num_steps``).
        num_inference_steps: how many timesteps to visit, 1 to T.
        eta: 0 = deterministic DDIM; 1 = the DDPM posterior variance on this coarser grid.
        clip_sample: clip x0_hat to [-1, 1] (``diffusers``' default, True).
        use_clipped_model_output: after clipping, re-derive eps from the clipped x0_hat,
            eps = (x_t - sqrt(alpha_t) x0_hat) / sqrt(1 - alpha_t) (Eq. 9 solved for eps, as GLIDE
            does), so that both terms of Eq. 12 describe the same x_0. Default True; ``diffusers``'
            ``step`` defaults to False, which pairs a clipped x0_hat with the unclipped eps: the
            mismatch is small without guidance but wrecks guided samples (lesson 04).
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int,
        eta: float = 0.0,
        clip_sample: bool = True,
        use_clipped_model_output: bool = True,
    ):
        self.schedule = _check_schedule(schedule)
        T = schedule.num_steps
        self.num_inference_steps = validate.integer("num_inference_steps", num_inference_steps, 1, T)
        self.eta = validate.number("eta", eta, 0.0, 1.0, meaning="(0 = DDIM, 1 = DDPM-like)")
        self.clip_sample = bool(clip_sample)
        self.use_clipped_model_output = bool(use_clipped_model_output)
        self.step_ratio = T // num_inference_steps  # k: timesteps skipped per step ("leading" spacing)
        self.timesteps = torch.arange(num_inference_steps, dtype=torch.int64).flip(0) * self.step_ratio  # (n,)
        self._timestep_set = frozenset(self.timesteps.tolist())

    init_noise_sigma = 1.0  # x_T ~ N(0, I)

    def scale_model_input(self, x_t: Tensor, t) -> Tensor:
        """The model takes x_t as it is (the common contract)."""
        return x_t

    def prev_timestep(self, t) -> int:
        """The next timestep visited after ``t``: t - k (negative after the last step: x_0)."""
        return _as_int_timestep(t) - self.step_ratio

    def step(
        self,
        model_output: Tensor,
        t,
        x_t: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> SamplerOutput:
        """One step of Eq. 12:

            x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z

        Args:
            model_output: eps_theta(x_t, t), shape (B, C, H, W) like ``x_t``.
            t: the current timestep, an int or one-element integer tensor in ``timesteps``.
            x_t: the current sample, (B, C, H, W).
            generator: draws z when ``eta`` > 0 (at every step, the last included, as ``diffusers``
                does, so that one seed gives the same stream of numbers in both).
            noise: z given directly instead of drawn; not with ``generator``.
        Returns:
            ``SamplerOutput(prev_sample=x_{t_prev}, pred_x0=x0_hat)``.
        """
        t = _check_step_inputs(self, model_output, t, x_t)
        schedule = self.schedule
        # 1. the previous visited timestep, t_prev = t - k
        t_prev = self.prev_timestep(t)
        # 2. alpha_bar_t, alpha_bar_{t_prev} (Song et al.'s alpha_t, alpha_{t-1}); 1 past the end
        alpha_bar_t = float(schedule.alphas_cumprod[t])
        alpha_bar_prev = float(schedule.alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
        # 3. "predicted x_0" of Eq. 12: (x_t - sqrt(1 - alpha_t) eps) / sqrt(alpha_t) (Eq. 9)
        pred_x0 = schedule.predict_x0(x_t, model_output, torch.tensor(t))
        # 4. clip x0_hat to the data range [-1, 1] (optional)
        eps = model_output
        if self.clip_sample:
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
            if self.use_clipped_model_output:  # the eps that this clipped x0_hat implies (Eq. 9)
                eps = (x_t - math.sqrt(alpha_bar_t) * pred_x0) / math.sqrt(1 - alpha_bar_t)
        # 5. Eq. 16: sigma_t(eta) = eta sqrt((1 - alpha_{t-1}) / (1 - alpha_t))
        #                              * sqrt(1 - alpha_t / alpha_{t-1})
        sigma = (
            self.eta
            * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t))
            * math.sqrt(1 - alpha_bar_t / alpha_bar_prev)
        )
        # 6. "direction pointing to x_t" of Eq. 12: sqrt(1 - alpha_{t-1} - sigma_t^2) eps
        direction = math.sqrt(max(1 - alpha_bar_prev - sigma**2, 0.0)) * eps
        # 7. x_{t-1} of Eq. 12 without the random term
        prev_sample = math.sqrt(alpha_bar_prev) * pred_x0 + direction
        # 8. the random term sigma_t eps_t of Eq. 12 (drawn whenever eta > 0, as diffusers does)
        if self.eta > 0:
            prev_sample = prev_sample + sigma * _noise_like(model_output, generator, noise)
        return SamplerOutput(prev_sample=prev_sample, pred_x0=pred_x0)

    def __repr__(self) -> str:
        return (
            f"DDIMSampler({self.schedule!r}, num_inference_steps={self.num_inference_steps}, "
            f"eta={self.eta}, clip_sample={self.clip_sample}, "
            f"use_clipped_model_output={self.use_clipped_model_output})"
        )
