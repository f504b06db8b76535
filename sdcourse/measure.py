"""Measuring one call: its median time, the extra memory it needs at its peak, on CPU or GPU, and
its floating-point operations (lesson 06's cost-of-attention figure and ``bench/attention.py``;
lesson 07's pixel-versus-latent table; no paper, just honest numbers).

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` counts matrix products, convolutions and
attention, 2 per multiply-add; normalizations and activations (a few percent) are not counted.
It works on the ``meta`` device too, so the cost of a model too big to run can still be counted.

Peak memory, per device:
- CUDA: ``torch.cuda.max_memory_allocated()`` during the call minus the memory allocated before it
  (after ``reset_peak_memory_stats``): exactly the extra bytes the call took from the allocator.
- CPU (Linux): the growth of the process's peak resident set size during the call. First freed
  heap goes back to the OS (glibc ``malloc_trim(0)``) and the kernel's high-water mark is reset
  (writing 5 to ``/proc/self/clear_refs``); after the call, ``VmHWM - VmRSS(before)`` from
  ``/proc/self/status``. It counts every page torch and its kernels touched, not only tensors;
  below about 1 MB it is noise. Elsewhere (macOS, Windows) it returns None.
"""

from __future__ import annotations

import ctypes
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def _status_kb() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


def _reset_cpu_peak() -> bool:
    """Give freed heap back to the OS and reset VmHWM to VmRSS; False where Linux lacks it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM" in _status_kb()
    except OSError:
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(fn: Callable[[], object], device: torch.device | str = "cpu") -> int | None:
    """Extra bytes ``fn()`` needed at its peak on ``device`` (module docstring: how), or None
    where this machine cannot tell. Keep no reference to what ``fn`` returns."""
    device = torch.device(device)
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device.type!r}")
    if not _reset_cpu_peak():
        return None
    before = _status_kb()["VmRSS"]
    fn()
    return (_status_kb()["VmHWM"] - before) * 1024


def median_time(fn: Callable[[], object], device: torch.device | str = "cpu",
                budget_s: float = 1.0, min_repeats: int = 3, max_repeats: int = 50) -> float:
    """Median seconds of ``fn()`` over at least ``min_repeats`` calls, more while the total stays
    under ``budget_s`` (up to ``max_repeats``). Call ``fn`` once before, to warm up."""
    if min_repeats < 1 or max_repeats < min_repeats:
        raise ValueError(
            f"need 1 <= min_repeats <= max_repeats, got min_repeats={min_repeats}, "
            f"max_repeats={max_repeats}"
        )
    device = torch.device(device)
    times: list[float] = []
    while len(times) < min_repeats or (sum(times) < budget_s and len(times) < max_repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call ``fn()`` (module docstring: what is counted)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
