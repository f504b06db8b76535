"""How well ``checkpoints/sd-mnist`` follows its prompts: lesson 09's numbers.

    PYTHONPATH=. python bench/sd_mnist_metrics.py --run /work/sdm13-run            # 20 seeds x 10 digits
    PYTHONPATH=. python bench/sd_mnist_metrics.py --seeds 2 --steps 4 --no-card     # a smoke run

For each prompt language (English words "a handwritten seven", numerals "a handwritten 7",
Chinese "手写数字七") it generates ``--seeds`` images of each digit (25 steps, guidance 5, the
pipeline's PNDM scheduler, seeds 0..n-1) and reads them with the course classifier
(``evaluate.conditional_accuracy``), whose accuracy on real test digits is the ceiling. Attribute
control: "a thick X" vs "a thin X" and "a right-slanted X" vs "a left-slanted X" over the ten
digits, measured with ``captions.thickness``/``captions.slant``, as Cohen's d (difference of
means / pooled sd). Optional: the guidance sweep (accuracy, and diversity = mean pairwise
distance), the tiny CLIP's zero-shot accuracy on the test digits (needs the training folder
``--run``), ``sd.generate`` against ``StableDiffusionPipeline``, and each stage's training cost. The negative
prompt: "a seven" against "a seven" with the negative prompt "thick" (20 seeds), thickness and
the share still read as a 7.
Writes ``results/sd_mnist.json`` and, unless ``--no-card``, the card's ``metrics``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sdcourse import captions, checkpoint, clip, config, evaluate, sd
from sdcourse.data import load_mnist
from sdcourse.experiments import sd_digits
from sdcourse.sd import mnist

RESULTS = Path(__file__).resolve().parent / "results"
NEGATIVE_SEEDS = 20  # images of "a seven" with and without the negative prompt
PROMPTS = sd_digits.PROMPTS  # English words, numerals, Chinese: digit -> prompt


def generate(pipe, prompt: str, seeds: list[int], steps: int, guidance: float,
             negative: str | None = None) -> torch.Tensor:
    """(n, 1, 28, 28) digits in [-1, 1] for ``prompt`` (guided away from ``negative``), one per seed, in one
    batched pipeline call (``sd_digits.digits``)."""
    return sd_digits.digits(pipe, [prompt], seeds, steps, guidance, negative_prompt=negative)[:, 0]


def accuracy(pipe, language: str, seeds: list[int], steps: int, guidance: float) -> tuple[float, torch.Tensor]:
    images = torch.cat([generate(pipe, PROMPTS[language](d), seeds, steps, guidance) for d in range(10)])
    labels = torch.arange(10).repeat_interleave(len(seeds))
    return evaluate.conditional_accuracy(images, labels), images


cohens_d = sd_digits.cohens_d


def attribute_effect(pipe, high: str, low: str, measure, seeds, steps, guidance) -> dict:
    a = torch.cat([measure(generate(pipe, f"a {high} {captions.DIGIT_WORDS[d]}", seeds, steps, guidance))
                   for d in range(10)])
    b = torch.cat([measure(generate(pipe, f"a {low} {captions.DIGIT_WORDS[d]}", seeds, steps, guidance))
                   for d in range(10)])
    return {"prompts": [f"a {high} <digit>", f"a {low} <digit>"], "mean": [a.mean().item(), b.mean().item()],
            "cohens_d": cohens_d(a, b), "n_each": len(a)}


def negative_prompt_effect(pipe, seeds: list[int], steps: int, guidance: float) -> dict:
    """"a seven" without and with the negative prompt "thick", from the same seeds: the measured
    thickness of each (Cohen's d) and the share the classifier still reads as a 7."""
    plain, away = (generate(pipe, "a seven", seeds, steps, guidance, negative) for negative in (None, "thick"))
    sevens = torch.full((len(seeds),), 7)
    thick_plain, thick_away = captions.thickness(plain), captions.thickness(away)
    return {"prompt": "a seven", "negative_prompt": "thick", "n_each": len(seeds),
            "thickness_mean": [thick_plain.mean().item(), thick_away.mean().item()],
            "cohens_d_plain_minus_negative": cohens_d(thick_plain, thick_away),
            "accuracy_as_7": [evaluate.conditional_accuracy(images, sevens) for images in (plain, away)]}


def zero_shot(run: Path) -> dict:
    from sdcourse.sd_mnist_runs import load_stage

    model, _ = load_stage(run, "clip")
    test = load_mnist("test", verbose=False)
    grey = mnist.pad_digits(test.images)[:, :1]
    out = {}
    for language, prompt in PROMPTS.items():
        guess = clip.zero_shot(model, grey, [prompt(d) for d in range(10)])
        out[language] = (guess == test.labels).double().mean().item()
    return {"accuracy": out, "test_digits": len(test)}


def generate_vs_pipeline(pipe, steps: int) -> int:
    worst = 0
    for seed, prompt in enumerate(["a thick seven", "手写数字三", "a small 2"]):
        ours = np.asarray(sd.generate(pipe, prompt, guidance_scale=5, num_inference_steps=steps, seed=seed), dtype=int)
        theirs = pipe(prompt, guidance_scale=5, num_inference_steps=steps,
                      generator=torch.Generator("cpu").manual_seed(seed)).images[0]
        worst = max(worst, int(np.abs(ours - np.asarray(theirs, dtype=int)).max()))
    return worst


def guidance_sweep(pipe, scales: list[float], seeds: list[int], steps: int) -> dict:
    """English-word prompts at each guidance scale: accuracy (adherence) and diversity (classifier features)."""
    sweep = {}
    for g in scales:
        acc, images = accuracy(pipe, "words", seeds, steps, g)
        sweep[str(g)] = {"accuracy": acc, "diversity": evaluate.mean_pairwise_distance(images)}
    return sweep


def sweep_only(pipe, args, seeds: list[int], results: dict, began: float) -> None:
    results = {**results, "guidance_sweep_words": guidance_sweep(pipe, args.sweep, seeds, args.steps),
               "wall_seconds": round(time.perf_counter() - began, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sd_mnist_sweep.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    if not args.no_card:
        card_file = config.CHECKPOINTS_DIR / mnist.NAME / "card.json"
        card = checkpoint.read_card(card_file)
        sweep = {**results, "command": "python bench/sd_mnist_metrics.py --sweep-only"}
        checkpoint.write_card(card_file, {**card, "guidance_sweep": sweep})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sd-mnist", help="sd-mnist or a pipeline folder")
    parser.add_argument("--seeds", type=int, default=20, help="images per digit and prompt")
    parser.add_argument("--attribute-seeds", type=int, default=None, help="default: --seeds")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--sweep", type=float, nargs="*", default=[], help="guidance scales, e.g. 1 3 5 8 12")
    parser.add_argument("--run", type=Path, default=None, help="the training folder (zero-shot CLIP, costs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sweep-only", action="store_true", help="only --sweep, into results/sd_mnist_sweep.json")
    parser.add_argument("--no-card", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    pipe = sd.load_pipeline(args.model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    seeds = list(range(args.seeds))
    results = {"model": args.model, "steps": args.steps, "guidance": args.guidance, "seeds_per_digit": args.seeds,
               "scheduler": type(pipe.scheduler).__name__, "threads": args.threads,
               "hardware": f"{platform.processor() or platform.machine()} CPU",
               "classifier_real_accuracy": evaluate.classifier_real_accuracy()}
    if args.sweep_only:
        sweep_only(pipe, args, seeds, results, began)
        return
    results["accuracy"] = {lang: accuracy(pipe, lang, seeds, args.steps, args.guidance)[0] for lang in PROMPTS}
    attribute_seeds = list(range(args.attribute_seeds or args.seeds))
    results["thick_vs_thin"] = attribute_effect(pipe, "thick", "thin", captions.thickness, attribute_seeds,
                                                args.steps, args.guidance)
    results["right_vs_left_slant"] = attribute_effect(pipe, "right-slanted", "left-slanted", captions.slant,
                                                      attribute_seeds, args.steps, args.guidance)
    results["negative_prompt"] = negative_prompt_effect(pipe, list(range(NEGATIVE_SEEDS)), args.steps, args.guidance)
    results["generate_vs_pipeline_max_pixel_diff"] = generate_vs_pipeline(pipe, args.steps)
    if args.sweep:
        results["guidance_sweep_words"] = guidance_sweep(pipe, args.sweep, seeds, args.steps)
    if args.run is not None:
        results["clip_zero_shot"] = zero_shot(args.run)
        stages = args.run / "stages.json"
        results["training"] = checkpoint.read_card(stages) if stages.exists() else None
    results["wall_seconds"] = round(time.perf_counter() - began, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sd_mnist.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if not args.no_card:
        card_file = config.CHECKPOINTS_DIR / mnist.NAME / "card.json"
        card = checkpoint.read_card(card_file)
        metrics = {**results, "command": "PYTHONPATH=. python bench/sd_mnist_metrics.py " + " ".join(sys.argv[1:])}
        checkpoint.write_card(card_file, {**card, "metrics": metrics})


if __name__ == "__main__":
    main()
