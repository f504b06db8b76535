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


# ---- lesson 08: the Stable Diffusion pipeline -------------------------------------------------


def _seeded(seed: int | None) -> torch.Generator:
    return torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a.detach().double().cpu(), b.detach().double().cpu(),
                                                 atol=1e-5, rtol=1e-4)


def _named_mistake(what: str, got, expected: Tensor, mistakes: Mapping[str, Tensor], context: str) -> None:
    # compare() names a mistake only when the shapes agree; wrong timesteps often differ in length.
    if not isinstance(got, torch.Tensor):
        return
    for cause, wrong in mistakes.items():
        wrong = torch.as_tensor(wrong)
        if not _same(wrong, expected) and _same(got, wrong):
            raise CheckFailed(f"{what} ({context}): got {got.tolist() if got.numel() < 40 else tuple(got.shape)}."
                              f"\nLikely cause: {cause}")


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

    gen = _seeded(seed)
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

    gen = _seeded(seed)
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
    gen = _seeded(seed)
    factors = (0.18215, 0.13025, 0.3611)  # SD 1.x/2.x, SDXL, SD 3
    for trial in range(trials):
        factor = factors[trial % len(factors)]
        vae = _FakeVAE(factor, gen)
        h, w = (int(v) for v in torch.randint(2, 7, (2,), generator=gen))
        latents = torch.randn(1, 4, h, w, generator=gen) * factor * 5  # the scale SD latents have
        got = call(fn, vae, latents, what="decode")
        compare("image", got, vae.decode(latents / factor).sample, mistakes={
            "multiplied by the scaling factor; the latents were multiplied by it after encoding, "
            "so decoding divides: vae.decode(latents / vae.config.scaling_factor).": vae.decode(latents * factor).sample,
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

    gen = _seeded(seed)
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
        _named_mistake("timesteps", got, ref, {
            "took the first steps: img2img skips the noisiest timesteps and starts "
            "strength of the way up, so keep the last int(steps x strength).": all_t[:keep],
            "kept int(steps x (1 - strength)) steps: strength is the fraction of the schedule that is "
            "denoised (1 = start from pure noise).": all_t[keep:] if keep < steps else all_t[:0],
            "used round(); diffusers truncates: int(num_inference_steps * strength).":
                all_t[steps - round(steps * strength):],
            "returned every timestep; img2img starts part of the way down.": all_t,
        }, context)
        compare("timesteps", got, ref, atol=0, rtol=0, context=context)
    passed("img2img_timesteps", trials)
