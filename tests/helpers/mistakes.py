"""Typical wrong answers to every exercise, written as a learner would write them (not from the
checks' own mistake lists): ``MISTAKES`` holds (exercise, what the learner did, function, the
likely cause the check must name, as a regex). ``VALID`` holds answers that are right but
written differently. Used by tests/test_checks_causes.py, and importable with any version of
``sdcourse`` (only the check names and the library are used) to count likely causes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sdcourse.attention import attention as _attention
from sdcourse.attention import merge_heads as _merge
from sdcourse.attention import split_heads as _split
from sdcourse.samplers import DDPMSampler

NULL = 10


def _ab(schedule, t):
    return schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1)


# ---- 01 -------------------------------------------------------------------------------------------
def _alpha_bar(fix):
    def fn(num_steps, beta_start, beta_end):
        betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
        return fix(betas)
    return fn


def _add_noise(pick_ab, x0_root=True, noise_root=True):
    def fn(x0, noise, t, schedule):
        ab = pick_ab(schedule, t).float().view(-1, 1, 1, 1)
        return (ab.sqrt() if x0_root else ab) * x0 + ((1 - ab).sqrt() if noise_root else 1 - ab) * noise
    return fn


# ---- 02 -------------------------------------------------------------------------------------------
def _ddpm_loss(eps_first=False, low=0, reduce="mean", target="eps"):
    def fn(model, schedule, x0, generator):
        b = x0.shape[0]
        if eps_first:
            eps = torch.randn(x0.shape, generator=generator)
            t = torch.randint(low, schedule.num_steps, (b,), generator=generator)
        else:
            t = torch.randint(low, schedule.num_steps, (b,), generator=generator)
            eps = torch.randn(x0.shape, generator=generator)
        ab = _ab(schedule, t)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        goal = {"eps": eps, "x0": x0}[target]
        err = (model(x_t, t) - goal).pow(2)
        return {"mean": err.mean(), "pixel sum": err.flatten(1).sum(1).mean(), "sum": err.sum()}[reduce]
    return fn


# ---- 03 -------------------------------------------------------------------------------------------
def _ddpm_step(noise_if=lambda t: t > 0, var="tilde", std=True):
    def fn(eps, t, x_t, schedule, noise):
        a, b, ab = schedule.alphas[t], schedule.betas[t], schedule.alphas_cumprod[t]
        mean = (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt()
        if not noise_if(t):
            return mean
        v = {"tilde": schedule.posterior_variance[t], "beta": b}[var]
        return mean + (v.sqrt() if std else v) * noise
    return fn


def _ddpm_clipped(eps, t, x_t, schedule, noise):
    return DDPMSampler(schedule).step(eps, t, x_t, noise=noise).prev_sample  # clip_sample=True by default


def _ddim_step(prev="t_prev", clip=False, out="x_prev", use_alpha=False):
    def fn(eps, t, t_prev, x_t, schedule):
        table = schedule.alphas if use_alpha else schedule.alphas_cumprod
        ab_t = table[t]
        index = t - 1 if prev == "t-1" else t_prev
        ab_prev = table[index] if index >= 0 else torch.tensor(1.0)
        x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
        x0 = x0.clamp(-1, 1) if clip else x0
        return x0 if out == "x0" else ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    return fn


# ---- 04 -------------------------------------------------------------------------------------------
def _guided_eps(null=NULL, swap=False, two_calls=False):
    def fn(model, x_t, t, labels, s):
        nulls = torch.full_like(labels, null)
        if two_calls:
            u, c = model(x_t, t, nulls), model(x_t, t, labels)
        else:
            u, c = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([nulls, labels])).chunk(2)
        if swap:
            u, c = c, u
        return u + s * (c - u)
    return fn


# ---- 06 -------------------------------------------------------------------------------------------
def _cross(kv_from_x=False, project=True):
    def fn(x, context, to_q, to_k, to_v, to_out, heads):
        source = x if kv_from_x else context
        q, k, v = (_split(layer(inp), heads) for layer, inp in ((to_q, x), (to_k, source), (to_v, source)))
        merged = _merge(_attention(q, k, v))
        return to_out(merged) if project else merged
    return fn


# ---- 07 -------------------------------------------------------------------------------------------
def _to_latents(scale=True, pad=(0, 1, 0, 1)):
    def fn(mean, logvar, eps, scaling_factor):
        z = mean + (0.5 * logvar).exp() * eps
        return F.pad(z * scaling_factor if scale else z, pad)
    return fn


# ---- 08 -------------------------------------------------------------------------------------------
def _guided_noise(swap=False, two_calls=False):
    def fn(unet, latents, t, text, s):
        if two_calls:
            u = unet(latents, t, encoder_hidden_states=text[:1]).sample
            c = unet(latents, t, encoder_hidden_states=text[1:]).sample
        else:
            u, c = unet(torch.cat([latents] * 2), t, encoder_hidden_states=text).sample.chunk(2)
        if swap:
            u, c = c, u
        return u + s * (c - u)
    return fn


def _img2img(take="last", rounding=int):
    def fn(scheduler, steps, strength):
        scheduler.set_timesteps(steps)
        keep = rounding(steps * strength)
        return scheduler.timesteps[steps - keep:] if take == "last" else scheduler.timesteps[:keep]
    return fn


def _elbo(rec_scale=1.0, kl_scale=1.0, reduce="sum"):
    def fn(x, x_hat, mean, logvar, beta):
        err = (x - x_hat).pow(2).flatten(1)
        rec = err.sum(1) if reduce == "sum" else err.mean(1)
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)
        return rec_scale * rec + kl_scale * beta * kl
    return fn


def _kl(scale=0.5, reduce="sum"):
    def fn(mean, logvar):
        per = scale * (mean**2 + logvar.exp() - 1 - logvar)
        return per.flatten(1).sum(1) if reduce == "sum" else per.flatten(1).mean(1)
    return fn


MISTAKES = [
    # (exercise, what the learner did, function, regex of the likely cause)
    ("linear_alpha_bar", "returned alpha_t (no cumprod)", _alpha_bar(lambda b: 1 - b), "cumulative product"),
    ("linear_alpha_bar", "cumprod of beta", _alpha_bar(lambda b: torch.cumprod(b, 0)), "cumulative product of beta"),
    ("linear_alpha_bar", "started the product at 1",
     _alpha_bar(lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)[:-1]])), "shifted by one"),
    ("add_noise", "alphas_cumprod[t - 1]", _add_noise(lambda s, t: s.alphas_cumprod[t - 1]),
     r"alphas_cumprod\[t - 1\]"),
    ("add_noise", "alphas_cumprod_prev[t]", _add_noise(lambda s, t: s.alphas_cumprod_prev[t]), "alphas_cumprod_prev"),
    ("add_noise", "square root on x0 only", _add_noise(lambda s, t: s.alphas_cumprod[t], noise_root=False),
     "only on x0"),
    ("add_noise", "no square roots", _add_noise(lambda s, t: s.alphas_cumprod[t], False, False), "square roots"),
    ("add_noise", "alphas for alphas_cumprod", _add_noise(lambda s, t: s.alphas[t]), "used alpha_t"),
    ("snr", "inverted", lambda ab: (1 - ab) / ab, "inverted"),
    ("snr", "standard deviations", lambda ab: ab.sqrt() / (1 - ab).sqrt(), "square roots"),
    ("ddpm_loss", "t from 1..T-1 (Algorithm 1's 1..T)", _ddpm_loss(low=1), "1..T-1"),
    ("ddpm_loss", "summed over pixels", _ddpm_loss(reduce="pixel sum"), "summed the squared errors over each"),
    ("ddpm_loss", "total sum", _ddpm_loss(reduce="sum"), "sum of squares"),
    ("ddpm_loss", "target x0", _ddpm_loss(target="x0"), "with x0"),
    ("ddpm_loss", "eps drawn first, t from 1", _ddpm_loss(eps_first=True, low=1), "1..T-1"),
    ("ddpm_step", "Algorithm 2's 'if t > 1' in 0-based code", _ddpm_step(noise_if=lambda t: t > 1), "counts t from 1"),
    ("ddpm_step", "clipped x0_hat (the sampler's default)", _ddpm_clipped, "clipped x0_hat"),
    ("ddpm_step", "beta_t as the variance", _ddpm_step(var="beta"), "beta_t as the noise variance"),
    ("ddpm_step", "variance instead of std", _ddpm_step(std=False), "standard deviation"),
    ("ddpm_step", "noise at t = 0 too", _ddpm_step(noise_if=lambda t: True, var="beta"), "last step"),
    ("ddpm_step", "never adds noise", _ddpm_step(noise_if=lambda t: False), "forgot to add the noise"),
    ("ddim_step", "alpha-bar_{t-1}", _ddim_step(prev="t-1"), r"alpha-bar_\{t-1\}"),
    ("ddim_step", "clipped x0_hat", _ddim_step(clip=True), "clipped"),
    ("ddim_step", "returned x0_hat", _ddim_step(out="x0"), "returned x0_hat"),
    ("ddim_step", "alphas for alphas_cumprod", _ddim_step(use_alpha=True), "used alpha_t"),
    ("guidance", "swapped", lambda u, c, s: c + s * (u - c), "swapped"),
    ("guidance", "paper's w as the scale", lambda u, c, s: (1 + s) * c - s * u, "paper's w"),
    ("guidance", "scaled eps_cond only", lambda u, c, s: s * c, "scaled the conditional"),
    ("guided_eps", "two model calls", _guided_eps(two_calls=True), "called 2 time"),
    ("guided_eps", "label 0 as no label", _guided_eps(null=0), "label 0"),
    ("guided_eps", "halves swapped", _guided_eps(swap=True), "swapped the halves"),
    ("reparameterize", "logvar as std", lambda m, lv, e: m + lv * e, "logvar as the standard deviation"),
    ("reparameterize", "exp(logvar) as std", lambda m, lv, e: m + lv.exp() * e, "variance"),
    ("kl_divergence", "no 1/2", _kl(scale=1.0), "1/2"),
    ("kl_divergence", "mean over dimensions", _kl(reduce="mean"), "averaged"),
    ("negative_elbo", "0.5 * SSE (sigma^2 = 1)", _elbo(rec_scale=0.5), "sigma\\^2 = 1"),
    ("negative_elbo", "MSE", _elbo(reduce="mean"), "mean squared error"),
    ("negative_elbo", "beta on the reconstruction",
     lambda x, xh, m, lv, b: b * (x - xh).pow(2).flatten(1).sum(1) + _kl()(m, lv), "beta on the reconstruction"),
    ("attention", "no scaling", lambda q, k, v: (q @ k.transpose(-2, -1)).softmax(-1) @ v, "not scaled"),
    ("attention", "divided by d_k", lambda q, k, v: (q @ k.transpose(-2, -1) / q.shape[-1]).softmax(-1) @ v,
     "divided by d_k"),
    ("attention", "softmax over queries",
     lambda q, k, v: (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-2) @ v, "wrong axis"),
    ("split_heads", "reshape straight", lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1), "reshaped straight"),
    ("merge_heads", "reshape straight", lambda x: x.reshape(x.shape[0], x.shape[2], -1), "wrong order"),
    ("cross_attention", "keys from x", _cross(kv_from_x=True), "not from x"),
    ("cross_attention", "no output projection", _cross(project=False), "output projection"),
    ("scaling_factor", "std instead of 1/std", lambda z: z.std(), None),
    ("to_diffusion_latents", "forgot the scaling factor", _to_latents(scale=False), None),
    ("to_diffusion_latents", "padded left and top", _to_latents(pad=(1, 0, 1, 0)), None),
    ("from_diffusion_latents", "multiplied by the factor", lambda z, sf: z[..., :7, :7] * sf, None),
    ("guided_noise", "two UNet calls", _guided_noise(two_calls=True), "called 2 time"),
    ("guided_noise", "halves swapped", _guided_noise(swap=True), "swapped"),
    ("prepare_latents", "forgot init_noise_sigma",
     lambda h, w, sch, g, f: torch.randn((1, 4, h // f, w // f), generator=g), "init_noise_sigma"),
    ("decode", "multiplied by the factor", lambda vae, z: vae.decode(z * vae.config.scaling_factor).sample,
     "multiplied by the scaling factor"),
    ("img2img_timesteps", "took the first steps", _img2img(take="first"), "took the first steps"),
    ("img2img_timesteps", "round instead of int", _img2img(rounding=round), "round"),
]

VALID = [
    ("ddpm_loss", "eps drawn before t", _ddpm_loss(eps_first=True)),
    ("ddpm_loss", "t drawn before eps", _ddpm_loss()),
]
