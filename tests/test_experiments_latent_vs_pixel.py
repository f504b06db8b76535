"""Lesson 07's comparison: both spaces measured on the same labels, each with its checkpoint's schedule,
and training speed from the one training loop, without touching the model measured."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sdcourse import vae
from sdcourse.checkpoint import LoadedModel
from sdcourse.experiments import latent_vs_pixel
from sdcourse.schedules import NoiseSchedule
from sdcourse.train import ddpm_loss
from sdcourse.unet import UNet, UNetConfig


def _tiny_vae(scaling_factor=0.5):
    torch.manual_seed(0)
    model = vae.ConvVAE(vae.VAEConfig(channels=(8, 16))).eval()
    model.scaling_factor = scaling_factor
    return model


def _loaded(model, schedule, kind):
    return LoadedModel(model, {"kind": kind}, schedule, Path(f"/nowhere/{kind}.safetensors"))


def _latent_unet():
    return UNet(UNetConfig(image_size=8, in_channels=4, channels=(8, 16), attention_levels=(False, True),
                           attention_heads=2, groups=4)).eval()


def test_compare_spaces_measures_both_spaces_on_the_same_labels(monkeypatch):
    autoencoder = _tiny_vae()
    torch.manual_seed(0)
    pixel_schedule, latent_schedule = NoiseSchedule.linear(1000), NoiseSchedule.cosine(500)
    pixel = _loaded(UNet(UNetConfig.tiny()).eval(), pixel_schedule, "ddpm")
    latent = _loaded(_latent_unet(), latent_schedule, "ldm")
    used = []
    real_sampler = latent_vs_pixel.DDIMSampler

    def spy(schedule, *args, **kwargs):
        used.append(schedule)
        return real_sampler(schedule, *args, **kwargs)

    monkeypatch.setattr(latent_vs_pixel, "DDIMSampler", spy)
    rows, samples = latent_vs_pixel.compare_spaces(pixel, latent, autoencoder, n=4, num_inference_steps=2,
                                                   train_steps=1, batch_size=4, progress=False)
    assert used == [pixel_schedule, latent_schedule]  # each model samples with the schedule of its card
    assert [r.name for r in rows] == ["pixel", "latent"]
    assert rows[0].shape == (1, 28, 28) and rows[1].shape == (4, 8, 8)
    assert rows[0].decode_mflops == 0 and rows[1].decode_mflops > 0
    assert all(r.mflops_per_step > 0 and r.train_images_per_s > 0 and r.n == 4 for r in rows)
    assert samples["pixel"].shape == samples["latent"].shape == (4, 1, 28, 28)
    table = latent_vs_pixel.format_table(rows, 2)
    assert "latent / pixel" in table and "MFLOPs per denoising step" in table


def test_compare_spaces_needs_a_schedule_from_the_card():
    pixel = _loaded(UNet(UNetConfig.tiny()).eval(), None, "ddpm")
    latent = _loaded(_latent_unet(), NoiseSchedule.linear(1000), "ldm")
    with pytest.raises(ValueError, match="no noise schedule"):
        latent_vs_pixel.compare_spaces(pixel, latent, _tiny_vae(), n=2, num_inference_steps=2, train_steps=1,
                                       batch_size=2, progress=False)
    with pytest.raises(ValueError, match="n must be an integer >= 2, got 1"):
        latent_vs_pixel.compare_spaces(pixel, latent, _tiny_vae(), n=1, progress=False)


def test_training_speed_runs_the_one_training_loop_on_a_copy(monkeypatch):
    torch.manual_seed(0)
    model = UNet(UNetConfig.tiny()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    schedule = NoiseSchedule.linear(1000)
    calls = []
    real_fit = latent_vs_pixel.fit

    def spy(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        calls.append((kwargs.get("path"), args[3].steps, len(result.step_seconds)))
        return result

    monkeypatch.setattr(latent_vs_pixel, "fit", spy)
    images, labels = torch.rand(16, 1, 28, 28) * 2 - 1, torch.arange(16) % 10
    speed = latent_vs_pixel.training_images_per_second(
        model, lambda m, x, y, g: ddpm_loss(m, schedule, x, y, g), images, labels, batch_size=4, steps=2)
    assert speed > 0
    assert calls == [(None, 3, 3)]  # in memory; one warm-up step, then the two timed
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # measured on a copy
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        latent_vs_pixel.training_images_per_second(model, None, images, labels, steps=0)
