"""Lesson 11's sweep on Stable Diffusion: sd-mnist through the hand-written loop, schedulers swapped.

    PYTHONPATH=. python bench/sd_mnist_solvers.py                          # 10 digits x 10 seeds per point
    PYTHONPATH=. python bench/sd_mnist_solvers.py --seeds 2 --nfe 2 4      # a smoke run

For each solver of ``faster_sampling.SD_SOLVERS`` (DDIM; Euler, Heun and DPM-Solver++(2M), with and
without Karras sigmas: the ``diffusers`` schedulers that ``sdcourse.solvers`` equals) and each
``--nfe`` (UNet calls; the guided pair is one batched call, as in the pipeline), ``sd.generate``
draws "a handwritten <digit word>" for the ten digits from seeds 0..n-1 (guidance 5), and the course
classifier reads them: accuracy mean +/- sd over seeds. Accuracy saturates early on a model this
good, so each image is also compared with the same seed and prompt solved finely (DPM-Solver++ at
``--reference-nfe`` calls: where every one of these solvers of the same ODE converges): the mean
absolute pixel distance, in [0, 1] units. The pipeline's own PNDM at 25 steps (26 calls, lesson 09's
setting) is a row too. Writes ``results/sd_mnist_solvers.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from sdcourse import captions, evaluate, sd
from sdcourse.experiments.faster_sampling import SD_SOLVERS, measure_sd_solver, sd_images

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="images per digit and point")
    parser.add_argument("--reference-nfe", type=int, default=100)
    parser.add_argument("--nfe", type=int, nargs="+", default=[2, 3, 4, 6, 10, 25])
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = sd.load_pipeline("sd-mnist")
    pipe.set_progress_bar_config(disable=True)
    prompts = [f"a handwritten {captions.DIGIT_WORDS[d]}" for d in range(10)]
    labels = torch.arange(10)
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    reference = sd_images(pipe, "dpmsolver", args.reference_nfe, prompts, seeds, args.guidance)[0]
    rows = []
    for name, nfe in [("pndm", 26)] + [(n, k) for n in SD_SOLVERS for k in args.nfe]:
        if name.startswith("heun") and (nfe < 3 or nfe % 2 == 0):
            continue  # Heun's n steps cost 2n - 1 calls: an even budget buys what one call less does
        rows.append(r := measure_sd_solver(pipe, name, nfe, prompts, labels, seeds, reference, args.guidance))
        print(f"{name:17s} NFE {r['nfe']:3d}  accuracy {r['accuracy']:.3f} +/- {r['accuracy_sd']:.3f}  distance "
              f"to converged {r['distance_to_converged']:.4f} +/- {r['distance_sd']:.4f}  "
              f"{r['ms_per_image']:5.0f} ms/image", flush=True)
    result = {
        "model": "sd-mnist", "loop": "sdcourse.sd.generate (the hand-written loop of lesson 08)",
        "prompts": "a handwritten <digit word>, the ten digits", "seeds_per_digit": args.seeds,
        "guidance": args.guidance, "classifier_real_accuracy": evaluate.classifier_real_accuracy(),
        "measured": "conditional accuracy of the course classifier, mean and sd over seeds (10 images each); "
                    "distance_to_converged: mean absolute pixel difference ([0, 1] units) to DPM-Solver++ at "
                    f"{args.reference_nfe} calls from the same seed and prompt; nfe = UNet calls per image (the "
                    "guided pair batched as one call)",
        "reference": f"dpmsolver, {args.reference_nfe} steps", "rows": rows,
        "wall_seconds": time.perf_counter() - start,
        "command": "PYTHONPATH=. python bench/sd_mnist_solvers.py " + " ".join(sys.argv[1:]),
        "threads": args.threads, "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    out = RESULTS / "sd_mnist_solvers.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
