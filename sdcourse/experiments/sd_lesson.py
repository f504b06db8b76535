"""Lesson 08's pipeline: real SD weights when this machine has them, else the course's own ``sd-mnist``.

``lesson_pipeline()`` picks the model (``$SDCOURSE_SD_MODEL``, else the first of ``sd.HUB_MODELS``
in the Hugging Face cache, else ``"sd-mnist"``: ``checkpoints/sd-mnist``, Stable Diffusion's
architecture trained by the course on captioned digits, lesson 09), loads it with
``sd.load_pipeline`` and returns it together with what the lesson needs to know about it: which
model it is, whether its weights are real (False only for the random builds such as ``"tiny"``),
the label every figure carries, and the prompts suited to it (digit prompts for sd-mnist, the
lighthouse for a real SD). ``notebooks/08`` and ``solutions/08`` use it; their measured sweeps
always run on sd-mnist (``sd_mnist_pipeline``, ``sd_digits``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image, ImageDraw

from .. import sd
from . import sd_digits

MODEL_VARIABLE = "SDCOURSE_SD_MODEL"  # the environment variable that names lesson 08's model
FALLBACK = "sd-mnist"  # shipped in checkpoints/ (sd.COURSE_MODELS): works offline, follows digit prompts


@dataclass(frozen=True)
class LessonPrompts:
    """What the lesson asks a model for: a prompt, a negative prompt, and an img2img start."""

    prompt: str
    negative_prompt: str
    img2img_prompt: str
    init: str  # "digit": a real test digit (sd-mnist); "drawing": a rough lighthouse drawing


SD_PROMPTS = LessonPrompts("a watercolor painting of a lighthouse on a cliff at sunset",
                           "blurry, low quality, oversaturated, text",
                           "a watercolor painting of a lighthouse on a cliff at sunset", "drawing")
INIT_DIGIT = 2  # img2img on sd-mnist starts from the first test 2 and asks for a seven
DIGIT_PROMPTS = LessonPrompts(sd_digits.PROMPTS["words"](7), "thick", sd_digits.PROMPTS["words"](7), "digit")


@dataclass(frozen=True)
class LessonPipeline:
    """A loaded pipeline and what the lesson says about it."""

    pipe: object  # the diffusers.StableDiffusionPipeline
    model: str  # what it was loaded from: "sd-mnist", a hub id, a folder, or a random build
    real_weights: bool  # False for the random builds ("tiny"): the pictures are noise by design
    label: str  # under every figure: the model id, or "random weights (tiny): noise by design"
    prompts: LessonPrompts  # digit prompts for sd-mnist, the lesson's lighthouse for a real SD
    size: int  # the model's own image side in pixels: 512 for SD 1.5, 32 for sd-mnist

    def init_image(self, size: int) -> Image.Image:
        """img2img's starting picture: a real test 2 (sd-mnist, 32x32) or a lighthouse drawing of ``size``."""
        if self.prompts.init == "digit":
            return sd_digits.init_digits()[0][INIT_DIGIT]
        return lighthouse_drawing(size)


def lighthouse_drawing(size: int) -> Image.Image:
    """A rough drawing: orange sky, a dark cliff, a white lighthouse (RGB, ``size`` x ``size``)."""
    drawing = Image.new("RGB", (size, size), (250, 170, 90))
    pen = ImageDraw.Draw(drawing)
    pen.rectangle([0, size * 5 // 8, size, size], fill=(60, 70, 90))  # a cliff
    pen.rectangle([size * 5 // 8, size // 4, size * 3 // 4, size * 5 // 8], fill=(240, 240, 240))  # a lighthouse
    return drawing


def weights_label(model: str) -> str:
    """What every figure of lesson 08 says about the weights: the model id, or "random weights"."""
    return model if model not in sd.RANDOM_BUILDS else f"random weights ({model}): noise by design"


def lesson_model() -> str:
    """``$SDCOURSE_SD_MODEL`` if set, else the first cached SD model, else "sd-mnist" (saying so in one line).

    Reads only the local cache: never waits on the network.
    """
    chosen = os.environ.get(MODEL_VARIABLE)
    if chosen:
        return chosen
    for model in sd.HUB_MODELS:
        if sd.cached_snapshot(model) is not None:
            return model
    print(f"No Stable Diffusion weights cached: using the course's own {FALLBACK} (checkpoints/{FALLBACK}, "
          "SD's architecture trained on captioned digits: 32x32 digits from prompts like 'a thick seven'). "
          f"For SD's own pictures run `sdcourse prefetch` online (about 2.6 GB for {sd.DEFAULT_MODEL}).")
    return FALLBACK


def prompts_for(model: str) -> LessonPrompts:
    """Digit prompts for sd-mnist, the lighthouse for any other model."""
    return DIGIT_PROMPTS if model == FALLBACK else SD_PROMPTS


def lesson_pipeline(device=None) -> LessonPipeline:
    """Lesson 08's pipeline on ``device`` (default ``config.device()``), with its model, label and prompts."""
    model = lesson_model()
    pipe = sd.load_pipeline(model, device=device)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.unet.config.sample_size * 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    return LessonPipeline(pipe, model, real_weights=model not in sd.RANDOM_BUILDS, label=weights_label(model),
                          prompts=prompts_for(model), size=size)


def sd_mnist_pipeline(lesson: LessonPipeline):
    """The sd-mnist pipeline the measured sweeps run on: the lesson's own when it is sd-mnist."""
    if lesson.model == FALLBACK:
        return lesson.pipe
    pipe = sd.load_pipeline(FALLBACK, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe
