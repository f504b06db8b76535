"""Noise schedules and the forward process q(x_t | x_0) (lesson 01; used by every later lesson).

A schedule is a sequence beta_1..beta_T of per-step noise variances. Everything else follows:

    alpha_t     = 1 - beta_t
    alpha_bar_t = prod_{s<=t} alpha_s                              (Ho et al. 2020, arXiv:2006.11239)
    q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)                          (Eq. 4)
    SNR(t)      = alpha_bar_t / (1 - alpha_bar_t)                 (Kingma et al. 2021, arXiv:2107.00630)

Three constructors: ``linear`` (Ho et al.), ``cosine`` (Nichol and Dhariwal 2021, arXiv:2102.09672,
equal to ``diffusers``' ``squaredcos_cap_v2``) and ``scaled_linear`` (Stable Diffusion's).
Timesteps are 0-based as in ``diffusers``: ``t = 0`` is the first noising step, ``t = T - 1`` the last.
Quantities are computed once in float64 and cast to the input's dtype when used.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import validate

Tensor = torch.Tensor
MAX_STEPS = 100_000  # T; a schedule is a few (T,) float64 tensors, and 1000 is what every model uses


def _check_beta_range(beta_start: float, beta_end: float) -> None:
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        validate.number(name, value, 0.0, 1.0, low_open=True, high_open=True)
    if beta_start > beta_end:
        raise ValueError(
            f"beta_start must be <= beta_end, got beta_start={beta_start!r} > beta_end={beta_end!r}"
        )


class NoiseSchedule:
    """A discrete noise schedule with its derived quantities, all float64 tensors of shape (T,).

    Attributes: ``betas``, ``alphas``, ``alphas_cumprod`` (alpha-bar), ``alphas_cumprod_prev``
    (alpha-bar_{t-1}, with alpha-bar_{-1} = 1), ``posterior_variance`` (beta-tilde_t, Eq. 7).
    """

    def __init__(self, betas: Tensor, name: str = "custom"):
        if torch.is_tensor(betas) and (betas.is_complex() or betas.dtype == torch.bool):
            raise ValueError(f"betas must be real numbers in (0, 1), got dtype {betas.dtype}")
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            bad = int(torch.nonzero((betas <= 0) | (betas >= 1) | betas.isnan())[0])
            raise ValueError(
                f"betas must lie in the open interval (0, 1), got betas[{bad}]={betas[bad].item()!r}"
            )
        self.name = name
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)  # alpha-bar_t
        self.alphas_cumprod_prev = torch.cat([betas.new_ones(1), self.alphas_cumprod[:-1]])
        # Posterior q(x_{t-1} | x_t, x_0) = N(mu-tilde, beta-tilde I), Ho et al. Eqs. 6-7.
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef_x0 = betas * self.alphas_cumprod_prev.sqrt() / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef_xt = (1.0 - self.alphas_cumprod_prev) * self.alphas.sqrt() / (
            1.0 - self.alphas_cumprod
        )

    # ---- constructors -------------------------------------------------------------------------

    @classmethod
    def linear(cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        """Betas evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020, Sec. 4)."""
        num_steps = validate.integer("num_steps", num_steps, low=1, high=MAX_STEPS)
        _check_beta_range(beta_start, beta_end)
        betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
        return cls(betas, name="linear")

    @classmethod
    def scaled_linear(
        cls, num_steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
    ):
        """Stable Diffusion's schedule: sqrt(beta) evenly spaced, then squared.

        The defaults are the values in SD 1.x's ``scheduler_config.json`` (CompVis/LDM configs).
        """
        num_steps = validate.integer("num_steps", num_steps, low=1, high=MAX_STEPS)
        _check_beta_range(beta_start, beta_end)
        sqrt_betas = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), num_steps,
                                    dtype=torch.float64)
        return cls(sqrt_betas**2, name="scaled_linear")

    @classmethod
    def cosine(cls, num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999):
        """Nichol and Dhariwal 2021, Eq. 17: alpha-bar(t) = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2).

        beta_t = 1 - alpha-bar(t+1)/alpha-bar(t), clipped at ``max_beta`` = 0.999 to avoid the
        singularity at t = T (the paper's clip; ``diffusers``' ``squaredcos_cap_v2``).
        """
        num_steps = validate.integer("num_steps", num_steps, low=1, high=MAX_STEPS)
        validate.number("s", s, 0.0, 1.0, high_open=True)
        validate.number("max_beta", max_beta, 0.0, 1.0, low_open=True, high_open=True)

        def f(t: Tensor) -> Tensor:
            return torch.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2

        steps = torch.arange(num_steps, dtype=torch.float64)
        betas = (1.0 - f(steps + 1) / f(steps)).clamp(max=max_beta)
        return cls(betas, name="cosine")

    @classmethod
    def from_config(cls, config: dict) -> NoiseSchedule:
        """Rebuild a schedule from a card's ``"schedule"`` entry, e.g. ``{"name": "linear", "num_steps": 1000}``.

        Any other keys are the constructor's arguments (``beta_start``, ``beta_end``, ``s``, ...).
        """
        constructors = {"linear": cls.linear, "cosine": cls.cosine, "scaled_linear": cls.scaled_linear}
        values = dict(config)
        name = values.pop("name", None)
        if name not in constructors:
            raise ValueError(f"schedule name must be one of {sorted(constructors)}, got {name!r}")
        return constructors[name](**values)

    # ---- the forward process ------------------------------------------------------------------

    @property
    def num_steps(self) -> int:
        """T, the number of noising steps."""
        return self.betas.numel()

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """Sample x_t ~ q(x_t | x_0) in closed form (Ho et al. Eq. 4):

            x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps

        Args: ``x0`` and ``noise`` (eps) of the same shape (B, ...); ``t`` integer tensor (B,).
        Returns x_t of x0's shape and dtype.
        """
        validate.same_shape("noise", validate.floating_tensor("noise", noise), "x0", validate.floating_tensor("x0", x0))
        validate.same_dtype("noise", noise, "x0", x0)
        sqrt_ab = self.gather(self.alphas_cumprod.sqrt(), t, x0)
        sqrt_1m_ab = self.gather((1.0 - self.alphas_cumprod).sqrt(), t, x0)
        return sqrt_ab * x0 + sqrt_1m_ab * noise  # Eq. 4

    def q_step(self, x_prev: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """One forward step x_{t-1} -> x_t of q(x_t | x_{t-1}) (Ho et al. Eq. 2):

            x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps

        Iterating it from x_0 gives the same distribution as ``add_noise`` (lesson 01 checks this).
        With 0-based t, ``q_step`` at t applies beta_t to x_{t-1}, where x_{-1} is x_0.
        """
        validate.same_shape("noise", noise, "x_prev", validate.floating_tensor("x_prev", x_prev))
        beta = self.gather(self.betas, t, x_prev)
        return (1.0 - beta).sqrt() * x_prev + beta.sqrt() * noise  # Eq. 2

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) at integer timesteps ``t`` (float64).

        In decibels: ``10 * log10(snr)``.
        """
        t = self._check_t(t)
        ab = self.alphas_cumprod[t]
        return ab / (1.0 - ab)

    def predict_x0(self, x_t: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """Invert Eq. 4 for x_0 given a noise prediction (Song et al. 2020, arXiv:2010.02502, Eq. 9):

            x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
        """
        validate.same_shape("eps", eps, "x_t", validate.floating_tensor("x_t", x_t))
        sqrt_ab = self.gather(self.alphas_cumprod.sqrt(), t, x_t)
        sqrt_1m_ab = self.gather((1.0 - self.alphas_cumprod).sqrt(), t, x_t)
        return (x_t - sqrt_1m_ab * eps) / sqrt_ab

    def v_target(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """The velocity v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0 (Salimans & Ho 2022,
        arXiv:2202.00512, Sec. 4), ``diffusers``' "v_prediction" target."""
        validate.same_shape("eps", eps, "x0", validate.floating_tensor("x0", x0))
        sqrt_ab = self.gather(self.alphas_cumprod.sqrt(), t, x0)
        sqrt_1m_ab = self.gather((1.0 - self.alphas_cumprod).sqrt(), t, x0)
        return sqrt_ab * eps - sqrt_1m_ab * x0

    def eps_from_v(self, x_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
        """eps = sqrt(alpha_bar_t) v + sqrt(1 - alpha_bar_t) x_t, from x_t = sqrt(ab) x0 + sqrt(1 - ab) eps
        and the definition of v (so that every eps-sampler can sample a v-model)."""
        validate.same_shape("v", v, "x_t", validate.floating_tensor("x_t", x_t))
        sqrt_ab = self.gather(self.alphas_cumprod.sqrt(), t, x_t)
        sqrt_1m_ab = self.gather((1.0 - self.alphas_cumprod).sqrt(), t, x_t)
        return sqrt_ab * v + sqrt_1m_ab * x_t

    def posterior_mean(self, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Mean mu-tilde_t(x_t, x_0) of q(x_{t-1} | x_t, x_0) (Ho et al. Eq. 7):

            mu-tilde = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                     + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
        """
        validate.same_shape("x0", x0, "x_t", validate.floating_tensor("x_t", x_t))
        c0 = self.gather(self.posterior_mean_coef_x0, t, x_t)
        ct = self.gather(self.posterior_mean_coef_xt, t, x_t)
        return c0 * x0 + ct * x_t

    def posterior_var(self, t: Tensor, like: Tensor | None = None) -> Tensor:
        """Variance beta-tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t (Ho et al. Eq. 7).

        Shaped (B, 1, ..., 1) to broadcast against ``like`` when given, else (B,) float64.
        """
        if like is None:
            return self.posterior_variance[self._check_t(t)]
        return self.gather(self.posterior_variance, t, like)

    # ---- helpers ------------------------------------------------------------------------------

    def _check_t(self, t) -> Tensor:
        t = validate.integer_tensor("t", t).cpu()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_steps):
            bad = int(t.min()) if int(t.min()) < 0 else int(t.max())
            raise ValueError(f"t must be in [0, {self.num_steps}) (num_steps={self.num_steps}), got {bad}")
        return t

    def gather(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """``values[t]`` reshaped to (B, 1, ..., 1) in ``like``'s dtype and device, to broadcast."""
        t = self._check_t(t)
        if t.ndim > 1:
            raise ValueError(f"t must be a scalar or have shape (B,), got shape {tuple(t.shape)}")
        if t.ndim == 1 and like.ndim >= 1 and t.shape[0] not in (1, like.shape[0]):
            raise ValueError(
                f"t must have shape (B,) with B = x.shape[0] = {like.shape[0]}, got {tuple(t.shape)}"
            )
        out = values[t].to(device=like.device, dtype=like.dtype)
        return out.reshape(-1, *([1] * max(like.ndim - 1, 0))) if t.ndim == 1 else out

    def __repr__(self) -> str:
        return (f"NoiseSchedule.{self.name}(num_steps={self.num_steps}, "
                f"beta_1={self.betas[0].item():.3g}, beta_T={self.betas[-1].item():.3g})")


class EpsFromV(nn.Module):
    """A v-predicting model behind the eps call signature (``NoiseSchedule.eps_from_v``), so that every
    eps-sampler, guidance and the lessons' code sample it unchanged: ``model(x_t, t, labels) -> eps``."""

    def __init__(self, model: nn.Module, schedule: NoiseSchedule):
        super().__init__()
        self.model, self.schedule = model, schedule

    @property
    def config(self):
        """The wrapped model's config (sample shape, classes)."""
        return self.model.config

    def forward(self, x_t: Tensor, t: Tensor, labels=None) -> Tensor:
        return self.schedule.eps_from_v(x_t, self.model(x_t, t, labels), t)
