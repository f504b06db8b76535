"""The training loop: the loss falls, resume is exact, and bad checkpoints are refused clearly."""

from __future__ import annotations

import json

import pytest
import torch

from sdcourse import checkpoint, runs
from sdcourse.schedules import NoiseSchedule
from sdcourse.train import TrainConfig, ddpm_loss, fit, step_generator
from sdcourse.unet import NULL_LABEL, UNet, UNetConfig


def _data(n=64):
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 1, 28, 28, generator=gen) > 0.7).float() * 2 - 1
    return images, torch.randint(0, 10, (n,), generator=gen)


def _run(path, steps, resume=False, stop_after=None, every=2):
    torch.manual_seed(0)
    model = UNet(UNetConfig.tiny())
    schedule = NoiseSchedule.linear(100)
    config = TrainConfig(steps=steps, batch_size=8, lr=1e-3, checkpoint_every=every)
    meta = {"kind": "ddpm", "model_config": UNetConfig.tiny().to_dict()}
    return fit(model, lambda m, x, y, g: ddpm_loss(m, schedule, x, y, g), _data(), config, path, meta,
               resume=resume, progress=False, stop_after=stop_after)


def test_loss_falls_over_a_few_steps(tmp_path):
    result = _run(tmp_path / "run.safetensors", steps=30, every=30)
    assert sum(result.losses[-5:]) / 5 < sum(result.losses[:5]) / 5


def test_killed_and_resumed_run_equals_uninterrupted(tmp_path):
    straight = _run(tmp_path / "a.safetensors", steps=6)
    _run(tmp_path / "b.safetensors", steps=6, stop_after=5)  # "killed" after step 5; last checkpoint at 4
    assert checkpoint.load(tmp_path / "b.safetensors")[1]["step"] == 4
    resumed = _run(tmp_path / "b.safetensors", steps=6, resume=True)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert straight.losses == resumed.losses


def test_truncated_checkpoint_is_refused_and_the_previous_file_survives_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "run.safetensors"
    _run(path, steps=2)
    good = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated.safetensors"):
        checkpoint.load(truncated)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"x": torch.zeros(3)}, {"kind": "ddpm"})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(checkpoint.CheckpointError, match="not an sdcourse checkpoint"):
        checkpoint.load(tmp_path / "foreign.safetensors")


def test_resume_with_another_model_config_is_refused(tmp_path):
    path = tmp_path / "run.safetensors"
    _run(path, steps=2)
    model = UNet(UNetConfig(channels=(8, 16, 32), attention_heads=2, groups=4))
    meta = {"kind": "ddpm", "model_config": model.config.to_dict()}
    with pytest.raises(ValueError, match="model_config"):
        fit(model, lambda m, x, y, g: x.sum(), _data(), TrainConfig(steps=4), path, meta, resume=True,
            progress=False)


def test_weights_that_do_not_fit_the_model_name_the_file(tmp_path):
    model = UNet(UNetConfig.tiny())
    with pytest.raises(checkpoint.CheckpointError, match="w.safetensors.*does not match"):
        checkpoint.load_state_dict_strict(model, {"conv_in.weight": torch.zeros(1)}, tmp_path / "w.safetensors")


def test_ddpm_loss_is_the_simple_objective_with_label_dropout():
    schedule = NoiseSchedule.linear(50)
    x0, labels = _data(16)
    seen = {}

    def model(x_t, t, y):
        seen.update(x_t=x_t, t=t, y=y)
        return torch.zeros_like(x_t)

    loss = ddpm_loss(model, schedule, x0, labels, step_generator(0, 0), label_dropout=0.5)
    gen = step_generator(0, 0)  # replay the draws: t, eps, dropout mask, in that order
    t = torch.randint(0, 50, (16,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    drop = torch.rand(16, generator=gen) < 0.5
    torch.testing.assert_close(seen["x_t"], schedule.add_noise(x0, eps, t))
    assert torch.equal(seen["y"], torch.where(drop, NULL_LABEL, labels))
    assert 0 < int(drop.sum()) < 16
    torch.testing.assert_close(loss, eps.pow(2).mean())  # model predicts 0: loss = E[eps^2]


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("gamma", [None, 1.0])
def test_ddpm_loss_variants_equal_a_float64_recomputation(prediction, gamma):
    """v-prediction (Salimans & Ho 2022) and Min-SNR-gamma weights (Hang et al. 2023), recomputed here in float64."""
    schedule = NoiseSchedule.linear(1000)
    x0, labels = _data(16)

    def model(x_t, t, y):
        return 0.3 * x_t + 0.001 * t.view(-1, 1, 1, 1)

    loss = ddpm_loss(model, schedule, x0, labels, step_generator(1, 0), label_dropout=0.0, prediction=prediction,
                     min_snr_gamma=gamma)
    gen = step_generator(1, 0)
    t = torch.randint(0, 1000, (16,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen).double()
    ab = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[t].view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0.double() + (1 - ab).sqrt() * eps
    target = eps if prediction == "eps" else ab.sqrt() * eps - (1 - ab).sqrt() * x0.double()
    error = (0.3 * x_t + 0.001 * t.view(-1, 1, 1, 1) - target).pow(2).flatten(1).mean(1)
    snr = (ab / (1 - ab)).flatten()
    weight = torch.ones(16, dtype=torch.float64) if gamma is None else \
        snr.clamp(max=gamma) / (snr if prediction == "eps" else snr + 1)
    assert abs(loss.item() - (weight * error).mean().item()) <= 1e-5 * (weight * error).mean().item()
    if gamma is not None:
        assert weight.min() < 0.9 and weight.max() <= 1  # the draws include high-SNR steps it weighs down


def test_v_target_and_its_eps_match_diffusers():
    from diffusers import DDPMScheduler

    schedule, oracle = NoiseSchedule.linear(1000), DDPMScheduler(num_train_timesteps=1000)
    x0, eps = torch.randn(2, 6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 200, 500, 998, 999])
    v = schedule.v_target(x0, eps, t)  # (diffusers keeps alpha-bar in float32: differences of 1e-6)
    torch.testing.assert_close(v, oracle.get_velocity(x0, eps, t), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(schedule.eps_from_v(schedule.add_noise(x0, eps, t), v, t), eps, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("kwargs", "message"), [({"prediction": "x0"}, "prediction must be one of"),
                                                 ({"min_snr_gamma": 0.0}, "min_snr_gamma must be")])
def test_bad_ddpm_loss_variants_are_named(kwargs, message):
    x0, labels = _data(4)
    with pytest.raises(ValueError, match=message):
        ddpm_loss(lambda x, t, y: x, NoiseSchedule.linear(10), x0, labels, step_generator(0, 0), **kwargs)


@pytest.mark.parametrize(("field", "value"), [("steps", 0), ("batch_size", 0), ("lr", 0.0), ("ema_decay", 1.0),
                                              ("label_dropout", 1.5), ("minutes", -1.0)])
def test_bad_train_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_export_keeps_only_ema_weights(tmp_path):
    run = tmp_path / "m.resume.safetensors"
    _run(run, steps=2)
    out = runs.export_ema(run, tmp_path / "m.safetensors")
    tensors, meta = checkpoint.load(out)
    assert tensors and all(k.startswith("ema.") for k in tensors)
    assert "optimizer_param_groups" not in meta and meta["kind"] == "ddpm"
    assert json.dumps(meta)
