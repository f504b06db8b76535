"""Measuring what a Stable Diffusion trained on digits draws: lesson 08's sweeps, lesson 09's numbers.

``digits(pipe, prompts, seeds, ...)`` runs a ``StableDiffusionPipeline`` (or, given init images, a
``StableDiffusionImg2ImgPipeline`` sharing its weights) once, batched over every prompt and seed,
and returns the pictures as (seeds, prompts, 1, 28, 28) digits in [-1, 1], the input of the course
classifier (``evaluate``) and of the measuring functions of ``captions``. Image (s, p) equals
``pipe(prompts[p], generator=torch.Generator().manual_seed(seeds[s]))``: each seed is its own generator.

What is measured, always over the seeds (mean and sample sd):

- ``seed_accuracy``: the share of one seed's images that the classifier reads as the digit asked for;
- ``pixel_diversity``: the mean absolute pixel difference ([0, 1] units) between two seeds' images
  of the same prompt, over all pairs of seeds, then averaged over the prompts (sd over the prompts);
- ``cohens_d``: the difference of two groups' means in pooled standard deviations (the effect size
  of "thick" against "thin", measured with ``captions.thickness``).

The sweeps of lesson 08 (``guidance_sweep``, ``steps_sweep``, ``negative_prompt_sweep``,
``img2img_sweep``) return one dict per point with its numbers and its images; the scheduler sweep
is lesson 11's ``faster_sampling.measure_sd_solver``, through the hand-written loop.
"""

from __future__ import annotations

import torch
from PIL import Image
from tqdm.auto import tqdm

from .. import captions, evaluate, sd, validate
from ..data import load_mnist
from ..sd import mnist
from .faster_sampling import mean_sd

Tensor = torch.Tensor
PROMPTS = {  # the three scripts of lesson 09's captions: digit d -> prompt
    "words": lambda d: f"a handwritten {captions.DIGIT_WORDS[d]}",
    "numerals": lambda d: f"a handwritten {d}",
    "chinese": lambda d: f"手写数字{captions.DIGIT_CHINESE[d]}",
}
DIGITS = torch.arange(10)


def _runner(pipe, scheduler, img2img: bool):
    """``pipe``'s weights in a text-to-image or img2img pipeline with ``scheduler`` (a name of
    ``sd.SCHEDULERS``, or None for the pipeline's own)."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline  # lazy: diffusers is slow

    if scheduler is None and not img2img:
        return pipe
    components = {**pipe.components, "requires_safety_checker": False}
    if scheduler is not None:
        components["scheduler"] = sd.make_scheduler(pipe, scheduler)
    runner = (StableDiffusionImg2ImgPipeline if img2img else StableDiffusionPipeline)(**components)
    runner.set_progress_bar_config(disable=True)
    return runner


@torch.no_grad()
def digits(pipe, prompts: list[str], seeds, num_inference_steps: int = 25, guidance_scale: float = 5.0,
           negative_prompt: str | None = None, scheduler: str | None = None, init_images=None,
           strength: float = 0.8) -> Tensor:
    """(len(seeds), len(prompts), 1, 28, 28) digits in [-1, 1] from one batched call of ``pipe``.

    ``init_images``: one PIL image per prompt turns it into img2img at ``strength``.
    """
    seeds = [validate.integer("seed", s) for s in seeds]
    if init_images is not None and len(init_images) != len(prompts):
        raise ValueError(f"init_images must hold one image per prompt ({len(prompts)}), got {len(init_images)}")
    runner = _runner(pipe, scheduler, init_images is not None)
    extra = {} if init_images is None else {"image": list(init_images) * len(seeds), "strength": strength}
    out = runner(list(prompts) * len(seeds), num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                 negative_prompt=None if negative_prompt is None else [negative_prompt] * len(prompts) * len(seeds),
                 generator=[torch.Generator("cpu").manual_seed(s) for s in seeds for _ in prompts],
                 output_type="pt", **extra).images  # (S * P, 3, 32, 32) in [0, 1], seed-major
    return mnist.to_grey(out * 2 - 1).view(len(seeds), len(prompts), 1, 28, 28)


def seed_accuracy(images: Tensor, labels: Tensor) -> tuple[float, float]:
    """Accuracy of (S, P, 1, 28, 28) digits asked for ``labels`` (P,): mean and sd over the S seeds."""
    return mean_sd([evaluate.conditional_accuracy(per_seed, labels) for per_seed in images])


def pixel_diversity(images: Tensor) -> tuple[float, float]:
    """Mean absolute pixel difference ([0, 1] units) between seeds, per prompt: mean and sd over prompts."""
    if images.shape[0] < 2:
        raise ValueError(f"need at least 2 seeds to measure diversity, got {images.shape[0]}")
    flat = images.flatten(2).transpose(0, 1) / 2  # (P, S, 784); [-1, 1] -> distances in [0, 1] units
    s = flat.shape[1]
    per_prompt = torch.cdist(flat, flat, p=1).sum((1, 2)) / (s * (s - 1) * flat.shape[2])  # mean over pairs
    return mean_sd(per_prompt.tolist())


def cohens_d(a: Tensor, b: Tensor) -> float:
    """(mean a - mean b) / pooled sample sd: how many standard deviations apart two groups are."""
    pooled = ((a.var() * (len(a) - 1) + b.var() * (len(b) - 1)) / (len(a) + len(b) - 2)).sqrt()
    return ((a.mean() - b.mean()) / pooled).item()


def guidance_sweep(pipe, scales, seeds, num_inference_steps: int = 25) -> list[dict]:
    """"a thick <digit>" and "a thin <digit>" for the ten digits at each guidance scale: accuracy,
    the thickness gap between them (Cohen's d, ``captions.thickness``) and diversity."""
    prompts = [f"a {w} {d}" for w in ("thick", "thin") for d in captions.DIGIT_WORDS]
    labels = DIGITS.repeat(2)
    rows = []
    for g in tqdm(scales, desc="guidance scales"):
        images = digits(pipe, prompts, seeds, num_inference_steps, guidance_scale=g)
        thick = captions.thickness(images[:, :10].flatten(0, 1))
        thin = captions.thickness(images[:, 10:].flatten(0, 1))
        rows.append({"guidance_scale": g, "accuracy": seed_accuracy(images, labels),
                     "thickness": (thick.mean().item(), thin.mean().item()), "thick_vs_thin_d": cohens_d(thick, thin),
                     "diversity": pixel_diversity(images), "images": images})
    return rows


def steps_sweep(pipe, step_counts, seeds, guidance_scale: float = 5.0, scheduler: str = "ddim") -> list[dict]:
    """"a handwritten <digit>" at each number of steps: accuracy, diversity, and the mean absolute
    pixel distance ([0, 1] units) to the images of the most steps (mean and sd over seeds)."""
    prompts = [PROMPTS["words"](d) for d in range(10)]
    runs = {n: digits(pipe, prompts, seeds, n, guidance_scale, scheduler=scheduler)
            for n in tqdm(sorted(step_counts), desc="step counts")}
    finest = runs[max(runs)]
    return [{"steps": n, "accuracy": seed_accuracy(images, DIGITS), "diversity": pixel_diversity(images),
             "distance_to_most_steps": mean_sd(((images - finest).abs().mean((1, 2, 3, 4)) / 2).tolist()),
             "images": images} for n, images in runs.items()]


def negative_prompt_sweep(pipe, negatives, seeds, num_inference_steps: int = 25,
                          guidance_scale: float = 5.0) -> list[dict]:
    """"a <digit>" for the ten digits with each negative prompt (None: the empty one): measured
    thickness, its Cohen's d against no negative prompt, and accuracy."""
    prompts = [f"a {w}" for w in captions.DIGIT_WORDS]
    runs = {neg: digits(pipe, prompts, seeds, num_inference_steps, guidance_scale, negative_prompt=neg)
            for neg in tqdm(negatives, desc="negative prompts")}
    plain = captions.thickness(runs[None].flatten(0, 1)) if None in runs else None
    rows = []
    for neg, images in runs.items():
        thickness = captions.thickness(images.flatten(0, 1))
        rows.append({"negative_prompt": neg, "accuracy": seed_accuracy(images, DIGITS),
                     "thickness": (thickness.mean().item(), thickness.std().item()),
                     "d_vs_none": None if plain is None else cohens_d(thickness, plain), "images": images})
    return rows


def init_digits(offset: int = 5):
    """The first test digit of each class d as a 32x32 RGB PIL image, the prompt asking for digit
    (d + offset) mod 10, and both labels: ``(images, prompts, init_labels, prompt_labels)``."""
    test = load_mnist("test", verbose=False)
    first = torch.stack([test.images[(test.labels == d).nonzero()[0, 0]] for d in range(10)])
    pixels = ((mnist.pad_digits(first) + 1) * 127.5).round().clamp(0, 255).byte()  # (10, 3, 32, 32)
    images = [Image.fromarray(p.permute(1, 2, 0).numpy()) for p in pixels]
    targets = (DIGITS + offset) % 10
    return images, [PROMPTS["words"](int(d)) for d in targets], DIGITS.clone(), targets


def img2img_sweep(pipe, strengths, seeds, num_inference_steps: int = 25, guidance_scale: float = 5.0,
                  offset: int = 5) -> list[dict]:
    """Each test digit d redrawn for the prompt of digit (d + offset) mod 10 at each strength: the
    share of images the classifier reads as the init image's digit and as the prompt's (over seeds)."""
    init, prompts, init_labels, prompt_labels = init_digits(offset)
    rows = []
    for s in tqdm(strengths, desc="strengths"):
        images = digits(pipe, prompts, seeds, num_inference_steps, guidance_scale, init_images=init, strength=s)
        rows.append({"strength": s, "as_init_digit": seed_accuracy(images, init_labels),
                     "as_prompt_digit": seed_accuracy(images, prompt_labels), "images": images})
    return rows
