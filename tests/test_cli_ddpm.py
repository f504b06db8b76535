"""`sdcourse sample` and `sdcourse evaluate`: bad options are exit code 2 with a message naming
them; one end-to-end run on a tiny exported checkpoint writes a PNG."""

from __future__ import annotations

import json

import pytest
import torch

from sdcourse import checkpoint
from sdcourse.cli import main
from sdcourse.unet import UNet, UNetConfig


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A randomly initialised tiny UNet saved as the shipped checkpoints are (weights + card)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    config = UNetConfig.tiny()
    model = UNet(config)
    meta = {"kind": "ddpm", "model_config": config.to_dict(), "schedule": {"name": "linear", "num_steps": 1000}}
    checkpoint.save(folder / "tiny.safetensors", model.state_dict(), meta)
    (folder / "tiny.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("command", ["sample", "evaluate"])
@pytest.mark.parametrize("option, value, named", [
    ("--steps", "0", "--steps"),
    ("--steps", "1001", "--steps"),
    ("--eta", "-0.1", "--eta"),
    ("--eta", "1.5", "--eta"),
])
def test_bad_options_exit_2_naming_them(command, option, value, named, tiny_dir, tmp_path, capsys):
    argv = [command, "--model", "tiny", "--checkpoints", str(tiny_dir), "--n", "2", option, value]
    if command == "sample":
        argv += ["--out", str(tmp_path / "x.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and value in err


@pytest.mark.parametrize("labels", ["10", "-1", "3,x"])
def test_bad_labels_exit_2(labels, tiny_dir, tmp_path, capsys):
    argv = ["sample", "--model", "tiny", "--checkpoints", str(tiny_dir), "--n", "2", "--labels", labels,
            "--out", str(tmp_path / "x.png")]
    assert main(argv) == 2
    assert "--labels" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_missing_checkpoint_exit_2(tmp_path, capsys):
    assert main(["sample", "--model", "nope", "--checkpoints", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "nope" in capsys.readouterr().err


def test_sample_writes_png(tiny_dir, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "grid.png"
    argv = ["sample", "--model", "tiny", "--checkpoints", str(tiny_dir), "--n", "4", "--steps", "3",
            "--labels", "1,7", "--out", str(out), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == [1, 7, 1, 7]
    image = Image.open(out)
    assert image.size[0] > 28 and image.size[1] > 28


@pytest.mark.parametrize("sampler, extra", [("euler", []), ("heun", ["--karras"]), ("dpmsolver", ["--karras"])])
def test_sample_with_an_ode_solver(sampler, extra, tiny_dir, tmp_path, capsys):
    out = tmp_path / f"{sampler}.png"
    argv = ["sample", "--model", "tiny", "--checkpoints", str(tiny_dir), "--n", "2", "--steps", "3",
            "--sampler", sampler, *extra, "--out", str(out), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["sampler"] == sampler
    assert out.stat().st_size > 0


def test_karras_needs_an_ode_solver(tiny_dir, tmp_path, capsys):
    argv = ["sample", "--model", "tiny", "--checkpoints", str(tiny_dir), "--n", "2", "--karras",
            "--out", str(tmp_path / "x.png")]
    assert main(argv) == 2
    assert "--karras" in capsys.readouterr().err
