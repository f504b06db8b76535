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


# ---- lesson 06: attention ---------------------------------------------------------------------


def _generator(seed: int | None) -> torch.Generator:
    return torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=gen))


def check_attention(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(q, k, v) -> out``, softmax(q k^T / sqrt(d_k)) v on (B, h, L, d) tensors."""
    from .attention import attention

    gen = _generator(seed)
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

    gen = _generator(seed)
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

    gen = _generator(seed)
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

    gen = _generator(seed)
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
