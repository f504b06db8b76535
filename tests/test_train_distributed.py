"""The one training loop under two processes (``torchrun --nproc_per_node 2``: accelerate's gloo
backend on the CPU): it trains, writes each checkpoint once, resumes, and two processes with half
the batch each follow one process running both halves to float tolerance."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sdcourse import checkpoint

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "helpers"))
import fit_worker  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(path: Path, steps: int, *extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(_free_port()), str(HERE / "helpers" / "fit_worker.py"), str(path),
                           str(steps), *extra], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _assert_close_to(path: Path, result) -> None:
    tensors, meta = checkpoint.load(path)
    assert meta["step"] == result.step
    for prefix, module in (("model.", result.model), ("ema.", result.ema)):
        for key, value in module.state_dict().items():
            torch.testing.assert_close(tensors[prefix + key], value, rtol=1e-5, atol=1e-6, msg=prefix + key)
    assert meta["losses"] == pytest.approx(result.losses, rel=1e-5)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    _torchrun(folder / "run.safetensors", 4)
    return folder


def test_two_processes_follow_one_process_and_write_one_checkpoint(two_process_run):
    _assert_close_to(two_process_run / "run.safetensors", fit_worker.run(None, 4))
    assert sorted(p.name for p in two_process_run.iterdir()) == ["run.safetensors"]  # no copies, no temporaries


def test_two_processes_resume_where_they_stopped(two_process_run):
    _torchrun(two_process_run / "run.safetensors", 6, "--resume")
    _assert_close_to(two_process_run / "run.safetensors", fit_worker.run(None, 6))


def test_shards_must_divide_the_batch():
    with pytest.raises(ValueError, match="shards"):
        fit_worker.TrainConfig(batch_size=8, shards=3)
