"""Written-out attention against PyTorch's fused kernel, at the sequence lengths that matter here.

    PYTHONPATH=. python bench/attention.py               # CPU, 1 thread: results/attention_cpu.json
    PYTHONPATH=. python bench/attention.py --device cuda # a GPU: results/attention_cuda.json

Compares, with ``sdcourse.experiments.attention_cost.measure`` (lesson 06's measurement),
``sdcourse.attention.attention`` (softmax(Q K^T / sqrt(d_k)) V step by step, which stores
the (B, h, L_q, L_k) scores and probabilities) with PyTorch's fused kernel
``torch.nn.functional.scaled_dot_product_attention`` (``attention_fused``), on q, k, v of shape
(B, h, L, d) for:
- the toy UNet of lessons 02 to 04 at 28x28: 14x14 = 196 and 7x7 = 49 positions (self-attention);
- Stable Diffusion 1.5's UNet at 512x512 (latent 64x64), 8 heads, where each level has its
  dim_head: 64x64 = 4,096 positions (dim_head 40), 32x32 = 1,024 (80), 16x16 = 256 (160),
  the 8x8 = 64 mid block (160); self-attention, and cross-attention to 77 text tokens.

Time: the median of repeated calls after one warm-up call (``torch.cuda.synchronize`` around each
call on a GPU).

Peak memory: the extra bytes one call needs at its peak, measured by ``sdcourse.measure``:
``torch.cuda.max_memory_allocated`` on a GPU; on a CPU the growth of the process's peak resident
set size (``VmHWM``, reset through ``/proc/self/clear_refs`` after ``malloc_trim``), which sees
every page torch touches; Linux only, below about 1 MB it is noise.
``scores MB``: the size of one (B, h, L_q, L_k) float32 score matrix, B*h*L_q*L_k*4 bytes, for
reference: the written-out path holds about two of them (scores and probabilities) at its peak.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from sdcourse.experiments import attention_cost

RESULTS = Path(__file__).resolve().parent / "results"

# (name, L_q, L_k, heads, dim_head)
CASES = [
    ("toy 7x7 self", 49, 49, 4, 16),
    ("toy 14x14 self", 196, 196, 4, 16),
    ("SD 64x64 self", 4096, 4096, 8, 40),
    ("SD 64x64 cross", 4096, 77, 8, 40),
    ("SD 32x32 self", 1024, 1024, 8, 80),
    ("SD 32x32 cross", 1024, 77, 8, 80),
    ("SD 16x16 self", 256, 256, 8, 160),
    ("SD 16x16 cross", 256, 77, 8, 160),
    ("SD 8x8 mid self", 64, 64, 8, 160),
]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mb(n):
    return "" if n is None else f"{n / 2**20:8.1f}"


def format_table(rows) -> str:
    head = (f"{'case':<16} {'L_q':>5} {'L_k':>5} {'d':>4} | {'written ms':>10} {'fused ms':>9} "
            f"{'x':>5} | {'written MB':>10} {'fused MB':>9} {'scores MB':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.case:<16} {r.L_q:>5} {r.L_k:>5} {r.dim_head:>4} | "
            f"{r.written_s * 1e3:>10.2f} {r.fused_s * 1e3:>9.2f} {r.time_ratio:>5.2f} | "
            f"{_mb(r.written_peak_bytes):>10} {_mb(r.fused_peak_bytes):>9} {_mb(r.scores_bytes):>9}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=1, help="images per call (2 with CFG)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (shared machines: 1)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds of timing per case and path")
    parser.add_argument("--max-repeats", type=int, default=50)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default bench/results/attention_<device>.json)")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be >= 1, got {args.batch}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    rows = []
    start = time.perf_counter()
    for case in CASES:
        if args.only and args.only not in case[0]:
            continue
        rows.append(attention_cost.measure(*case, batch=args.batch, device=device, dtype=dtype,
                                           budget_s=args.budget, max_repeats=args.max_repeats))
        print(f"  {case[0]}: done", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start

    hardware = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"{_cpu_name()}, {args.threads} thread(s)")
    print(f"attention: written-out vs fused, {args.dtype}, batch {args.batch}, on {hardware}")
    print(format_table(rows))
    print(f"(x = written / fused time; MB = peak extra memory in one call; {wall:.0f} s in all)")

    out = args.out or RESULTS / f"attention_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "bench": "attention", "device": device.type, "hardware": hardware, "threads": args.threads,
        "dtype": args.dtype, "batch": args.batch, "torch": torch.__version__,
        "memory_method": ("torch.cuda.max_memory_allocated delta" if device.type == "cuda" else
                          "VmHWM - VmRSS growth after malloc_trim and clear_refs reset (Linux)"),
        "wall_s": wall, "rows": [r.as_dict() for r in rows],
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
