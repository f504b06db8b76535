"""Checks for the exercises: call the learner's function on fresh random inputs, compare with the
library's reference, and say precisely what differs.

Every check follows one pattern (see ``check_add_noise``): for a few random trials, build inputs,
compute the reference, call the learner's function, and hand both to ``compare`` together with the
answers that typical mistakes would give. ``compare`` raises ``CheckFailed`` naming the first
element that differs, the expected and the received value, and the likely cause when the answer
matches a known mistake. A passing check prints one line.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping

import torch

from .schedules import NoiseSchedule

Tensor = torch.Tensor


class CheckFailed(AssertionError):
    """The learner's answer differs from the reference; the message says where and why."""


def compare(
    what: str,
    got,
    expected: Tensor,
    mistakes: Mapping[str, Tensor] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    context: str = "",
) -> None:
    """Raise ``CheckFailed`` unless ``got`` equals ``expected`` within tolerance.

    ``mistakes`` maps a description of a typical mistake to the value that mistake produces; when
    ``got`` matches one, the message names it as the likely cause.
    """
    where = f" ({context})" if context else ""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}{where}: expected a torch.Tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        raise CheckFailed(
            f"{what}{where}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
        )
    got64, expected64 = got.detach().double().cpu(), expected.detach().double().cpu()
    if torch.allclose(got64, expected64, atol=atol, rtol=rtol):
        return
    error = (got64 - expected64).abs().nan_to_num(float("inf"))
    index = tuple(int(i) for i in torch.nonzero(error == error.max())[0])
    message = (
        f"{what}{where}: element {list(index)} should be {expected64[index].item():.6g} "
        f"but is {got64[index].item():.6g} (max abs difference {error.max().item():.3g})"
    )
    for cause, wrong in (mistakes or {}).items():
        wrong = torch.as_tensor(wrong).detach().double().cpu()
        if wrong.shape == got64.shape and torch.allclose(got64, wrong, atol=atol, rtol=rtol):
            message += f".\nLikely cause: {cause}"
            break
    raise CheckFailed(message)


def call(fn: Callable, *args, what: str):
    """Call the learner's function, turning an exception into a ``CheckFailed`` that names it."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as err:
        raise CheckFailed(f"{what} raised {type(err).__name__}: {err}") from err


def generator(seed: int | None) -> torch.Generator:
    """A private generator for a check's inputs: fresh inputs each run unless ``seed`` is given.

    Seeded from the OS, so a check never touches (or reseeds) the learner's global RNG.
    """
    return torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(62))


def passed(what: str, trials: int) -> None:
    print(f"✓ {what}: matches the reference on {trials} random inputs.")


# ---- lesson 01: forward noising ---------------------------------------------------------------


def _random_linear_args(gen: torch.Generator) -> tuple[int, float, float]:
    num_steps = int(torch.randint(2, 1001, (1,), generator=gen))
    beta_start = float(torch.empty(1).uniform_(1e-5, 1e-3, generator=gen))
    beta_end = float(torch.empty(1).uniform_(5e-3, 5e-2, generator=gen))
    return num_steps, beta_start, beta_end


def check_linear_alpha_bar(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(num_steps, beta_start, beta_end) -> alpha_bar`` (shape (T,)) for the linear schedule."""
    gen = generator(seed)
    for _ in range(trials):
        num_steps, beta_start, beta_end = _random_linear_args(gen)
        ref = NoiseSchedule.linear(num_steps, beta_start, beta_end)
        got = call(fn, num_steps, beta_start, beta_end, what="linear_alpha_bar")
        compare(
            "alpha_bar",
            got,
            ref.alphas_cumprod,
            mistakes={
                "returned alpha_t = 1 - beta_t; alpha-bar_t is the cumulative product of the "
                "alphas (torch.cumprod).": ref.alphas,
                "took the cumulative product of beta_t; it should be of alpha_t = 1 - beta_t.":
                    torch.cumprod(ref.betas, 0),
                "alpha-bar is shifted by one step: alpha-bar_t includes alpha_t itself "
                "(alpha-bar_0 = 1 - beta_1, not 1).": ref.alphas_cumprod_prev,
                "returned 1 - alpha-bar_t (the noise variance) instead of alpha-bar_t.":
                    1 - ref.alphas_cumprod,
                "returned sqrt(alpha-bar_t); the square root belongs in add_noise, not here.":
                    ref.alphas_cumprod.sqrt(),
            },
            atol=1e-6,
            rtol=1e-5,
            context=f"num_steps={num_steps}, beta_start={beta_start:.3g}, beta_end={beta_end:.3g}",
        )
    passed("linear_alpha_bar", trials)


def _random_batch(gen: torch.Generator, num_steps: int):
    batch = int(torch.randint(2, 9, (1,), generator=gen))
    x0 = torch.rand(batch, 1, 28, 28, generator=gen) * 2 - 1
    noise = torch.randn(batch, 1, 28, 28, generator=gen)
    t = torch.randint(0, num_steps, (batch,), generator=gen)
    return x0, noise, t


def check_add_noise(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x0, noise, t, schedule) -> x_t`` against the closed form of q(x_t | x_0)."""
    gen = generator(seed)
    for trial in range(trials):
        schedule = (NoiseSchedule.linear, NoiseSchedule.cosine)[trial % 2](1000)
        x0, noise, t = _random_batch(gen, schedule.num_steps)
        got = call(fn, x0, noise, t, schedule, what="add_noise")
        ab = schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        a = schedule.alphas[t].float().view(-1, 1, 1, 1)
        compare(
            "x_t",
            got,
            schedule.add_noise(x0, noise, t),
            mistakes={
                "used alpha_t (schedule.alphas) where alpha-bar_t (schedule.alphas_cumprod) "
                "belongs.": a.sqrt() * x0 + (1 - a).sqrt() * noise,
                "forgot the square roots: x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps.":
                    ab * x0 + (1 - ab) * noise,
                "swapped the coefficients: x0 gets sqrt(alpha-bar_t), the noise sqrt(1 - alpha-bar_t).":
                    (1 - ab).sqrt() * x0 + ab.sqrt() * noise,
                "used the same t for every image; index alpha-bar with the whole tensor t.":
                    schedule.add_noise(x0, noise, t[:1].expand_as(t)),
            },
            context=f"{schedule.name} schedule, t={t.tolist()}",
        )
    passed("add_noise", trials)


def check_snr(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(alpha_bar) -> snr``, the signal-to-noise ratio alpha-bar / (1 - alpha-bar)."""
    gen = generator(seed)
    for _ in range(trials):
        schedule = NoiseSchedule.linear(*_random_linear_args(gen))
        ab = schedule.alphas_cumprod
        got = call(fn, ab.clone(), what="snr")
        compare(
            "snr",
            got,
            schedule.snr(torch.arange(schedule.num_steps)),
            mistakes={
                "inverted: SNR is signal variance over noise variance, alpha-bar / (1 - alpha-bar).":
                    (1 - ab) / ab,
                "took square roots: SNR compares variances, not standard deviations.":
                    ab.sqrt() / (1 - ab).sqrt(),
                "returned decibels; return the plain ratio (the plot converts to dB).":
                    10 * torch.log10(ab / (1 - ab)),
            },
            rtol=1e-4,
        )
    passed("snr", trials)


# ---- lesson 03: reverse denoising -------------------------------------------------------------


def _random_step_inputs(gen: torch.Generator, batch: int = 3):
    x_t = torch.randn(batch, 1, 28, 28, generator=gen)
    eps = torch.randn(batch, 1, 28, 28, generator=gen)  # the model's output eps_theta(x_t, t)
    return x_t, eps


def check_ddpm_step(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(model_output, t, x_t, schedule, noise) -> x_{t-1}``, Ho et al. Algorithm 2.

    ``model_output`` (eps_theta) and ``x_t`` are (B, 1, 28, 28), ``t`` a Python int, ``noise`` (z)
    x_t's shape. Expected: the mean 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha-bar_t) eps)
    (Eq. 11, no clipping) plus sqrt(beta-tilde_t) z, and no noise at the last step t = 0.
    """
    from .samplers import DDPMSampler

    gen = generator(seed)
    T = 1000
    for trial in range(trials):
        schedule = (NoiseSchedule.linear, NoiseSchedule.cosine)[trial % 2](T)
        # the last step first, then a small t (where beta-tilde_t and beta_t differ most), any t
        low = [0, int(torch.randint(1, 30, (1,), generator=gen))]
        t = low[trial] if trial < 2 else int(torch.randint(0, T, (1,), generator=gen))
        x_t, eps = _random_step_inputs(gen)
        z = torch.randn(x_t.shape, generator=gen)
        got = call(fn, eps.clone(), t, x_t.clone(), schedule, z.clone(), what="ddpm_step")
        sampler = DDPMSampler(schedule, clip_sample=False)
        expected = sampler.step(eps.double(), t, x_t.double(), noise=z.double()).prev_sample
        x_t, eps, z = x_t.double(), eps.double(), z.double()
        a, b = schedule.alphas[t].item(), schedule.betas[t].item()
        ab = schedule.alphas_cumprod[t].item()
        var = schedule.posterior_variance[t].item()  # beta-tilde_t
        mean = (x_t - b / (1 - ab) ** 0.5 * eps) / a**0.5  # Eq. 11
        mistakes = {}
        if t == 0:
            wrapped = b * (1 - schedule.alphas_cumprod[-1].item()) / (1 - ab)
            mistakes.update({
                "added noise at the last step: at t = 0 Algorithm 2 sets z = 0, so return the mean "
                "alone (if t > 0: add noise).": mean + b**0.5 * z,
                "at t = 0, alphas_cumprod[t - 1] is alphas_cumprod[-1], the LAST element in "
                "Python; alpha-bar before the first step is 1 (use schedule.posterior_variance[t], "
                "and add no noise at t = 0).": mean + wrapped**0.5 * z,
            })
        mistakes.update({
            "used beta_t as the noise variance; DDPM here uses the posterior variance "
            "beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) beta_t "
            "(schedule.posterior_variance).":
                mean + (b**0.5 * z if t > 0 else 0),
            "multiplied the noise by the variance beta-tilde_t; the noise is scaled by the "
            "standard deviation sqrt(beta-tilde_t).": mean + var * z,
            "forgot to add the noise sqrt(beta-tilde_t) z for t > 0 (only t = 0 has none).":
                mean,
            "used alpha_t (schedule.alphas) where alpha-bar_t (schedule.alphas_cumprod) belongs in "
            "beta_t / sqrt(1 - alpha-bar_t).":
                (x_t - b / (1 - a) ** 0.5 * eps) / a**0.5 + var**0.5 * z,
            "used alpha-bar_t where alpha_t belongs in the factor 1 / sqrt(alpha_t).":
                (x_t - b / (1 - ab) ** 0.5 * eps) / ab**0.5 + var**0.5 * z,
            "wrong sign: the noise is subtracted, x_t - beta_t / sqrt(1 - alpha-bar_t) eps.":
                (x_t + b / (1 - ab) ** 0.5 * eps) / a**0.5 + var**0.5 * z,
            "forgot the factor 1 / sqrt(alpha_t) in front of the mean.":
                x_t - b / (1 - ab) ** 0.5 * eps + var**0.5 * z,
            "forgot the square root: the coefficient of eps is beta_t / sqrt(1 - alpha-bar_t).":
                (x_t - b / (1 - ab) * eps) / a**0.5 + var**0.5 * z,
        })
        compare("x_{t-1}", got, expected, mistakes=mistakes,
                context=f"{schedule.name} schedule, t={t}")
    passed("ddpm_step", trials)


def _ddim_eta0(x_t, eps, ab_t, ab_prev, sign=1.0, clip=False, direction_ab=None):
    """Eq. 12 with eta = 0 and knobs for the typical mistakes of ``check_ddim_step``."""
    x0 = (x_t - sign * (1 - ab_t) ** 0.5 * eps) / ab_t**0.5
    x0 = x0.clamp(-1, 1) if clip else x0
    d = ab_prev if direction_ab is None else direction_ab
    return ab_prev**0.5 * x0 + (1 - d) ** 0.5 * eps


def check_ddim_step(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(model_output, t, t_prev, x_t, schedule) -> x_{t_prev}`` (Song et al. Eq. 12).

    ``model_output`` (eps_theta) and ``x_t`` are (B, 1, 28, 28); ``t`` and ``t_prev`` Python ints,
    ``t_prev`` < 0 meaning the last step (alpha-bar = 1 there). Expected, without clipping:
    sqrt(alpha-bar_prev) x0_hat + sqrt(1 - alpha-bar_prev) eps with
    x0_hat = (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t).
    """
    from .samplers import DDIMSampler

    gen = generator(seed)
    T = 1000
    for trial in range(trials):
        schedule = (NoiseSchedule.linear, NoiseSchedule.cosine)[trial % 2](T)
        n = (10, 20, 25, 50, 100)[int(torch.randint(0, 5, (1,), generator=gen))]
        sampler = DDIMSampler(schedule, n, eta=0.0, clip_sample=False)
        # the first step, the last step (t_prev < 0), then any step of this sampler's grid
        index = (0, n - 1)[trial] if trial < 2 else int(torch.randint(0, n, (1,), generator=gen))
        t = int(sampler.timesteps[index])
        t_prev = sampler.prev_timestep(t)
        x_t, eps = _random_step_inputs(gen)
        got = call(fn, eps.clone(), t, t_prev, x_t.clone(), schedule, what="ddim_step")
        expected = sampler.step(eps.double(), t, x_t.double()).prev_sample
        x_t, eps = x_t.double(), eps.double()
        ac = schedule.alphas_cumprod

        def ddim(ab_t, ab_prev, **kwargs):
            return _ddim_eta0(x_t, eps, ab_t, ab_prev, **kwargs)  # noqa: B023 (called in this trial)

        ab_t = ac[t].item()
        ab_prev = ac[t_prev].item() if t_prev >= 0 else 1.0
        a_prev = schedule.alphas[t_prev].item() if t_prev >= 0 else 1.0
        mistakes = {}
        if t_prev < 0:
            mistakes.update({
                f"at the last step t_prev = {t_prev} < 0, and alphas_cumprod[t_prev] counts from "
                "the END in Python; after the last step alpha-bar is 1 (the step returns x0_hat).":
                    ddim(ab_t, ac[t_prev].item()),
                "used alpha-bar_0 after the last step; there alpha-bar is 1, so the step returns "
                "x0_hat.": ddim(ab_t, ac[0].item()),
            })
        mistakes.update({
            "used alpha_t (schedule.alphas) where alpha-bar_t (schedule.alphas_cumprod) belongs; "
            "Song et al. write alpha_t for what we call alpha-bar_t.":
                ddim(schedule.alphas[t].item(), a_prev),
            "wrong sign in x0_hat: it is (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t).":
                ddim(ab_t, ab_prev, sign=-1.0),
            "used alpha-bar_{t-1}, one training step back; DDIM jumps to alpha-bar_{t_prev}.":
                ddim(ab_t, ac[t - 1].item() if t > 0 else 1.0),
            "the direction term uses sqrt(1 - alpha-bar_t); Eq. 12 has sqrt(1 - alpha-bar_prev).":
                ddim(ab_t, ab_prev, direction_ab=ab_t),
            "forgot the \"direction pointing to x_t\", sqrt(1 - alpha-bar_prev) eps.":
                ab_prev**0.5 * (x_t - (1 - ab_t) ** 0.5 * eps) / ab_t**0.5,
            "returned x0_hat; the step goes to x at t_prev: sqrt(alpha-bar_prev) x0_hat + "
            "sqrt(1 - alpha-bar_prev) eps.": (x_t - (1 - ab_t) ** 0.5 * eps) / ab_t**0.5,
            "clipped x0_hat to [-1, 1]; this exercise does not clip.":
                ddim(ab_t, ab_prev, clip=True),
        })
        compare("x_{t_prev}", got, expected, mistakes=mistakes,
                context=f"{schedule.name} schedule, {n} steps, t={t}, t_prev={t_prev}")
    passed("ddim_step", trials)


# ---- lesson 04: guidance ----------------------------------------------------------------------


class ToyConditionalEps(torch.nn.Module):
    """A tiny stand-in for the class-conditional UNet, ``model(x_t, t, labels) -> eps``.

    eps = tanh(x_t (1 + a_y) + b_y + c_y roll(x_t) + sin(t / 100)): per-image and elementwise, so a
    batch gives exactly the numbers of its images run one by one, and labels 0..10 (10 = no label)
    change the answer non-linearly. It records the batch size of every call in ``calls``.
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.num_classes = num_classes
        self.coef = torch.nn.Parameter(0.5 * torch.randn(3, num_classes + 1, channels, generator=gen))  # a, b, c
        self.calls: list[int] = []

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        batch = x_t.shape[0]
        for name, value in (("t", t), ("labels", labels)):
            if not isinstance(value, torch.Tensor) or value.shape != (batch,):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(
                    f"x_t holds {batch} images but {name} is {shape}: the model needs one {name} entry "
                    f"per image, shape ({batch},)"
                )
        if labels.dtype.is_floating_point or int(labels.min()) < 0 or int(labels.max()) > self.num_classes:
            raise ValueError(
                f"labels must be integers 0..{self.num_classes} ({self.num_classes} = no label), got {labels.tolist()}"
            )
        self.calls.append(batch)
        a, b, c = (p[labels.long()][:, :, None, None] for p in self.coef)  # (B, C) -> (B, C, 1, 1)
        time = torch.sin(t.double() / 100).to(x_t.dtype)[:, None, None, None]  # (B,) -> (B, 1, 1, 1)
        return torch.tanh(x_t * (1 + a) + b + c * x_t.roll(1, dims=-1) + time)


_SWAPPED = (
    "swapped the halves: start from eps_uncond and move towards eps_cond, eps_uncond + s (eps_cond - eps_uncond)."
)


def _guidance_mistakes(u: Tensor, c: Tensor, s: float, swapped: str = _SWAPPED) -> dict[str, Tensor]:
    """What typical wrong combinations give, from eps_uncond u and eps_cond c at scale s."""
    return {
        swapped: c + s * (u - c),
        "used guidance_scale as the paper's w: (1 + w) eps_cond - w eps_uncond holds with "
        "w = guidance_scale - 1 (scale 1 must give eps_cond).": u + (s + 1) * (c - u),
        "used guidance_scale - 1 as the scale: the formula eps_uncond + s (eps_cond - eps_uncond) "
        "takes guidance_scale itself.": u + (s - 1) * (c - u),
        "returned only the guidance direction s (eps_cond - eps_uncond); add it to eps_uncond.": s * (c - u),
        "wrong sign: guidance moves towards the condition, eps_uncond + s (eps_cond - eps_uncond).":
            u - s * (c - u),
        "scaled the conditional prediction alone (s eps_cond); guidance extrapolates from eps_uncond.": s * c,
    }


def check_guidance(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(eps_uncond, eps_cond, guidance_scale) -> eps``, classifier-free guidance.

    Expected: eps_uncond + guidance_scale (eps_cond - eps_uncond) (``diffusers``' convention: scale
    1 = eps_cond, 0 = eps_uncond; the paper's w = guidance_scale - 1). Inputs are (B, C, H, W).
    """
    gen = generator(seed)
    for trial in range(trials):
        shape = ((2, 1, 28, 28), (3, 4, 8, 8))[trial % 2]  # toy digits, then SD-like latents
        u, c = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
        s = 7.5 if trial == 0 else round(float(torch.empty(1).uniform_(1.5, 12.0, generator=gen)), 3)
        got = call(fn, u.clone(), c.clone(), s, what="guidance")
        u64, c64 = u.double(), c.double()
        expected = u64 + s * (c64 - u64)  # Eq. 6, Ho and Salimans 2022, w = s - 1
        compare("guided eps", got, expected, mistakes=_guidance_mistakes(u64, c64, s),
                context=f"guidance_scale={s}")
    passed("guidance", trials)


def check_guided_eps(fn: Callable, trials: int = 3, seed: int | None = None) -> None:
    """Check ``fn(model, x_t, t, labels, guidance_scale) -> eps``, guidance in one forward pass.

    ``model(x_t, t, labels) -> eps`` takes labels 0..9 or 10 (= ``NULL_LABEL``, no label); ``x_t``
    is (B, 1, 28, 28), ``t`` and ``labels`` int64 (B,). Expected: one call of ``model`` on the
    doubled batch (unconditional half first), then eps_uncond + guidance_scale (eps_cond - eps_uncond).
    """
    from .guidance import NULL_LABEL

    gen = generator(seed)
    for trial in range(trials):
        batch = int(torch.randint(2, 6, (1,), generator=gen))
        model = ToyConditionalEps(seed=int(torch.randint(0, 2**31, (1,), generator=gen)))
        x_t = torch.randn(batch, 1, 28, 28, generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        labels = torch.randint(1, 10, (batch,), generator=gen)  # 1..9, so label 0 differs from them
        s = 7.5 if trial == 0 else round(float(torch.empty(1).uniform_(1.5, 12.0, generator=gen)), 3)
        with torch.no_grad():
            u = model(x_t, t, torch.full_like(labels, NULL_LABEL)).double()  # eps_theta(x_t, t)
            c = model(x_t, t, labels).double()  # eps_theta(x_t, t, y)
            zero = model(x_t, t, torch.zeros_like(labels)).double()
        model.calls.clear()
        with torch.no_grad():
            got = call(fn, model, x_t.clone(), t.clone(), labels.clone(), s, what="guided_eps")
        swapped = ("swapped the halves: the doubled batch puts the unconditional half first, "
                   "torch.cat([null_labels, labels]), and .chunk(2) returns (eps_uncond, eps_cond).")
        mistakes = _guidance_mistakes(u, c, s, swapped)
        mistakes.update({
            f"used label 0 as \"no label\"; 0 is a digit, the null label is NULL_LABEL = {NULL_LABEL}.":
                zero + s * (c - zero),
            "both halves got the labels: the unconditional half needs the null label "
            f"(NULL_LABEL = {NULL_LABEL}).": c,
        })
        context = f"B={batch}, guidance_scale={s}, labels={labels.tolist()}"
        compare("guided eps", got, u + s * (c - u), mistakes=mistakes, context=context)
        if model.calls != [2 * batch]:
            raise CheckFailed(
                f"guided_eps ({context}): the value is right, but the model was called {len(model.calls)} "
                f"time(s) with batches {model.calls}; run ONE forward pass on the doubled batch "
                f"torch.cat([x_t, x_t]) ({2 * batch} images), as diffusers does."
            )
    passed("guided_eps", trials)
