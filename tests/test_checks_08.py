"""Lesson 08's checks pass the reference answers and reject typical wrong ones, naming the cause."""

from __future__ import annotations

import pytest
import torch

from sdcourse import checks


def guided_noise(unet, latents, t, text_embeds, guidance_scale):
    eps = unet(torch.cat([latents] * 2), t, encoder_hidden_states=text_embeds, return_dict=False)[0]
    eps_uncond, eps_cond = eps.chunk(2)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def prepare_latents(height, width, scheduler, generator, vae_scale_factor):
    f = vae_scale_factor
    return torch.randn(1, 4, height // f, width // f, generator=generator) * scheduler.init_noise_sigma


def decode(vae, latents):
    return vae.decode(latents / vae.config.scaling_factor).sample


def img2img_timesteps(scheduler, num_inference_steps, strength):
    scheduler.set_timesteps(num_inference_steps)
    t_start = num_inference_steps - int(num_inference_steps * strength)
    return scheduler.timesteps[t_start * scheduler.order :]


def _swapped(unet, latents, t, text_embeds, s):
    eps_cond, eps_uncond = unet(torch.cat([latents] * 2), t, text_embeds, return_dict=False)[
        0
    ].chunk(2)
    return eps_uncond + s * (eps_cond - eps_uncond)


def _no_guidance(unet, latents, t, text_embeds, s):
    return unet(torch.cat([latents] * 2), t, text_embeds, return_dict=False)[0].chunk(2)[1]


def _from_cond(unet, latents, t, text_embeds, s):
    u, c = unet(torch.cat([latents] * 2), t, text_embeds, return_dict=False)[0].chunk(2)
    return c + s * (c - u)


def _single_pass(unet, latents, t, text_embeds, s):
    return unet(latents, t, text_embeds[1:], return_dict=False)[0]


CASES = {
    checks.check_guided_noise: (
        guided_noise,
        [
            (_swapped, "halves are swapped"),
            (_no_guidance, "no guidance"),
            (_from_cond, "started from eps_cond"),
            (_single_pass, None),
        ],
    ),
    checks.check_prepare_latents: (
        prepare_latents,
        [
            (lambda h, w, s, g, f: torch.randn(1, 4, h // f, w // f, generator=g), "init_noise_sigma"),
            (lambda h, w, s, g, f: torch.randn(1, 4, h // f, w // f, generator=g) / s.init_noise_sigma, "divided"),
            (lambda h, w, s, g, f: torch.randn(1, 4, h, w, generator=g) * s.init_noise_sigma,
             "shrinks each side by vae_scale_factor"),
            (lambda h, w, s, g, f: torch.randn(1, 4, w // f, h // f, generator=g) * s.init_noise_sigma, "swapped"),
            (lambda h, w, s, g, f: torch.randn(1, 4, h // 8, w // 8, generator=g) * s.init_noise_sigma,
             "do not write the factor out"),
            (lambda h, w, s, g, f: torch.rand(1, 4, h // f, w // f, generator=g) * s.init_noise_sigma, None),
        ],
    ),
    checks.check_decode: (
        decode,
        [
            (
                lambda vae, z: vae.decode(z * vae.config.scaling_factor).sample,
                "multiplied by the scaling factor",
            ),
            (lambda vae, z: vae.decode(z).sample, "forgot the scaling factor"),
            (lambda vae, z: vae.decode(z / 0.18215).sample, "0.18215 written out"),
            (
                lambda vae, z: (vae.decode(z / vae.config.scaling_factor).sample / 2 + 0.5).clamp(
                    0, 1
                ),
                "[0, 1]",
            ),
        ],
    ),
    checks.check_img2img_timesteps: (
        img2img_timesteps,
        [
            (
                lambda s, n, st: (s.set_timesteps(n), s.timesteps[: int(n * st)])[1],
                "took the first steps",
            ),
            (lambda s, n, st: (s.set_timesteps(n), s.timesteps)[1], "returned every timestep"),
            (
                lambda s, n, st: (s.set_timesteps(n), s.timesteps[int(n * st) :])[1],
                "strength is the fraction",
            ),
            (lambda s, n, st: torch.arange(999, 0, -n), None),
        ],
    ),
}


@pytest.mark.parametrize("check", list(CASES), ids=lambda c: c.__name__)
def test_check_passes_the_reference(check, capsys):
    check(CASES[check][0], seed=0)
    check(CASES[check][0], seed=123)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(
    "check, wrong, cause",
    [(check, wrong, cause) for check, (_, mistakes) in CASES.items() for wrong, cause in mistakes],
    ids=lambda x: getattr(x, "__name__", None) if callable(x) else None,
)
def test_check_rejects_a_typical_mistake(check, wrong, cause):
    with pytest.raises(checks.CheckFailed) as err:
        check(wrong, seed=0)
    if cause is not None:
        assert cause in str(err.value), str(err.value)


def test_round_instead_of_int_is_caught_when_they_differ():
    def rounded(s, n, st):
        s.set_timesteps(n)
        return s.timesteps[n - round(n * st) :]

    with pytest.raises(checks.CheckFailed):
        checks.check_img2img_timesteps(rounded, trials=20, seed=0)
