"""Measuring sd-mnist's digits (lesson 08's sweeps, bench/sd_mnist_metrics.py): the batched runs equal
single pipeline calls, and each measurement against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdcourse import evaluate, sd
from sdcourse.data import load_mnist
from sdcourse.experiments import sd_digits

STEPS = 3


@pytest.fixture(scope="module")
def pipe():
    pipe = sd.load_pipeline("sd-mnist", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _single(pipeline, prompt, seed, **kwargs):
    out = pipeline(prompt, num_inference_steps=STEPS, guidance_scale=5, output_type="pt",
                   generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images
    return sd.mnist.to_grey(out * 2 - 1)[0]


def test_digits_are_seed_major_and_equal_single_calls(pipe):
    prompts = ["a thick seven", "手写数字三"]
    images = sd_digits.digits(pipe, prompts, [3, 8], STEPS)
    assert images.shape == (2, 2, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
    for s, seed in enumerate([3, 8]):
        for p, prompt in enumerate(prompts):
            assert (images[s, p] - _single(pipe, prompt, seed)).abs().max() < 2 / 255 * 2


def test_digits_img2img_and_scheduler_equal_their_pipelines(pipe):
    from diffusers import StableDiffusionImg2ImgPipeline

    init, prompts, init_labels, prompt_labels = sd_digits.init_digits()
    assert [im.size for im in init] == [(32, 32)] * 10 and init_labels.tolist() == list(range(10))
    assert prompt_labels.tolist() == [(d + 5) % 10 for d in range(10)] and prompts[2] == "a handwritten seven"
    images = sd_digits.digits(pipe, prompts[:2], [1], STEPS, init_images=init[:2], strength=0.6)
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components, requires_safety_checker=False)
    img2img.set_progress_bar_config(disable=True)
    assert (images[0, 1] - _single(img2img, prompts[1], 1, image=init[1], strength=0.6)).abs().max() < 4 / 255
    ddim = sd_digits.digits(pipe, prompts[:1], [1], STEPS, scheduler="ddim")
    assert (ddim - images[:, :1]).abs().max() > 0.1  # a different scheduler, and not img2img: other pictures
    with pytest.raises(ValueError, match="one image per prompt"):
        sd_digits.digits(pipe, prompts[:2], [1], STEPS, init_images=init[:1])


def test_pixel_diversity_by_hand():
    images = torch.full((3, 2, 1, 28, 28), -1.0)
    images[1, 0] = 1.0  # prompt 0: seeds (-1, 1, -1): pairs at distance 1, 0, 1 in [0, 1] units
    mean, sd_ = sd_digits.pixel_diversity(images)
    assert mean == pytest.approx((2 / 3 + 0) / 2) and sd_ == pytest.approx(np.std([2 / 3, 0], ddof=1))
    with pytest.raises(ValueError, match="2 seeds"):
        sd_digits.pixel_diversity(images[:1])


def test_seed_accuracy_is_per_seed_accuracy_over_seeds():
    test = load_mnist("test", verbose=False)
    first = torch.stack([test.images[(test.labels == d).nonzero()[0, 0]] for d in range(10)])
    images = torch.stack([first, first.roll(1, 0)])  # seed 1: every digit shifted by one, read wrong
    mean, sd_ = sd_digits.seed_accuracy(images, torch.arange(10))
    per_seed = [evaluate.conditional_accuracy(x, torch.arange(10)) for x in images]
    assert mean == pytest.approx(np.mean(per_seed)) and sd_ == pytest.approx(np.std(per_seed, ddof=1))
    assert per_seed[0] > 0.8 > 0.2 > per_seed[1]


def test_cohens_d_by_hand():
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 4.0, 5.0])  # both sd 1, means 2 apart
    assert sd_digits.cohens_d(a, b) == pytest.approx(-2.0)
    assert sd_digits.cohens_d(b, a) == pytest.approx(2.0)


def test_sweeps_return_one_row_per_point(pipe):
    seeds = [0, 1]
    guided = sd_digits.guidance_sweep(pipe, (1, 5), seeds, STEPS)
    assert [r["guidance_scale"] for r in guided] == [1, 5] and guided[0]["images"].shape == (2, 20, 1, 28, 28)
    stepped = sd_digits.steps_sweep(pipe, (2, 1), seeds)
    assert [r["steps"] for r in stepped] == [1, 2] and stepped[-1]["distance_to_most_steps"] == (0.0, 0.0)
    pushed = sd_digits.negative_prompt_sweep(pipe, (None, "thick"), seeds, STEPS)
    assert pushed[0]["d_vs_none"] == pytest.approx(0.0) and pushed[1]["negative_prompt"] == "thick"
    redrawn = sd_digits.img2img_sweep(pipe, (0.4,), seeds, STEPS)
    assert redrawn[0]["images"].shape == (2, 10, 1, 28, 28) and 0 <= redrawn[0]["as_prompt_digit"][0] <= 1
