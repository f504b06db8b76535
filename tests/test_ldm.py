"""Latent diffusion (lesson 07): padding, the loss sees scaled latents, sampling decodes to digits' shape."""

from __future__ import annotations

import torch

from sdcourse import checkpoint, ldm, vae
from sdcourse.guidance import GuidedModel
from sdcourse.samplers import DDIMSampler
from sdcourse.schedules import NoiseSchedule
from sdcourse.unet import UNet, UNetConfig


def _tiny_vae(scaling_factor=0.5):
    torch.manual_seed(0)
    model = vae.ConvVAE(vae.VAEConfig(channels=(8, 16))).eval()
    model.scaling_factor = scaling_factor
    return model


def test_pad_and_crop_round_trip():
    z = torch.randn(2, 4, 7, 7)
    padded = ldm.pad(z)
    assert padded.shape == (2, 4, 8, 8)
    assert torch.equal(ldm.crop(padded), z)
    assert padded[..., 7, :].abs().sum() == 0 and padded[..., :, 7].abs().sum() == 0


def test_loss_sees_padded_scaled_samples_of_the_posterior(monkeypatch):
    seen = {}

    def fake_ddpm_loss(model, schedule, x0, labels, gen, label_dropout):
        seen["x0"] = x0
        return x0.sum()

    monkeypatch.setattr(ldm, "ddpm_loss", fake_ddpm_loss)
    autoencoder = _tiny_vae()
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    posteriors = ldm.encode_posteriors(autoencoder, images, batch_size=2)
    assert posteriors.shape == (3, 8, 7, 7)
    ldm.latent_ddpm_loss(None, None, posteriors, None, torch.Generator().manual_seed(1), scaling_factor=0.5)
    mean, logvar = autoencoder.encode(images)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
    expected = ldm.pad(vae.reparameterize(mean, logvar, eps) * 0.5)
    torch.testing.assert_close(seen["x0"], expected.detach())


def test_sampled_latents_decode_to_images():
    autoencoder = _tiny_vae()
    model = UNet(UNetConfig(image_size=8, in_channels=4, channels=(8, 16), attention_levels=(False, True),
                            attention_heads=2, groups=4)).eval()
    sampler = DDIMSampler(NoiseSchedule.linear(1000), 2, clip_sample=False)
    images = ldm.sample_and_decode(model, autoencoder, sampler, torch.tensor([1, 2, 3]),
                                   torch.Generator().manual_seed(0), progress=False)
    assert images.shape == (3, 1, 28, 28) and images.abs().max() <= 1
    # with guidance (sdcourse sample --model ldm_mnist --guidance-scale 3): a GuidedModel passes for its model
    guided = ldm.sample_and_decode(GuidedModel(model, 3.0), autoencoder, sampler, torch.tensor([1, 2, 3]),
                                   torch.Generator().manual_seed(0), progress=False)
    assert guided.shape == images.shape and bool(guided.isfinite().all())


def test_shipped_latent_ddpm_uses_the_scaling_factor_stored_with_its_vae():
    latent = checkpoint.load_model("ldm_mnist")
    meta = latent.card
    autoencoder = checkpoint.load_model(meta["vae"], directory=latent.path.parent).model
    assert meta["scaling_factor"] == autoencoder.scaling_factor != 1.0
    mean, logvar = autoencoder.encode(torch.zeros(2, 1, 28, 28) - 1)
    z0 = ldm.to_diffusion_latents(mean, logvar, torch.zeros_like(mean), meta["scaling_factor"])
    torch.testing.assert_close(ldm.from_diffusion_latents(z0, autoencoder.scaling_factor), mean)


def test_resumed_latent_run_keeps_both_commands_in_its_card(tmp_path, monkeypatch):
    import json
    import sys

    from sdcourse import runs
    from sdcourse.train import TrainConfig

    config = UNetConfig(image_size=8, in_channels=4, channels=(8, 16), attention_levels=(False, True),
                        attention_heads=2, groups=4)
    out = tmp_path / "ldm.safetensors"
    for argv, steps, resume in ((["sdcourse", "train", "ldm", "--steps", "2"], 2, False),
                                (["sdcourse", "train", "ldm", "--steps", "3", "--resume"], 3, True)):
        monkeypatch.setattr(sys, "argv", argv)
        runs.train_ldm(out, TrainConfig(steps=steps, batch_size=4), resume=resume, progress=False,
                       model_config=config)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["commands"] == ["sdcourse train ldm --steps 2", "sdcourse train ldm --steps 3 --resume"]
    assert card["steps"] == 3


def test_latent_unet_config_is_the_shipped_latent_ddpm_and_fits_padded_latents():
    latent = checkpoint.load_model("ldm_mnist")
    assert latent.model.config == ldm.latent_unet_config()
    config = ldm.latent_unet_config()
    assert (config.in_channels, config.image_size) == (4, ldm.PADDED_SIZE)
    assert latent.schedule is not None and latent.schedule.num_steps == 1000

