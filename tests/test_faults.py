"""Faults and interruptions (issue 19): kills during writes, Ctrl-C, a silent network, the shipped files.

- SIGKILL while a checkpoint is being written leaves the previous one loadable, and the next
  write removes the orphan temporary file;
- SIGINT during training saves, and the resumed run is bitwise the uninterrupted one; the
  command line exits 130 with the exact resume command;
- a local server that accepts connections and never answers makes ``prefetch`` fail within 10 s;
- no training command touches the repository's ``checkpoints/`` without ``--out`` there and ``--force``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from sdcourse import checkpoint, config, stopping, train
from sdcourse.cli import main
from tests.bad_input_cases import _silent_listener

REPO = Path(__file__).resolve().parent.parent


def test_sigkill_during_a_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "run.safetensors"
    child = textwrap.dedent(f"""
        import os, sys, time, torch
        from sdcourse import checkpoint
        checkpoint.save({str(path)!r}, {{"w": torch.zeros(1000)}}, {{"step": 1}})
        def stall(src, dst):  # the new file is fully written; the rename never comes
            print("writing", flush=True)
            time.sleep(600)
        os.replace = stall
        checkpoint.save({str(path)!r}, {{"w": torch.ones(1000)}}, {{"step": 2}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    tensors, meta = checkpoint.load(path)  # checksum verified
    assert meta["step"] == 1 and torch.equal(tensors["w"], torch.zeros(1000))
    orphans = list(tmp_path.glob(".run.safetensors.*.tmp"))
    assert len(orphans) == 1
    checkpoint.save(path, {"w": torch.full((3,), 2.0)}, {"step": 3})
    assert not list(tmp_path.glob(".*.tmp"))
    assert checkpoint.load(path)[1]["step"] == 3


def _fit(path, resume=False, interrupt_at=None):
    """A small fit whose loss sends SIGINT to this process at step ``interrupt_at``."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))
    seen = []

    def loss(m, x, y, gen):
        seen.append(1)
        if interrupt_at is not None and len(seen) == interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        return (m(x) - torch.randn(x.shape, generator=gen)).pow(2).mean()

    data = (torch.randn(64, 4, generator=torch.Generator().manual_seed(1)), torch.zeros(64, dtype=torch.long))
    cfg = train.TrainConfig(steps=12, batch_size=8, checkpoint_every=100, lr=1e-2)
    return train.fit(model, loss, data, cfg, path, {"kind": "toy", "model_config": {}}, resume, progress=False)


def test_sigint_saves_and_the_resumed_run_is_bitwise_exact(tmp_path):
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job
    whole = _fit(tmp_path / "whole.safetensors")
    with pytest.raises(stopping.Interrupted) as stop:
        _fit(tmp_path / "cut.safetensors", interrupt_at=5)
    assert stop.value.step == 5 and checkpoint.load(tmp_path / "cut.safetensors")[1]["step"] == 5
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    resumed = _fit(tmp_path / "cut.safetensors", resume=True)
    assert resumed.step == whole.step == 12 and resumed.losses == whole.losses
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(whole.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_command_line_exits_130_with_the_resume_command(tmp_path):
    out = tmp_path / "runs" / "cut.safetensors"
    argv = [sys.executable, "-m", "sdcourse", "train", "ddpm", "--preset", "tiny", "--steps", "100000",
            "--batch-size", "2", "--checkpoint-every", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SDCOURSE_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    resume_file = out.with_name("cut.resume.safetensors")
    deadline = time.monotonic() + 120
    while not resume_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == stopping.EXIT_CODE, err[-2000:]
    assert "Traceback" not in err
    assert f"--out {out} --resume" in err
    step = checkpoint.load(resume_file)[1]["step"]
    assert f"saved step {step} in" in err


def test_prefetch_fails_within_10_s_against_a_server_that_never_answers(monkeypatch, capsys, tmp_home):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_silent_listener()}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("SDCOURSE_OFFLINE", raising=False)
    start = time.monotonic()
    assert main(["prefetch", "--no-mnist"]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert "cannot reach" in err and "--from" in err and len(err.strip().splitlines()) == 1


def _hashes() -> dict[str, str]:
    return {str(p.relative_to(config.CHECKPOINTS_DIR)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(config.CHECKPOINTS_DIR.rglob("*")) if p.is_file()}  # sd-mnist/ is a folder


def test_training_never_touches_the_shipped_checkpoints(tmp_home, capsys):
    before = _hashes()
    tiny = ["train", "ddpm", "--preset", "tiny", "--steps", "2", "--batch-size", "2", "--json"]
    assert main(tiny) == 0
    assert (config.runs_dir() / "ddpm_mnist.safetensors").exists()
    assert main([*tiny, "--out", str(config.CHECKPOINTS_DIR / "ddpm_mnist")]) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*tiny, "--resume", "--steps", "3"]) == 0  # continues the run in runs/, not the shipped one
    assert main(["train", "sd-mnist", "--stage", "clip", "--steps", "1", "--out",
                 str(config.CHECKPOINTS_DIR / "sd-mnist")]) == 2
    assert "--force" in capsys.readouterr().err
    assert _hashes() == before


def test_the_card_keeps_the_first_command_after_an_interrupted_run(tmp_home, capsys):
    out = str(tmp_home / "r" / "run")
    tiny = ["train", "ddpm", "--preset", "tiny", "--batch-size", "2", "--out", out]
    assert main([*tiny, "--steps", "2"]) == 0
    assert main([*tiny, "--steps", "3", "--resume"]) == 0
    commands = checkpoint.read_card(out + ".safetensors")["commands"]
    assert len(commands) == 2 and "--resume" not in commands[0] and "--resume" in commands[1]


def test_every_shipped_checkpoint_carries_a_verified_checksum():
    for path in sorted(config.CHECKPOINTS_DIR.glob("*.safetensors")):
        tensors, meta = checkpoint.load(path)  # raises if the tensors do not match
        assert meta["sha256"] == checkpoint.tensor_checksum(tensors)
