"""Lesson 07's table at full size: the shipped pixel-space DDPM against the shipped latent DDPM.

    PYTHONPATH=. python bench/latent_vs_pixel.py             # 1 CPU thread: results/latent_vs_pixel_cpu.json
    PYTHONPATH=. python bench/latent_vs_pixel.py --threads 2 --n 1000

Both models (``checkpoint.load_model``, each with the noise schedule of its card) sample the same
labels (0..9 repeated) from the same seed with DDIM (clipping x0_hat only in pixel space), and
``sdcourse.experiments.latent_vs_pixel.compare_spaces`` (lesson 07's table) measures: FLOPs of one
denoiser call (``measure.flops``), training images/s (``train.fit`` in memory: the median step
after a warm-up; the VAE encoder ran once before and is excluded), sampling wall time with
decoding, conditional accuracy and classifier-feature FID (``evaluate.py``, next to the
real-vs-real floor at the same n). Then SD 1.5 at 512x512, counted on the meta device
(``latent_vs_pixel.sd15_costs``). Timings on a shared machine are noisy; the FLOPs are exact.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sdcourse import checkpoint, runs
from sdcourse.experiments import latent_vs_pixel

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="digits sampled per model (at most 1,000 offline)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--train-steps", type=int, default=10, help="timed training steps per model")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch for images/s")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    pixel, latent = checkpoint.load_model("ddpm_mnist"), checkpoint.load_model("ldm_mnist")
    rows, _ = latent_vs_pixel.compare_spaces(pixel, latent, n=args.n, num_inference_steps=args.steps,
                                             train_steps=args.train_steps, batch_size=args.batch_size, seed=args.seed)
    print(latent_vs_pixel.format_table(rows, args.steps))
    sd = latent_vs_pixel.sd15_costs()
    print(f"SD 1.5 UNet step: {sd['unet_step_latent_4x64x64']:.2f} TFLOPs on 4x64x64 latents, "
          f"{sd['unet_step_pixel_3x512x512']:.0f} on 3x512x512 pixels; VAE decode {sd['vae_decode_once']:.2f}")
    cards = {"ddpm_mnist": pixel.card, "ldm_mnist": latent.card}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"latent_vs_pixel_{device}.json"
    out.write_text(json.dumps({
        "args": vars(args), "hardware": runs.hardware(), "machine": platform.machine(), "torch": torch.__version__,
        "rows": [r.as_dict() for r in rows], "sd15_tflops": sd,
        "training": {name: {"steps": card.get("steps"), "wall_seconds": card.get("wall_seconds"),
                            "hardware": card.get("hardware")} for name, card in cards.items()},
        "seconds": round(time.perf_counter() - began, 1),
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
