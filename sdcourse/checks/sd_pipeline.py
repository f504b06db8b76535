"""Lesson 08 (the Stable Diffusion pipeline): checks for guided noise with one UNet call, preparing
the initial latents, decoding with the VAE's scaling factor and img2img's timesteps, with stand-ins
for the UNet and the VAE and ``diffusers``' own pipeline methods as the reference."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch

from ..guidance import classifier_free_guidance
from .core import CheckFailed, call, compare, exercise, generator, passed
from .guidance import ONE_PASS_REASON

__all__ = ["check_decode", "check_guided_noise", "check_img2img_timesteps", "check_prepare_latents"]


class _FakeUNet:
    """Stands in for the UNet: eps = tanh(W x) + t/1000 + (text mean), one value per batch row.

    Each row's output depends on its own latents and its own text embedding, so mixing up the
    two halves of the guidance batch changes the answer, exactly as it would with the real UNet.
    """

    def __init__(self, channels: int, gen: torch.Generator):
        self.weight = torch.randn(channels, channels, generator=gen) / channels**0.5
        self.calls: list[int] = []  # the batch size of every call

    def __call__(self, sample, timestep, encoder_hidden_states=None, return_dict=True):
        self.calls.append(sample.shape[0])
        if encoder_hidden_states is None or encoder_hidden_states.shape[0] != sample.shape[0]:
            raise ValueError(f"the UNet needs one text embedding per latent: got latents {tuple(sample.shape)} "
                             f"and encoder_hidden_states "
                             f"{None if encoder_hidden_states is None else tuple(encoder_hidden_states.shape)}")
        mixed = torch.einsum("dc,bchw->bdhw", self.weight, sample).tanh()
        text = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)  # (B, L, d) -> (B, 1, 1, 1)
        out = mixed + float(timestep) / 1000 + 3 * text
        return SimpleNamespace(sample=out) if return_dict else (out,)


@exercise("guided_noise")
def check_guided_noise(fn: Callable, trials: int = 5, seed: int | None = None) -> None:
    """Check ``fn(unet, latents, t, text_embeds, guidance_scale) -> eps``: one UNet call on the doubled
    batch, then classifier-free guidance. ``text_embeds`` is (2, 77, d): [negative, prompt]."""
    gen = generator(seed)
    for _ in range(trials):
        h, w = (int(v) for v in torch.randint(2, 9, (2,), generator=gen))
        unet = _FakeUNet(4, gen)
        latents = torch.randn(1, 4, h, w, generator=gen)
        text = torch.randn(2, 77, 16, generator=gen)
        t = int(torch.randint(1, 1000, (1,), generator=gen))
        scale = float(torch.empty(1).uniform_(2.0, 12.0, generator=gen))
        eps_uncond, eps_cond = unet(torch.cat([latents] * 2), t, text, return_dict=False)[0].chunk(2)
        unet.calls.clear()
        got = call(fn, unet, latents, t, text, scale, what="guided_noise")
        calls = list(unet.calls)
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
        if calls != [2]:
            raise CheckFailed(f"guided_noise: the value is right, but the UNet was called {len(calls)} time(s) "
                              f"with batches {calls}; make ONE call on torch.cat([latents] * 2). {ONE_PASS_REASON}")
    passed("guided_noise", trials)


def _lesson08_schedulers():
    from diffusers import DDIMScheduler, EulerDiscreteScheduler  # lazy: diffusers takes seconds to import

    schedule = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    return DDIMScheduler(**schedule, clip_sample=False), EulerDiscreteScheduler(**schedule)


@exercise("prepare_latents")
def check_prepare_latents(fn: Callable, trials: int = 4, seed: int | None = None) -> None:
    """Check ``fn(height, width, scheduler, generator, vae_scale_factor) -> latents`` (1, 4, height/f,
    width/f) with f = ``vae_scale_factor`` (8 for SD, 4 for sd-mnist): standard normal noise from
    ``generator`` times ``scheduler.init_noise_sigma`` (after ``set_timesteps``)."""
    from diffusers import StableDiffusionPipeline  # lazy: diffusers takes seconds to import

    gen = generator(seed)
    for trial in range(trials):
        scheduler = _lesson08_schedulers()[trial % 2]
        scheduler.set_timesteps(int(torch.randint(5, 51, (1,), generator=gen)))
        f = (8, 4)[(trial // 2) % 2]  # SD's VAE, then sd-mnist's
        height, width = (8 * int(v) for v in torch.randint(2, 17, (2,), generator=gen))
        if height == width:
            width += 8  # not square, so swapped sides show
        noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        # diffusers' own prepare_latents is the reference
        oracle = type("Oracle", (), {"vae_scale_factor": f, "scheduler": scheduler})()
        ref = StableDiffusionPipeline.prepare_latents(oracle, 1, 4, height, width, torch.float32,
                                                      torch.device("cpu"), torch.Generator().manual_seed(noise_seed))
        noise = torch.randn(1, 4, height // f, width // f, generator=torch.Generator().manual_seed(noise_seed))
        sigma = float(scheduler.init_noise_sigma)
        got = call(fn, height, width, scheduler, torch.Generator().manual_seed(noise_seed), f, what="prepare_latents")
        if isinstance(got, torch.Tensor) and got.shape == (1, 4, height, width):
            raise CheckFailed(f"latents have the image's size {tuple(got.shape)}; the VAE shrinks each side by "
                              f"vae_scale_factor ({f}): expected {tuple(ref.shape)}")
        if isinstance(got, torch.Tensor) and got.shape == (1, 4, width // f, height // f):
            raise CheckFailed(f"latents {tuple(got.shape)} have height and width swapped: tensors are "
                              f"(batch, channels, height, width), expected {tuple(ref.shape)}")
        other = 12 - f  # the other factor: 8 <-> 4
        if isinstance(got, torch.Tensor) and got.shape == (1, 4, height // other, width // other):
            raise CheckFailed(f"latents {tuple(got.shape)} are 1/{other} of the image; the VAE shrinks each side "
                              f"by vae_scale_factor ({f}) here, do not write the factor out: "
                              f"expected {tuple(ref.shape)}")
        compare("latents", got, ref, mistakes={
            f"forgot scheduler.init_noise_sigma ({sigma:.4g} for {type(scheduler).__name__}): Euler-type "
            "samplers start from noise of standard deviation sigma_max, not 1.": noise,
            "divided by init_noise_sigma; multiply (the latents start at the scheduler's largest noise).":
                noise / sigma,
            "scaled by sqrt(init_noise_sigma^2 + 1): that is what scale_model_input undoes inside the loop.":
                noise * (sigma**2 + 1) ** 0.5,
        }, context=f"{type(scheduler).__name__}, height={height}, width={width}, vae_scale_factor={f}")
    passed("prepare_latents", trials)


class _FakeVAE:
    """Stands in for the VAE decoder: nearest upsampling x8 and a fixed 4 -> 3 channel mix."""

    def __init__(self, scaling_factor: float, gen: torch.Generator):
        self.config = SimpleNamespace(scaling_factor=scaling_factor)
        self.mix = torch.randn(3, 4, generator=gen) / 2

    def decode(self, z, return_dict=True):
        up = torch.nn.functional.interpolate(z, scale_factor=8, mode="nearest")  # (B, 4, 8h, 8w)
        image = torch.einsum("oc,bchw->bohw", self.mix, up).tanh()  # (B, 3, 8h, 8w) in (-1, 1)
        return SimpleNamespace(sample=image) if return_dict else (image,)


@exercise("decode")
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


@exercise("img2img_timesteps")
def check_img2img_timesteps(fn: Callable, trials: int = 6, seed: int | None = None) -> None:
    """Check ``fn(scheduler, num_inference_steps, strength) -> timesteps``: after
    ``scheduler.set_timesteps(num_inference_steps)``, the last int(num_inference_steps x strength)
    timesteps, the ones img2img denoises through (StableDiffusionImg2ImgPipeline.get_timesteps)."""
    from diffusers import StableDiffusionImg2ImgPipeline  # lazy: diffusers takes seconds to import

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
