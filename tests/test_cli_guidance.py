"""``sdcourse sample --guidance-scale S --negative-label L`` on a tiny random UNet (no checkpoint needed)."""

from __future__ import annotations

import json

import pytest
import torch

from sdcourse import checkpoint, cli, unet


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A random tiny UNet saved as a checkpoint with the DDPM schedule in its card, in its own folder."""
    torch.manual_seed(0)
    model = unet.UNet(unet.UNetConfig.tiny()).eval()
    for p in model.parameters():  # the zero-initialised output layer would make every eps 0
        torch.nn.init.normal_(p, std=0.2)
    folder = tmp_path / "checkpoints"
    meta = {"kind": "ddpm", "model_config": model.config.to_dict(), "schedule": {"name": "linear", "num_steps": 1000}}
    checkpoint.save(folder / "tiny.safetensors", model.state_dict(), meta)
    return folder


def _sample(tmp_path, capsys, *extra):
    out = tmp_path / f"{len(list(tmp_path.iterdir()))}.png"
    code = cli.main(["sample", "--model", "tiny", "--checkpoints", str(tmp_path / "checkpoints"), "--n", "4",
                     "--steps", "3", "--out", str(out), "--json", *extra])
    return code, out, capsys.readouterr()


def test_sample_with_guidance(tiny_checkpoint, tmp_path, capsys):
    code, plain, _ = _sample(tmp_path, capsys)
    assert code == 0
    code, at_one, _ = _sample(tmp_path, capsys, "--guidance-scale", "1")
    assert code == 0 and at_one.read_bytes() == plain.read_bytes()  # scale 1 = no guidance
    code, guided, captured = _sample(tmp_path, capsys, "--guidance-scale", "3", "--negative-label", "2")
    assert code == 0 and guided.read_bytes() != plain.read_bytes()
    payload = json.loads(captured.out)
    assert payload["guidance_scale"] == 3.0 and payload["negative_label"] == 2


def test_sample_text_names_the_guidance(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "g.png"
    assert cli.main(["sample", "--model", "tiny", "--checkpoints", str(tiny_checkpoint), "--n", "2", "--steps", "2",
                     "--out", str(out), "--guidance-scale", "5"]) == 0
    assert "guidance scale 5" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--guidance-scale", "-1"], "guidance_scale must be a finite number >= 0"),
    (["--guidance-scale", "3", "--negative-label", "12"], "negative_label must be digits 0..9"),
])
def test_sample_bad_guidance(tiny_checkpoint, tmp_path, capsys, extra, message):
    code, out, captured = _sample(tmp_path, capsys, *extra)
    assert code == 2 and message in captured.err and not out.exists()
