"""Checks for the exercises: call the learner's function on fresh random inputs, compare with the
library's reference, and say precisely what differs.

Every check follows one pattern (see ``check_add_noise``): for a few random trials, build inputs,
compute the reference, call the learner's function, and hand both to ``compare`` together with the
answers that typical mistakes would give. ``compare`` raises ``CheckFailed`` naming the first
element that differs, the expected and the received value, and the likely cause when the answer
matches a known mistake. A passing check prints one line.
"""

from __future__ import annotations

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
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
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
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
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
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
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
