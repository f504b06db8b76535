"""The one loader and the one card writer: every shipped checkpoint comes back with its card and
schedule; what cannot be loaded is refused naming the file; cards are standard JSON, written atomically."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from sdcourse import checkpoint
from sdcourse.evaluate import Classifier
from sdcourse.schedules import NoiseSchedule
from sdcourse.unet import UNet, UNetConfig
from sdcourse.vae import MLPVAE, ConvVAE

SHIPPED = {"ddpm_mnist": UNet, "ldm_mnist": UNet, "vae_mnist": ConvVAE, "vae2d_mnist": MLPVAE,
           "mnist_classifier": Classifier}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_checkpoint_loads_with_its_card(name):
    loaded = checkpoint.load_model(name)
    assert type(loaded.model) is SHIPPED[name]
    assert not loaded.model.training
    assert loaded.card["kind"] == loaded.kind and "commands" in loaded.card  # the JSON card is merged in
    tensors, _ = checkpoint.load(loaded.path)
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, ema[key].to(value.dtype)), key  # exactly the EMA weights of the file


@pytest.mark.parametrize("name", ["ddpm_mnist", "ldm_mnist"])
def test_diffusion_checkpoints_bring_the_schedule_they_were_trained_with(name):
    loaded = checkpoint.load_model(name)
    assert loaded.card["schedule"] == {"name": "linear", "num_steps": 1000}
    torch.testing.assert_close(loaded.schedule.betas, NoiseSchedule.linear(1000).betas, rtol=0, atol=0)


def test_a_vae_gets_its_measured_scaling_factor():
    loaded = checkpoint.load_model("vae_mnist")
    _, meta = checkpoint.load(loaded.path)
    assert loaded.model.scaling_factor == meta["scaling_factor"] != 1.0
    assert checkpoint.load_model("mnist_classifier").schedule is None


def test_missing_checkpoint_lists_what_is_available(tmp_path):
    checkpoint.save(tmp_path / "other.safetensors", {"x": torch.zeros(1)}, {"kind": "ddpm"})
    with pytest.raises(ValueError, match=r"no checkpoint .*nope.*available.*\['other'\]"):
        checkpoint.load_model("nope", directory=tmp_path)


def test_unknown_kind_is_refused_naming_the_file(tmp_path):
    checkpoint.save(tmp_path / "odd.safetensors", {"x": torch.zeros(1)}, {"kind": "gan", "model_config": {}})
    with pytest.raises(checkpoint.CheckpointError, match=r"odd.safetensors.*'gan'"):
        checkpoint.load_model("odd", directory=tmp_path)


def test_weights_that_contradict_the_config_are_refused(tmp_path):
    model = UNet(UNetConfig.tiny())
    wider = UNetConfig(channels=(8, 16, 32), attention_heads=2, groups=4)
    checkpoint.save(tmp_path / "m.safetensors", {f"ema.{k}": v for k, v in model.state_dict().items()},
                    {"kind": "ddpm", "model_config": wider.to_dict()})
    with pytest.raises(checkpoint.CheckpointError, match="m.safetensors does not match"):
        checkpoint.load_model("m", directory=tmp_path)


def test_a_fifo_is_refused_instead_of_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.safetensors")
    with pytest.raises(checkpoint.CheckpointError, match="not a regular file"):
        checkpoint.load(tmp_path / "pipe.safetensors")


def test_cards_round_trip_and_refuse_non_standard_json(tmp_path):
    path = tmp_path / "m.safetensors"
    assert checkpoint.read_card(path) == {}
    checkpoint.write_card(path, {"steps": 3, "metrics": {"ddim-50": {"fid": 1.5}}})
    assert json.loads((tmp_path / "m.json").read_text()) == checkpoint.read_card(path)
    with pytest.raises(ValueError, match="Out of range float"):
        checkpoint.write_card(path, {"final_loss": math.nan})
    assert checkpoint.read_card(path)["steps"] == 3  # the failed write left the old card
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_broken_card_is_named(tmp_path):
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="m.json is not valid JSON"):
        checkpoint.read_card(tmp_path / "m.safetensors")
