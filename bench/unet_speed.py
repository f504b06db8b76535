"""Issue 18's machine half: how fast a training step of the toy UNet runs on a CPU, and how busy its cores are.

    PYTHONPATH=. python bench/unet_speed.py                                     # results/unet_speed.json
    PYTHONPATH=. python bench/unet_speed.py --rounds 1 --steps 2 --no-compile --out /tmp/s.json   # smoke

Four measurements, in one process, on an otherwise idle machine (the JSON records the load average):

1. **Conv peak**: GFLOP/s of fp32 3x3 convolutions, forward and forward+backward, at the UNet's
   three levels (16 channels at 28x28, 32 at 14x14, 64 at 7x7, batch 128) and one large layer
   (128 channels at 14x14), both memory formats, at each thread count; the peak is the best of them.
2. **FLOPs per training image**: ``torch.utils.flop_counter.FlopCounterMode`` over one training step
   (forward and backward) of ``UNetConfig.cpu()`` on a batch, divided by the batch. It counts
   convolutions and matrix products, not the normalizations and activations: utilization below is
   the share of the conv peak that those FLOPs reach (as "model FLOP utilization" is defined).
3. **Images/s of a training step** (the preset's v-prediction ``train.ddpm_loss`` on real digits,
   backward, AdamW step) for each variant: 1 or 2 threads x contiguous or channels-last x eager or
   ``torch.compile`` (inductor, C++ on the CPU; its compile time is reported apart). The variants
   run in turn, ``--rounds`` times, ``--steps`` timed steps each after warm-up; medians reported.
4. **Profile**: the operators of one eager channels-last step by self CPU time (``torch.profiler``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.report import finish
from sdcourse.data import load_mnist
from sdcourse.runs import DDPM_SCHEDULE
from sdcourse.schedules import NoiseSchedule
from sdcourse.train import ddpm_loss, step_generator
from sdcourse.unet import UNet, UNetConfig

RESULTS = Path(__file__).resolve().parent / "results"
CONV_SHAPES = [(128, 16, 28), (128, 32, 14), (128, 64, 7), (64, 128, 14)]  # (batch, channels in = out, size)
FORMATS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}


def counted_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks and caches its kernels
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def conv_peak(threads: list[int], repeats: int) -> dict:
    """GFLOP/s of each conv shape, pass and format at each thread count, and the best per thread count."""
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        for batch, ch, size in CONV_SHAPES:
            for fmt_name, fmt in FORMATS.items():
                x = torch.randn(batch, ch, size, size).contiguous(memory_format=fmt).requires_grad_()
                w = torch.randn(ch, ch, 3, 3).contiguous(memory_format=fmt).requires_grad_()

                def forward(x=x, w=w):
                    with torch.no_grad():
                        F.conv2d(x, w, padding=1)

                def forward_backward(x=x, w=w):
                    F.conv2d(x, w, padding=1).sum().backward()

                for pass_name, fn in (("forward", forward), ("forward+backward", forward_backward)):
                    flops = counted_flops(fn)
                    seconds = best_seconds(fn, repeats)
                    rows.append({"threads": n, "shape": f"{batch}x{ch}x{size}x{size}", "format": fmt_name,
                                 "pass": pass_name, "gflop_per_s": flops / seconds / 1e9})
    peak = {n: max(r["gflop_per_s"] for r in rows if r["threads"] == n) for n in threads}
    return {"rows": rows, "peak_gflop_per_s": peak}


class Step:
    """One training step of the preset's recipe on ``model``: v-prediction loss, backward, AdamW."""

    def __init__(self, model, forward, digits, batch_size: int, fmt):
        self.schedule = NoiseSchedule.from_config(DDPM_SCHEDULE)
        self.model, self.forward, self.fmt = model, forward, fmt
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-3)
        self.images, self.labels, self.batch_size = digits.images, digits.labels, batch_size
        self.step = 0

    def loss(self):
        gen = step_generator(0, self.step)
        pick = torch.randint(0, len(self.images), (self.batch_size,), generator=gen)
        x0 = self.images[pick].contiguous(memory_format=self.fmt)
        return ddpm_loss(self.forward, self.schedule, x0, self.labels[pick], gen, 0.1, "v")

    def __call__(self):
        self.optimizer.zero_grad(set_to_none=True)
        self.loss().backward()
        self.optimizer.step()
        self.step += 1


def step_flops_per_image(digits, batch_size: int) -> float:
    torch.manual_seed(0)
    model = UNet(UNetConfig.cpu())
    step = Step(model, model, digits, batch_size, torch.contiguous_format)
    return counted_flops(lambda: step.loss().backward()) / batch_size


def step_speeds(args, digits) -> dict:
    """Median training images/s of each variant, the variants taking turns each round."""
    variants = {}
    compile_seconds = {}
    for n in args.threads:
        for fmt_name, fmt in FORMATS.items():
            for compiled in ([False, True] if args.compile and fmt_name == "channels-last" else [False]):
                torch.manual_seed(0)
                model = UNet(UNetConfig.cpu()).to(memory_format=fmt)
                forward = torch.compile(model) if compiled else model
                name = f"{n} thread{'s' * (n > 1)}, {fmt_name}, {'compiled' if compiled else 'eager'}"
                variants[name] = (n, Step(model, forward, digits, args.batch_size, fmt))
                torch.set_num_threads(n)
                began = time.perf_counter()
                for _ in range(2):  # warm-up; for a compiled model, the compilation
                    variants[name][1]()
                if compiled:
                    compile_seconds[name] = time.perf_counter() - began
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, (n, step) in variants.items():
            torch.set_num_threads(n)
            began = time.perf_counter()
            for _ in range(args.steps):
                step()
            speeds[name].append(args.steps * args.batch_size / (time.perf_counter() - began))
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{s[-1]:.0f}" for s in speeds.values()), flush=True)
    return {"images_per_s": {name: statistics.median(s) for name, s in speeds.items()}, "all_rounds": speeds,
            "compile_seconds": compile_seconds}


def profile(digits, batch_size: int, threads: int, top: int = 10) -> list[dict]:
    """The ``top`` operators of one eager channels-last step by self CPU time, with their share."""
    from torch.profiler import ProfilerActivity  # lazy: only this measurement uses the profiler
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = UNet(UNetConfig.cpu()).to(memory_format=torch.channels_last)
    step = Step(model, model, digits, batch_size, torch.channels_last)
    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "share": e.self_cpu_time_total / total, "calls_per_step": e.count // 3}
            for e in events[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant per round")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per conv measurement (best kept)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile variants")
    parser.add_argument("--out", type=Path, default=RESULTS / "unet_speed.json")
    args = parser.parse_args()
    digits = load_mnist("train", verbose=False)
    payload = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "torch": torch.__version__, "load_average_before": os.getloadavg(),
               "args": {k: str(v) for k, v in vars(args).items()}}
    print("conv peak (GFLOP/s):", flush=True)
    payload["conv"] = conv_peak(args.threads, args.repeats)
    payload["flops_per_image"] = step_flops_per_image(digits, args.batch_size)
    print("training step (images/s), variants in turn:", flush=True)
    payload["steps"] = step_speeds(args, digits)
    payload["profile"] = profile(digits, args.batch_size, args.threads[0])
    payload["load_average_after"] = os.getloadavg()

    peak = payload["conv"]["peak_gflop_per_s"]
    rows = [(f"conv peak, {n} thread{'s' * (n > 1)}", f"{g:.0f} GFLOP/s") for n, g in peak.items()]
    rows.append(("training FLOPs per image (convs and matmuls)", f"{payload['flops_per_image'] / 1e6:.0f} MFLOP"))
    utilization = {}
    for name, ips in payload["steps"]["images_per_s"].items():
        n = int(name.split()[0])
        utilization[name] = ips * payload["flops_per_image"] / 1e9 / peak[n]
        rows.append((f"step: {name}", f"{ips:.0f} images/s, {100 * utilization[name]:.0f} % of the conv peak"))
    for name, seconds in payload["steps"]["compile_seconds"].items():
        rows.append((f"compile time: {name}", f"{seconds:.0f} s"))
    rows += [(f"profile: {p['op']}", f"{100 * p['share']:.0f} % ({p['calls_per_step']} calls)")
             for p in payload["profile"][:6]]
    payload["utilization"] = utilization
    finish(rows, payload, args.out)


if __name__ == "__main__":
    main()
