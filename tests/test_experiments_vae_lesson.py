"""Lesson 05's experiments: the short beta-sweep run is the one training loop, the ELBO terms add up,
the 2-D latent grid and the interpolation have the shapes and end points the lesson draws."""

from __future__ import annotations

import pytest
import torch

from sdcourse import vae
from sdcourse.experiments import vae_lesson


def _digits(n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=gen) > 0.7).float() * 2 - 1


def test_train_briefly_is_fit_in_memory_and_trains_the_model_in_place(monkeypatch):
    images = _digits()
    torch.manual_seed(0)
    model = vae.MLPVAE(vae.MLPVAEConfig(hidden=(64,)))
    before = [p.detach().clone() for p in model.parameters()]
    calls = []
    real_fit = vae_lesson.fit

    def spy(*args, **kwargs):
        calls.append((kwargs.get("path"), args[3]))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(vae_lesson, "fit", spy)
    losses = vae_lesson.train_briefly(model, images, steps=30, batch_size=16, lr=3e-3, progress=False)
    (path, config), = calls
    assert path is None and (config.steps, config.batch_size, config.lr, config.ema_decay) == (30, 16, 3e-3, 0.0)
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < 0.95 * sum(losses[:5]) / 5
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_train_briefly_is_a_function_of_its_seed():
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = vae.MLPVAE(vae.MLPVAEConfig(hidden=(32,)))
        runs.append(vae_lesson.train_briefly(model, _digits(), steps=3, batch_size=8, beta=0.5, seed=4,
                                             progress=False))
    assert runs[0] == runs[1]


def test_elbo_terms_add_up_to_the_negative_elbo():
    torch.manual_seed(0)
    model = vae.ConvVAE(vae.VAEConfig(channels=(8, 16), beta=0.3))
    terms = vae_lesson.elbo_terms(model, _digits(8))
    assert terms["negative_elbo"] == pytest.approx(terms["reconstruction"] + 0.3 * terms["kl"], rel=1e-5)
    assert terms["kl"] > 0 and not model.training
    heavier = vae_lesson.elbo_terms(model, _digits(8), beta=2.0)
    assert heavier["negative_elbo"] == pytest.approx(heavier["reconstruction"] + 2.0 * heavier["kl"], rel=1e-5)


def test_decode_grid_walks_the_2d_latent_row_by_row():
    model = vae.MLPVAE(vae.MLPVAEConfig(hidden=(32,)))
    images, z = vae_lesson.decode_grid(model, n=3, extent=2.0)
    assert images.shape == (9, 1, 28, 28) and z.shape == (9, 2)
    assert z[0].tolist() == [-2.0, 2.0] and z[2].tolist() == [2.0, 2.0] and z[8].tolist() == [2.0, -2.0]
    with pytest.raises(ValueError, match="needs a 2-D latent"):
        vae_lesson.decode_grid(vae.ConvVAE(vae.VAEConfig(channels=(8, 16))))


@pytest.mark.parametrize("variant", ["vae", "vae2d"])
def test_interpolate_starts_and_ends_at_the_two_images(variant):
    torch.manual_seed(0)
    model = vae.build(variant, {"channels": (8, 16)} if variant == "vae" else {"hidden": (32,)})
    a, b = _digits(2)[:1], _digits(2)[1:]
    latent, pixels = vae_lesson.interpolate(model, a, b, n=5)
    assert latent.shape == pixels.shape == (5, 1, 28, 28)
    torch.testing.assert_close(pixels[0], a[0])
    torch.testing.assert_close(pixels[-1], b[0])
    with torch.no_grad():
        torch.testing.assert_close(latent[0], model.decode(model.encode(a)[0])[0], atol=1e-5, rtol=1e-5)
