"""The VAE of lesson 05: the KL against torch.distributions and Monte Carlo, the ELBO falls in training,
SD 1.5's AutoencoderKL shapes, bad inputs, and the scaled latent round trip through a checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from sdcourse import checkpoint, runs, vae
from sdcourse.train import TrainConfig, fit


def _gaussians(shape=(5, 4, 7, 7), seed=0):
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=gen, dtype=torch.float64)
    logvar = torch.randn(shape, generator=gen, dtype=torch.float64).mul(1.5)
    return mean, logvar


def test_kl_equals_torch_distributions():
    mean, logvar = _gaussians()
    q = Normal(mean, (0.5 * logvar).exp())
    p = Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch_kl(q, p).flatten(1).sum(1)  # (B,)
    got = vae.kl_divergence(mean, logvar)
    assert got.shape == (5,)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    got32 = vae.kl_divergence(mean.float(), logvar.float())
    torch.testing.assert_close(got32.double(), expected, atol=1e-6 * expected.abs().max().item(), rtol=1e-6)


def test_kl_equals_a_monte_carlo_estimate():
    mean, logvar = _gaussians(shape=(3, 6), seed=1)
    logvar = logvar.clamp(-1.5, 1.5)  # keep the estimator's variance small enough for 200k samples
    gen = torch.Generator().manual_seed(2)
    n = 200_000
    eps = torch.randn((n, *mean.shape), generator=gen, dtype=torch.float64)
    z = vae.reparameterize(mean, logvar, eps)  # (n, B, D) samples of q
    log_q = Normal(mean, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
    estimate = (log_q - log_p).mean(0)  # KL = E_q[log q - log p]
    stderr = (log_q - log_p).std(0) / n ** 0.5
    exact = vae.kl_divergence(mean, logvar)
    assert ((estimate - exact).abs() < 5 * stderr).all(), (estimate, exact, stderr)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zero = torch.zeros(2, 4, 7, 7)
    assert torch.equal(vae.kl_divergence(zero, zero), torch.zeros(2))
    mean, logvar = _gaussians()
    assert (vae.kl_divergence(mean, logvar) > 0).all()


def test_reparameterize_has_the_right_moments_and_passes_gradients():
    mean = torch.tensor([1.0, -2.0], requires_grad=True)
    logvar = torch.tensor([0.0, 2.0 * torch.tensor(3.0).log().item()], requires_grad=True)  # sigma 1, 3
    eps = torch.randn(100_000, 2, generator=torch.Generator().manual_seed(0))
    z = vae.reparameterize(mean, logvar, eps)
    torch.testing.assert_close(z.mean(0), mean.detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 3.0]), atol=0.05, rtol=0)
    z.sum().backward()
    assert mean.grad is not None and logvar.grad is not None


def test_reconstruction_error_is_the_gaussian_negative_log_likelihood_minus_its_constant():
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(3, 1, 28, 28, generator=gen, dtype=torch.float64) * 2 - 1
    x_hat = torch.rand(3, 1, 28, 28, generator=gen, dtype=torch.float64) * 2 - 1
    nll = -Normal(x_hat, math.sqrt(0.5)).log_prob(x).flatten(1).sum(1)  # sigma^2 = 1/2
    constant = 784 / 2 * math.log(math.pi)  # (D / 2) log(2 pi sigma^2)
    torch.testing.assert_close(vae.reconstruction_error(x, x_hat), nll - constant, rtol=1e-10, atol=1e-8)


def test_negative_elbo_is_reconstruction_plus_beta_kl():
    gen = torch.Generator().manual_seed(3)
    x, x_hat = torch.rand(4, 1, 28, 28, generator=gen), torch.rand(4, 1, 28, 28, generator=gen)
    mean, logvar = _gaussians(shape=(4, 4, 7, 7))
    rec = ((x - x_hat) ** 2).sum((1, 2, 3))  # a Gaussian likelihood with fixed variance: squared errors
    kl64 = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum((1, 2, 3))
    got = vae.negative_elbo(x, x_hat, mean.float(), logvar.float(), beta=0.3)
    torch.testing.assert_close(got.double(), rec.double() + 0.3 * kl64, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("variant", ["vae", "vae2d"])
def test_negative_elbo_decreases_over_a_few_training_steps(variant, tmp_path):
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(64, 1, 28, 28, generator=gen) > 0.7).float() * 2 - 1
    torch.manual_seed(0)
    model = vae.build(variant, {"channels": (8, 16)} if variant == "vae" else {"hidden": (64,)})
    config = TrainConfig(steps=25, batch_size=16, lr=3e-3, checkpoint_every=25)
    result = fit(model, lambda m, x, y, g: vae.vae_loss(m, x.contiguous(), g).loss, (images, torch.zeros(64)),
                 config, tmp_path / "run.safetensors", {"kind": variant, "model_config": vae.config_dict(model)},
                 progress=False)
    assert sum(result.losses[-5:]) / 5 < 0.95 * sum(result.losses[:5]) / 5


def test_shapes_match_stable_diffusion_layout():
    model = vae.ConvVAE()
    x = torch.zeros(2, 1, 28, 28)
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (2, 4, 7, 7)
    assert model.config.factor == 4 and model.config.latent_shape == (4, 7, 7)
    out = model.decode(mean)
    assert out.shape == (2, 1, 28, 28) and out.abs().max() <= 1
    small = vae.MLPVAE()
    assert small.encode(x)[0].shape == (2, 2) and small.decode(torch.zeros(3, 2)).shape == (3, 1, 28, 28)


SD15_VAE = dict(  # stable-diffusion-v1-5/vae/config.json
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2, norm_num_groups=32, sample_size=512,
)


def test_sd15_autoencoder_maps_512_pixels_to_64_latents():
    from diffusers import AutoencoderKL

    with torch.device("meta"):  # shapes only: no memory, no arithmetic, same modules as the real thing
        meta_vae = AutoencoderKL(**SD15_VAE)
        posterior = meta_vae.encode(torch.empty(1, 3, 512, 512)).latent_dist
    assert posterior.mean.shape == (1, 4, 64, 64)
    assert meta_vae.config.scaling_factor == 0.18215
    assert tuple(meta_vae.config.block_out_channels) == (128, 256, 512, 512)
    assert meta_vae.config.latent_channels == 4 and meta_vae.config.layers_per_block == 2
    # real arithmetic: the factor 8 comes from the 4 levels (3 downsamplings), not from the widths,
    # so a narrow 4-level build with random weights shows it on a 64x64 image in a fraction of a second
    torch.manual_seed(0)
    narrow = AutoencoderKL(**{**SD15_VAE, "block_out_channels": (32, 32, 64, 64), "layers_per_block": 1}).eval()
    with torch.no_grad():
        z = narrow.encode(torch.rand(1, 3, 64, 64) * 2 - 1).latent_dist.mean
    assert z.shape == (1, 4, 8, 8) and torch.isfinite(z).all()


@pytest.mark.parametrize("shape,what", [((2, 3, 28, 28), "(B, 1, 28, 28)"), ((2, 1, 32, 32), "(B, 1, 28, 28)"),
                                        ((1, 28, 28), "(B, 1, 28, 28)")])
@pytest.mark.parametrize("variant", ["vae", "vae2d"])
def test_wrong_image_shape_is_a_value_error_naming_it(variant, shape, what):
    with pytest.raises(ValueError, match=r"images must have shape") as err:
        vae.build(variant).encode(torch.zeros(shape))
    assert what in str(err.value) and str(tuple(shape)) in str(err.value)


def test_negative_beta_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"beta must be a finite number >= 0.*-0.5"):
        vae.VAEConfig(beta=-0.5)
    with pytest.raises(ValueError, match="beta"):
        vae.MLPVAEConfig(beta=-1)
    z = torch.zeros(1, 4, 7, 7)
    with pytest.raises(ValueError, match="beta"):
        vae.negative_elbo(torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 28), z, z, beta=-1.0)
    with pytest.raises(ValueError, match="variant"):
        vae.build("gan")
    with pytest.raises(ValueError, match="image_size"):
        vae.VAEConfig(image_size=30)


def test_scaled_round_trip_uses_the_factor_stored_in_the_checkpoint(tmp_path, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(40, 1, 28, 28, generator=gen) > 0.7).float() * 2 - 1

    class Digits:  # a stand-in for MNIST: the round trip needs weights and a factor, not good digits
        def __init__(self, n):
            self.images, self.labels, self.source = images[:n], torch.zeros(n, dtype=torch.long), "test"

        def __len__(self):
            return len(self.images)

    monkeypatch.setattr(runs, "load_mnist", lambda split, verbose=True: Digits(40 if split == "train" else 8))
    out = tmp_path / "vae_test.safetensors"
    runs.train_vae(out, "vae", TrainConfig(steps=2, batch_size=8), progress=False, model_config={"channels": (8, 16)})
    _, meta = checkpoint.load(out)
    card = json.loads(out.with_suffix(".json").read_text())
    model = checkpoint.load_model("vae_test", tmp_path).model
    assert meta["scaling_factor"] == card["scaling_factor"] == model.scaling_factor
    assert {"test_reconstruction_sse", "test_kl"} <= set(card)
    # the stored factor is 1 / std of the training latents (recomputed independently here)
    assert model.scaling_factor == pytest.approx(vae.latent_scaling_factor(model, images), rel=1e-9)
    x = images[:3]
    latents = vae.encode_latents(model, x)
    assert latents.shape == (3, 4, 7, 7)
    with torch.no_grad():
        mean, _ = model.encode(x)
        torch.testing.assert_close(latents, mean * meta["scaling_factor"])
        decoded = vae.decode_latents(model, latents)
        torch.testing.assert_close(decoded, model.decode(mean), atol=1e-5, rtol=1e-5)
    assert decoded.shape == x.shape
    model.scaling_factor = 2 * meta["scaling_factor"]  # a different factor changes the latents: it is used
    assert not torch.allclose(vae.encode_latents(model, x), latents)


def _vae_run(path, steps, resume=False, stop_after=None):
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(32, 1, 28, 28, generator=gen) > 0.7).float() * 2 - 1
    torch.manual_seed(0)
    model = vae.build("vae", {"channels": (8, 16)})
    return fit(model, lambda m, x, y, g: vae.vae_loss(m, x.contiguous(), g).loss, (images, torch.zeros(32)),
               TrainConfig(steps=steps, batch_size=4, checkpoint_every=2), path,
               {"kind": "vae", "model_config": vae.config_dict(model)}, resume=resume, progress=False,
               stop_after=stop_after)


def test_killed_and_resumed_vae_run_equals_uninterrupted(tmp_path):
    # the reparameterization noise comes from the step's generator, so resume is exact
    straight = _vae_run(tmp_path / "a.safetensors", steps=4)
    _vae_run(tmp_path / "b.safetensors", steps=4, stop_after=3)  # killed after step 3; checkpoint at 2
    resumed = _vae_run(tmp_path / "b.safetensors", steps=4, resume=True)
    assert straight.losses == resumed.losses
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)
