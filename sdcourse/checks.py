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
    got64, expected64 = got.detach().double().cpu(), expected.detach().double().cpu()
    if got.shape != expected.shape:
        message = f"{what}{where}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    elif torch.allclose(got64, expected64, atol=atol, rtol=rtol):
        return
    else:
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


# ---- lesson 06: attention ---------------------------------------------------------------------


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=gen))


def check_attention(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(q, k, v) -> out``, softmax(q k^T / sqrt(d_k)) v on (B, h, L, d) tensors."""
    from .attention import attention

    gen = generator(seed)
    for _ in range(trials):
        b, h = _randint(gen, 1, 3), _randint(gen, 1, 4)
        lq, lk = _randint(gen, 2, 9), _randint(gen, 2, 9)
        dk = _randint(gen, 4, 32)
        dv = dk + _randint(gen, 1, 8)  # d_v != d_k, so sqrt(d_v) is told apart from sqrt(d_k)
        q = torch.randn(b, h, lq, dk, generator=gen)
        k = torch.randn(b, h, lk, dk, generator=gen)
        v = torch.randn(b, h, lk, dv, generator=gen)
        got = call(fn, q.clone(), k.clone(), v.clone(), what="attention")
        scores = q @ k.transpose(-2, -1)  # (B, h, L_q, L_k), not yet scaled
        compare(
            "attention output",
            got,
            attention(q, k, v),
            mistakes={
                "the scores are not scaled: divide q k^T by sqrt(d_k) before the softmax.":
                    scores.softmax(-1) @ v,
                "divided by d_k; the scale is 1 / sqrt(d_k) (math.sqrt(q.shape[-1])).":
                    (scores / dk).softmax(-1) @ v,
                "scaled by sqrt(d_v) (v's width); the scale uses d_k, the width of q and k.":
                    (scores / dv**0.5).softmax(-1) @ v,
                "softmax over the wrong axis (the queries, dim=-2); each query's weights over "
                "the keys must sum to 1: softmax(dim=-1).": (scores / dk**0.5).softmax(-2) @ v,
                "multiplied by the scale instead of dividing: scores / sqrt(d_k).":
                    (scores * dk**0.5).softmax(-1) @ v,
            },
            context=f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}",
        )
    passed("attention", trials)


def check_split_heads(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x, heads)``: (B, L, heads*d) -> (B, heads, L, d); head i holds channels
    i*d .. (i+1)*d - 1."""
    from .attention import split_heads

    gen = generator(seed)
    for _ in range(trials):
        b, length, h, d = (_randint(gen, lo, hi) for lo, hi in ((1, 3), (2, 7), (2, 4), (2, 6)))
        x = torch.randn(b, length, h * d, generator=gen)
        got = call(fn, x.clone(), h, what="split_heads")
        compare(
            "split_heads(x, heads)",
            got,
            split_heads(x, h),
            mistakes={
                "reshaped straight to (B, heads, L, d): view as (B, L, heads, d) first, then "
                "swap L and heads with transpose(1, 2).": x.reshape(b, h, length, d),
                "heads interleaved: channel c went to head c % heads; head i is the contiguous "
                "block of channels i*d .. (i+1)*d - 1, so view as (B, L, heads, d).":
                    x.view(b, length, d, h).permute(0, 3, 1, 2),
            },
            atol=0, rtol=0,
            context=f"x {tuple(x.shape)}, heads={h}",
        )
    passed("split_heads", trials)


def check_merge_heads(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x)``: (B, heads, L, d) -> (B, L, heads*d), head 0's channels first."""
    from .attention import merge_heads

    gen = generator(seed)
    for _ in range(trials):
        b, length, h, d = (_randint(gen, lo, hi) for lo, hi in ((1, 3), (2, 7), (2, 4), (2, 6)))
        x = torch.randn(b, h, length, d, generator=gen)
        got = call(fn, x.clone(), what="merge_heads")
        compare(
            "merge_heads(x)",
            got,
            merge_heads(x),
            mistakes={
                "heads merged in the wrong order: reshaping (B, heads, L, d) straight to "
                "(B, L, heads*d) mixes positions and heads; transpose(1, 2) to (B, L, heads, d) "
                "first.": x.reshape(b, length, h * d),
                "heads merged in the wrong order: the channels are interleaved (d outer, heads "
                "inner); put the heads side by side, (B, L, heads, d) -> (B, L, heads*d).":
                    x.permute(0, 2, 3, 1).reshape(b, length, d * h),
            },
            atol=0, rtol=0,
            context=f"x {tuple(x.shape)}",
        )
    passed("merge_heads", trials)


def _cross_attention_variant(layer, x: Tensor, kv_from: Tensor, swap_kv: bool = False,
                             heads: int | None = None, project: bool = True) -> Tensor:
    """``layer(x, context)`` written out, with the switches a typical mistake flips."""
    from .attention import attention, merge_heads, split_heads

    heads = layer.heads if heads is None else heads
    to_k, to_v = (layer.to_v, layer.to_k) if swap_kv else (layer.to_k, layer.to_v)
    q = split_heads(layer.to_q(x), heads)  # (B, h, L, d)
    k, v = split_heads(to_k(kv_from), heads), split_heads(to_v(kv_from), heads)  # (B, h, L_ctx, d)
    merged = merge_heads(attention(q, k, v))  # (B, h, L, d) -> (B, L, h*d)
    return layer.to_out[0](merged) if project else merged


def check_cross_attention(fn: Callable, trials: int = 4, seed: int | None = None) -> None:
    """Check ``fn(x, context, to_q, to_k, to_v, to_out, heads) -> (B, L, query_dim)``.

    x: (B, L, query_dim) image features; context: (B, L_ctx, context_dim) token embeddings; the
    four ``nn.Linear`` layers and the head count are those of a ``CrossAttention``.
    """
    from .attention import CrossAttention

    gen = generator(seed)
    for trial in range(trials):
        b, h, d = _randint(gen, 1, 3), _randint(gen, 2, 4), _randint(gen, 2, 8)
        length, l_ctx = _randint(gen, 3, 12), _randint(gen, 2, 6)
        # the first trial is shaped like SD's (heads*dim_head = query_dim) and gives the context
        # the image's width, so a missing to_out or keys taken from x still run and get named
        query_dim = h * d if trial == 0 else _randint(gen, 4, 16)
        context_dim = query_dim if trial == 0 else query_dim + _randint(gen, 1, 8)
        layer = CrossAttention(query_dim, context_dim, heads=h, dim_head=d)
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
        x = torch.randn(b, length, query_dim, generator=gen)
        context = torch.randn(b, l_ctx, context_dim, generator=gen)
        with torch.no_grad():
            mistakes = {
                "to_k and to_v swapped: keys come from to_k(context), values from to_v(context).":
                    _cross_attention_variant(layer, x, context, swap_kv=True),
                "forgot the output projection to_out after merging the heads.":
                    _cross_attention_variant(layer, x, context, project=False),
                "attended with one head of width heads*dim_head; split q, k and v into heads "
                "before attention.": _cross_attention_variant(layer, x, context, heads=1),
            }
            if context_dim == query_dim:
                mistakes["keys and values must come from the context, not from x (that is "
                         "self-attention): k = to_k(context), v = to_v(context)."] = (
                    _cross_attention_variant(layer, x, x))
            expected = layer(x, context)
            got = call(fn, x.clone(), context.clone(), layer.to_q, layer.to_k, layer.to_v,
                       layer.to_out[0], h, what="cross_attention")
        compare(
            "cross-attention output",
            got,
            expected,
            mistakes=mistakes,
            context=f"x {tuple(x.shape)}, context {tuple(context.shape)}, heads={h}",
        )
    passed("cross_attention", trials)

# ---- lesson 08: the Stable Diffusion pipeline -------------------------------------------------


class _FakeUNet:
    """Stands in for the UNet: eps = tanh(W x) + t/1000 + (text mean), one value per batch row.

    Each row's output depends on its own latents and its own text embedding, so mixing up the
    two halves of the guidance batch changes the answer, exactly as it would with the real UNet.
    """

    def __init__(self, channels: int, gen: torch.Generator):
        self.weight = torch.randn(channels, channels, generator=gen) / channels**0.5

    def __call__(self, sample, timestep, encoder_hidden_states=None, return_dict=True):
        if encoder_hidden_states is None or encoder_hidden_states.shape[0] != sample.shape[0]:
            raise ValueError(f"the UNet needs one text embedding per latent: got latents {tuple(sample.shape)} "
                             f"and encoder_hidden_states "
                             f"{None if encoder_hidden_states is None else tuple(encoder_hidden_states.shape)}")
        mixed = torch.einsum("dc,bchw->bdhw", self.weight, sample).tanh()
        text = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)  # (B, L, d) -> (B, 1, 1, 1)
        out = mixed + float(timestep) / 1000 + 3 * text
        from types import SimpleNamespace

        return SimpleNamespace(sample=out) if return_dict else (out,)


def check_guided_noise(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(unet, latents, t, text_embeds, guidance_scale) -> eps``: one UNet call on the doubled
    batch, then classifier-free guidance. ``text_embeds`` is (2, 77, d): [negative, prompt]."""
    from .guidance import classifier_free_guidance

    gen = generator(seed)
    for _ in range(trials):
        h, w = (int(v) for v in torch.randint(2, 9, (2,), generator=gen))
        unet = _FakeUNet(4, gen)
        latents = torch.randn(1, 4, h, w, generator=gen)
        text = torch.randn(2, 77, 16, generator=gen)
        t = int(torch.randint(1, 1000, (1,), generator=gen))
        scale = float(torch.empty(1).uniform_(2.0, 12.0, generator=gen))
        eps_uncond, eps_cond = unet(torch.cat([latents] * 2), t, text, return_dict=False)[0].chunk(2)
        got = call(fn, unet, latents, t, text, scale, what="guided_noise")
        compare("guided eps", got, classifier_free_guidance(eps_uncond, eps_cond, scale), mistakes={
            "the halves are swapped: text_embeds is [negative, prompt], so the first half of the UNet's "
            "output is eps_uncond and the second eps_cond.": eps_cond + scale * (eps_uncond - eps_cond),
            "no guidance: returned eps_cond; extrapolate eps_uncond + s (eps_cond - eps_uncond).": eps_cond,
            "returned eps_uncond; the guided prediction moves from it towards eps_cond.": eps_uncond,
            "started from eps_cond: the formula starts from eps_uncond, "
            "eps_uncond + s (eps_cond - eps_uncond).": eps_cond + scale * (eps_cond - eps_uncond),
            "returned the average of the two halves (did eps.mean(0)?); split them with eps.chunk(2).":
                (eps_uncond + eps_cond) / 2,
        }, context=f"latents {tuple(latents.shape)}, t={t}, guidance_scale={scale:.3g}")
    passed("guided_noise", trials)


def _lesson08_schedulers():
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    schedule = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    return DDIMScheduler(**schedule, clip_sample=False), EulerDiscreteScheduler(**schedule)


def check_prepare_latents(fn: Callable, trials: int = 4, seed: int | None = None) -> None:
    """Check ``fn(height, width, scheduler, generator) -> latents`` (1, 4, height/8, width/8): standard
    normal noise from ``generator`` times ``scheduler.init_noise_sigma`` (after ``set_timesteps``)."""
    from diffusers import StableDiffusionPipeline

    gen = generator(seed)
    for trial in range(trials):
        scheduler = _lesson08_schedulers()[trial % 2]
        scheduler.set_timesteps(int(torch.randint(5, 51, (1,), generator=gen)))
        height, width = (8 * int(v) for v in torch.randint(2, 17, (2,), generator=gen))
        if height == width:
            width += 8  # not square, so swapped sides show
        noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        # diffusers' own prepare_latents is the reference
        oracle = type("Oracle", (), {"vae_scale_factor": 8, "scheduler": scheduler})()
        ref = StableDiffusionPipeline.prepare_latents(oracle, 1, 4, height, width, torch.float32,
                                                      torch.device("cpu"), torch.Generator().manual_seed(noise_seed))
        noise = torch.randn(1, 4, height // 8, width // 8, generator=torch.Generator().manual_seed(noise_seed))
        sigma = float(scheduler.init_noise_sigma)
        got = call(fn, height, width, scheduler, torch.Generator().manual_seed(noise_seed), what="prepare_latents")
        if isinstance(got, torch.Tensor) and got.shape == (1, 4, height, width):
            raise CheckFailed(f"latents have the image's size {tuple(got.shape)}; the VAE shrinks each side by 8: "
                              f"expected {tuple(ref.shape)}")
        if isinstance(got, torch.Tensor) and got.shape == (1, 4, width // 8, height // 8):
            raise CheckFailed(f"latents {tuple(got.shape)} have height and width swapped: tensors are "
                              f"(batch, channels, height, width), expected {tuple(ref.shape)}")
        compare("latents", got, ref, mistakes={
            f"forgot scheduler.init_noise_sigma ({sigma:.4g} for {type(scheduler).__name__}): Euler-type "
            "samplers start from noise of standard deviation sigma_max, not 1.": noise,
            "divided by init_noise_sigma; multiply (the latents start at the scheduler's largest noise).":
                noise / sigma,
            "scaled by sqrt(init_noise_sigma^2 + 1): that is what scale_model_input undoes inside the loop.":
                noise * (sigma**2 + 1) ** 0.5,
        }, context=f"{type(scheduler).__name__}, height={height}, width={width}")
    passed("prepare_latents", trials)


class _FakeVAE:
    """Stands in for the VAE decoder: nearest upsampling x8 and a fixed 4 -> 3 channel mix."""

    def __init__(self, scaling_factor: float, gen: torch.Generator):
        from types import SimpleNamespace

        self.config = SimpleNamespace(scaling_factor=scaling_factor)
        self.mix = torch.randn(3, 4, generator=gen) / 2

    def decode(self, z, return_dict=True):
        from types import SimpleNamespace

        up = torch.nn.functional.interpolate(z, scale_factor=8, mode="nearest")  # (B, 4, 8h, 8w)
        image = torch.einsum("oc,bchw->bohw", self.mix, up).tanh()  # (B, 3, 8h, 8w) in (-1, 1)
        return SimpleNamespace(sample=image) if return_dict else (image,)


def check_decode(fn: Callable, trials: int = 4, seed: int | None = None) -> None:
    """Check ``fn(vae, latents) -> image`` (B, 3, 8h, 8w) in [-1, 1]: undo the latent scaling with
    ``vae.config.scaling_factor`` (0.18215 for SD 1.x, 0.13025 for SDXL) and run the decoder."""
    gen = generator(seed)
    factors = (0.18215, 0.13025, 0.3611)  # SD 1.x/2.x, SDXL, SD 3
    for trial in range(trials):
        factor = factors[trial % len(factors)]
        vae = _FakeVAE(factor, gen)
        h, w = (int(v) for v in torch.randint(2, 7, (2,), generator=gen))
        latents = torch.randn(1, 4, h, w, generator=gen) * factor * 5  # the scale SD latents have
        got = call(fn, vae, latents, what="decode")
        compare("image", got, vae.decode(latents / factor).sample, mistakes={
            "multiplied by the scaling factor; the latents were multiplied by it after encoding, "
            "so decoding divides: vae.decode(latents / vae.config.scaling_factor).":
                vae.decode(latents * factor).sample,
            "forgot the scaling factor: decode latents / vae.config.scaling_factor.": vae.decode(latents).sample,
            "used 0.18215 written out; read vae.config.scaling_factor (SDXL uses 0.13025).":
                vae.decode(latents / 0.18215).sample,
            "mapped to [0, 1] already; return the decoder's output in [-1, 1] (the caller converts to pixels).":
                (vae.decode(latents / factor).sample / 2 + 0.5).clamp(0, 1),
        }, context=f"scaling_factor={factor}, latents {tuple(latents.shape)}")
    passed("decode", trials)


def check_img2img_timesteps(fn: Callable, trials: int = 6, seed: int | None = None) -> None:
    """Check ``fn(scheduler, num_inference_steps, strength) -> timesteps``: after
    ``scheduler.set_timesteps(num_inference_steps)``, the last int(num_inference_steps x strength)
    timesteps, the ones img2img denoises through (StableDiffusionImg2ImgPipeline.get_timesteps)."""
    from diffusers import StableDiffusionImg2ImgPipeline

    gen = generator(seed)
    for trial in range(trials):
        scheduler = _lesson08_schedulers()[trial % 2]
        steps = int(torch.randint(4, 60, (1,), generator=gen))
        strength = float(torch.empty(1).uniform_(0.15, 0.95, generator=gen))
        strength = max(strength, 1.5 / steps)
        scheduler.set_timesteps(steps)
        oracle = type("Oracle", (), {"scheduler": scheduler})()
        ref, _ = StableDiffusionImg2ImgPipeline.get_timesteps(oracle, steps, strength, "cpu")
        ref = ref.clone()
        all_t = scheduler.timesteps.clone()
        keep = int(steps * strength)
        fresh = _lesson08_schedulers()[trial % 2]
        got = call(fn, fresh, steps, strength, what="img2img_timesteps")
        context = f"{type(scheduler).__name__}, num_inference_steps={steps}, strength={strength:.3g}"
        compare("timesteps", got, ref, atol=0, rtol=0, context=context, mistakes={
            "took the first steps: img2img skips the noisiest timesteps and starts "
            "strength of the way up, so keep the last int(steps x strength).": all_t[:keep],
            "kept int(steps x (1 - strength)) steps: strength is the fraction of the schedule that is "
            "denoised (1 = start from pure noise).": all_t[keep:] if keep < steps else all_t[:0],
            "used round(); diffusers truncates: int(num_inference_steps * strength).":
                all_t[steps - round(steps * strength):],
            "returned every timestep; img2img starts part of the way down.": all_t,
        })
    passed("img2img_timesteps", trials)


# ---- lesson 05: the VAE -----------------------------------------------------------------------


def _random_gaussian(gen: torch.Generator, trial: int) -> tuple[Tensor, Tensor]:
    """mean and logvar of a spatial latent (B, 4, 7, 7) on even trials, a 2-D one (B, 2) on odd."""
    batch = int(torch.randint(2, 7, (1,), generator=gen))
    shape = (batch, 4, 7, 7) if trial % 2 == 0 else (batch, 2)
    mean = torch.randn(shape, generator=gen)
    logvar = torch.empty(shape).uniform_(-3.0, 1.5, generator=gen)
    return mean, logvar


def check_reparameterize(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(mean, logvar, eps) -> z = mean + exp(logvar / 2) * eps`` (Kingma and Welling, Eq. 10)."""
    from . import vae

    gen = generator(seed)
    for trial in range(trials):
        mean, logvar = _random_gaussian(gen, trial)
        eps = torch.randn(mean.shape, generator=gen)
        got = call(fn, mean.clone(), logvar.clone(), eps.clone(), what="reparameterize")
        compare("z", got, vae.reparameterize(mean, logvar, eps), context=f"shape {tuple(mean.shape)}", mistakes={
            "used logvar as the standard deviation; sigma = exp(logvar / 2).": mean + logvar * eps,
            "used exp(logvar) (the variance) as the standard deviation; sigma = exp(0.5 * logvar).":
                mean + logvar.exp() * eps,
            "forgot to add the mean: z = mean + sigma * eps.": (0.5 * logvar).exp() * eps,
            "returned the mean: the sample needs the noise term sigma * eps.": mean,
        })
    passed("reparameterize", trials)


def check_kl_divergence(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(mean, logvar) -> KL(N(mean, exp(logvar)) || N(0, I))`` per sample, shape (B,)."""
    from . import vae

    gen = generator(seed)
    for trial in range(trials):
        mean, logvar = _random_gaussian(gen, trial)
        got = call(fn, mean.clone(), logvar.clone(), what="kl_divergence")
        per_dim = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar)
        compare("kl", got, vae.kl_divergence(mean, logvar), context=f"shape {tuple(mean.shape)}", mistakes={
            "the sign is flipped: KL = -1/2 sum(1 + logvar - mean^2 - exp(logvar)) is never negative.":
                -per_dim.flatten(1).sum(1),
            "missing the factor 1/2.": 2 * per_dim.flatten(1).sum(1),
            "averaged over the latent dimensions; the KL of independent dimensions is their sum.":
                per_dim.flatten(1).mean(1),
            "used logvar as log sigma (the standard deviation); logvar is log sigma^2, so sigma^2 = exp(logvar).":
                0.5 * (mean ** 2 + (2 * logvar).exp() - 1 - 2 * logvar).flatten(1).sum(1),
            "forgot the mean^2 term.": 0.5 * (logvar.exp() - 1 - logvar).flatten(1).sum(1),
        }, rtol=1e-4, atol=1e-4)
    passed("kl_divergence", trials)


def check_negative_elbo(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(x, x_hat, mean, logvar, beta) -> -ELBO`` per sample (B,): the sum of squared errors
    over pixels plus beta times the KL (a Gaussian decoder with fixed variance)."""
    from . import vae

    gen = generator(seed)
    for trial in range(trials):
        mean, logvar = _random_gaussian(gen, trial)
        b = mean.shape[0]
        x = torch.rand(b, 1, 28, 28, generator=gen) * 2 - 1
        x_hat = torch.rand(b, 1, 28, 28, generator=gen) * 2 - 1
        beta = float(torch.empty(1).uniform_(0.1, 4.0, generator=gen))
        got = call(fn, x.clone(), x_hat.clone(), mean.clone(), logvar.clone(), beta, what="negative_elbo")
        sse = (x - x_hat).pow(2).flatten(1).sum(1)
        kl = vae.kl_divergence(mean, logvar)
        compare("negative ELBO", got, vae.negative_elbo(x, x_hat, mean, logvar, beta),
                context=f"beta={beta:.3g}, latent shape {tuple(mean.shape)}", mistakes={
                    "subtracted the KL: the negative ELBO adds it (a penalty for leaving the prior).": sse - beta * kl,
                    "forgot beta on the KL term.": sse + kl,
                    "put beta on the reconstruction instead of the KL.": beta * sse + kl,
                    "used the mean squared error; the Gaussian log-likelihood sums over pixels.":
                        (x - x_hat).pow(2).flatten(1).mean(1) + beta * kl,
                    "returned the batch mean; return one value per sample, shape (B,).": (sse + beta * kl).mean(),
                }, rtol=1e-4, atol=1e-3)
    passed("negative_elbo", trials)


# ---- lesson 02: training a DDPM ----------------------------------------------------------------


class _ProbeDenoiser(torch.nn.Module):
    """A fixed random eps_theta(x_t, t) = w * x_t + (t / T) v that records every t it is given."""

    def __init__(self, gen: torch.Generator, num_steps: int):
        super().__init__()
        self.w = torch.randn(1, 1, 28, 28, generator=gen) * 0.5
        self.v = torch.randn(1, 1, 28, 28, generator=gen)
        self.num_steps = num_steps
        self.seen: list[Tensor] = []

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        t = torch.as_tensor(t)
        self.seen.append(t.detach().reshape(-1).clone())
        return self.w * x_t + (t.double().reshape(-1, 1, 1, 1) / self.num_steps).to(x_t.dtype) * self.v


def check_ddpm_loss(fn: Callable, trials: int = 4, seed: int | None = None) -> None:
    """Check ``fn(model, schedule, x0, generator) -> loss``, Ho et al. Algorithm 1 (the simple loss).

    ``x0`` is (B, 1, 28, 28). Expected, drawing in this order from ``generator``:
    ``t = torch.randint(0, schedule.num_steps, (B,))``, then ``eps = torch.randn(x0.shape)``;
    x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps (Eq. 4) and the mean over all elements
    of (eps - model(x_t, t))^2 (Eq. 14), a scalar.
    """
    import torch.nn.functional as F

    gen = generator(seed)
    for trial in range(trials):
        T = (200, 1000)[trial % 2]
        schedule = (NoiseSchedule.cosine, NoiseSchedule.linear)[trial % 2](T)
        # first a large batch, so that every t in 0..T-1 (and any t out of range) almost surely occurs
        b = 2048 if trial == 0 else int(torch.randint(2, 9, (1,), generator=gen))
        x0 = torch.rand(b, 1, 28, 28, generator=gen) * 2 - 1
        draw_seed = int(torch.randint(0, 2**31, (1,), generator=gen))
        probe = _ProbeDenoiser(gen, T)
        got = call(fn, probe, schedule, x0.clone(), torch.Generator().manual_seed(draw_seed), what="ddpm_loss")
        if probe.seen:
            t_seen = torch.cat(probe.seen)
            if t_seen.min() < 0 or t_seen.max() > T - 1 or t_seen.is_floating_point():
                raise CheckFailed(
                    f"ddpm_loss: the model was called with t from {t_seen.min().item()} to {t_seen.max().item()}; "
                    f"t must be an integer tensor in 0..T-1 = 0..{T - 1} (torch.randint(0, schedule.num_steps, "
                    "(B,)), as schedule.alphas_cumprod is indexed from 0).")
        replay = torch.Generator().manual_seed(draw_seed)
        t = torch.randint(0, T, (b,), generator=replay)
        eps = torch.randn(x0.shape, generator=replay)
        replay = torch.Generator().manual_seed(draw_seed)
        t_shifted = torch.randint(1, T, (b,), generator=replay)  # Algorithm 1's 1..T read as 1..T-1
        eps_shifted = torch.randn(x0.shape, generator=replay)
        ab = schedule.alphas_cumprod.double()[t].reshape(-1, 1, 1, 1)
        a = schedule.alphas.double()[t].reshape(-1, 1, 1, 1)
        x0d, epsd = x0.double(), eps.double()
        x_t = ab.sqrt() * x0d + (1 - ab).sqrt() * epsd  # Eq. 4
        probe = probe.double()
        out = probe(x_t, t)
        x_t_alpha = a.sqrt() * x0d + (1 - a).sqrt() * epsd
        ab_s = schedule.alphas_cumprod.double()[t_shifted].reshape(-1, 1, 1, 1)
        x_t_s = ab_s.sqrt() * x0d + (1 - ab_s).sqrt() * eps_shifted.double()
        compare("ddpm loss", got, F.mse_loss(out, epsd), context=f"B={b}, T={T}", rtol=1e-4, atol=1e-6, mistakes={
            "compared the prediction with x0; the network predicts the noise eps (Eq. 14).": F.mse_loss(out, x0d),
            "compared the prediction with x_t; the target is the noise eps that made x_t.": F.mse_loss(out, x_t),
            "used alpha_t where Eq. 4 needs alpha-bar_t = schedule.alphas_cumprod[t] (the product up to t).":
                F.mse_loss(probe(x_t_alpha, t), epsd),
            "sampled t from 1..T-1; with 0-based indexing t runs over 0..T-1 (torch.randint(0, T, ...)).":
                F.mse_loss(probe(x_t_s, t_shifted), eps_shifted.double()),
            "swapped the weights: x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps.":
                F.mse_loss(probe((1 - ab).sqrt() * x0d + ab.sqrt() * epsd, t), epsd),
            "returned the sum of squares; the simple loss is their mean.": (out - epsd).pow(2).sum(),
        })
    passed("ddpm_loss", trials)


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


# ---- lesson 07: latent diffusion --------------------------------------------------------------


def _random_latents(gen: torch.Generator) -> Tensor:
    """Latents (N, 4, 7, 7) with a non-zero mean and a spread far from 1, like an unscaled VAE's."""
    n = int(torch.randint(8, 33, (1,), generator=gen))
    spread = float(torch.empty(1).uniform_(0.2, 6.0, generator=gen))
    offset = float(torch.empty(1).uniform_(1.0, 3.0, generator=gen))
    channel_scale = torch.empty(1, 4, 1, 1).uniform_(0.5, 1.5, generator=gen)  # channels differ, as in SD
    return offset + spread * channel_scale * torch.randn(n, 4, 7, 7, generator=gen)


def check_scaling_factor(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(latents) -> scaling_factor``: one number, 1 / std of all the latents (N, 4, 7, 7).

    Rombach et al. 2022 (Sec. 4.3.2): one scalar for the whole latent, so that the diffusion model
    sees unit variance (SD 1.5's 0.18215). A Python float or a 0-d tensor are both accepted.
    """
    gen = generator(seed)
    for _ in range(trials):
        z = _random_latents(gen)
        got = call(fn, z.clone(), what="scaling_factor")
        if isinstance(got, (float, int)):
            got = torch.tensor(float(got))
        z64 = z.double()
        compare("scaling_factor", got, 1.0 / z64.std(), context=f"latents of shape {tuple(z.shape)}", mistakes={
            "returned the standard deviation; the factor is its inverse, 1 / std (multiplying by it "
            "brings the spread to 1).": z64.std(),
            "returned 1 / variance; the factor is 1 / standard deviation.": 1.0 / z64.var(),
            "forgot to subtract the mean: 1 / sqrt(mean(z^2)) is not 1 / std when the latents are "
            "not centred (use z.std()).": 1.0 / z64.pow(2).mean().sqrt(),
            "one factor per channel; SD (and this lesson) use one number for the whole latent.":
                1.0 / z64.transpose(0, 1).flatten(1).std(1),
            "returned 1 / std of the first channel only; take the std over all latent numbers.":
                1.0 / z64[:, 0].std(),
        }, rtol=1e-3, atol=1e-6)
    passed("scaling_factor", trials)


def _random_posterior(gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, float]:
    batch = int(torch.randint(2, 7, (1,), generator=gen))
    mean = 3 * torch.randn(batch, 4, 7, 7, generator=gen)
    logvar = torch.empty(batch, 4, 7, 7).uniform_(-4.0, 1.0, generator=gen)
    eps = torch.randn(batch, 4, 7, 7, generator=gen)
    scaling_factor = float(torch.empty(1).uniform_(0.1, 0.6, generator=gen))
    return mean, logvar, eps, scaling_factor


def check_to_diffusion_latents(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(mean, logvar, eps, scaling_factor) -> z0`` (B, 4, 8, 8) from (B, 4, 7, 7) inputs:
    a sample of q(z | x), times the scaling factor, zero-padded on the right and bottom to 8x8."""
    from . import ldm

    gen = generator(seed)
    for _ in range(trials):
        mean, logvar, eps, s = _random_posterior(gen)
        got = call(fn, mean.clone(), logvar.clone(), eps.clone(), s, what="to_diffusion_latents")
        z = mean + (0.5 * logvar).exp() * eps
        compare("z0", got, ldm.to_diffusion_latents(mean, logvar, eps, s), context=f"scaling_factor={s:.3g}",
                mistakes={
                    "divided by the scaling factor; encoding multiplies (z * scaling_factor), decoding divides.":
                        ldm.pad(z / s),
                    "forgot the scaling factor: the denoiser expects unit-variance latents.": ldm.pad(z),
                    "used exp(logvar) (the variance) as the standard deviation; sigma = exp(logvar / 2).":
                        ldm.pad((mean + logvar.exp() * eps) * s),
                    "used the mean only; training uses a sample of q(z | x): mean + sigma * eps.":
                        ldm.pad(mean * s),
                    "padded on the top and left; pad on the right and bottom (F.pad(z, (0, 1, 0, 1))).":
                        torch.nn.functional.pad(z * s, (1, 0, 1, 0)),
                    "forgot to pad 7x7 to 8x8: the toy UNet halves its input once, so it needs an even size.":
                        z * s,
                })
    passed("to_diffusion_latents", trials)


def check_from_diffusion_latents(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(z0, scaling_factor) -> latents for the decoder``: z0 (B, 4, 8, 8) cropped to its
    top-left 7x7 and divided by the scaling factor, (B, 4, 7, 7)."""
    from . import ldm

    gen = generator(seed)
    for _ in range(trials):
        _, _, _, s = _random_posterior(gen)
        z0 = torch.randn(int(torch.randint(2, 7, (1,), generator=gen)), 4, 8, 8, generator=gen)
        got = call(fn, z0.clone(), s, what="from_diffusion_latents")
        compare("latents", got, ldm.from_diffusion_latents(z0, s), context=f"scaling_factor={s:.3g}", mistakes={
            "multiplied by the scaling factor; decoding undoes the encoding's multiplication: divide.":
                z0[..., :7, :7] * s,
            "forgot to divide by the scaling factor: the decoder was trained on unscaled latents.": z0[..., :7, :7],
            "cropped the wrong corner: the padding is on the right and bottom, keep z0[..., :7, :7].":
                z0[..., 1:, 1:] / s,
            "forgot to crop 8x8 back to the VAE's 7x7.": z0 / s,
        })
    passed("from_diffusion_latents", trials)
