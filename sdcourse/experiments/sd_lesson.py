"""Lesson 08's pipeline: real weights when this machine has them, else the offline "tiny" build.

``lesson_pipeline()`` picks the model (``$SDCOURSE_SD_MODEL``, else the first of ``sd.HUB_MODELS``
in the Hugging Face cache, else ``"tiny"`` with random weights), loads it with
``sd.load_pipeline`` and returns it together with what the lesson needs to know about it: which
model it is, whether its weights are real, and the label every figure carries, so that a picture
made from random weights always says so. ``notebooks/08`` and ``solutions/08`` use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import sd

MODEL_VARIABLE = "SDCOURSE_SD_MODEL"  # the environment variable that names lesson 08's model


@dataclass(frozen=True)
class LessonPipeline:
    """A loaded pipeline and what the lesson says about it."""

    pipe: object  # the diffusers.StableDiffusionPipeline
    model: str  # what it was loaded from: "tiny", a hub id or a folder
    real_weights: bool  # False for the offline random builds: the pictures are noise by design
    label: str  # under every figure: the model id, or "random weights (tiny): noise by design"


def weights_label(model: str) -> str:
    """What every figure of lesson 08 says about the weights: the model id, or "random weights"."""
    return model if model not in sd.RANDOM_BUILDS else f"random weights ({model}): noise by design"


def lesson_model() -> str:
    """``$SDCOURSE_SD_MODEL`` if set, else the first cached SD model, else "tiny" (saying so in one line).

    Reads only the local cache: never waits on the network.
    """
    chosen = os.environ.get(MODEL_VARIABLE)
    if chosen:
        return chosen
    for model in sd.HUB_MODELS:
        if sd.cached_snapshot(model) is not None:
            return model
    print(
        "No Stable Diffusion weights cached: using 'tiny' with random weights (the shapes and the loop "
        f"are real, the pictures are noise). For real images run `sdcourse prefetch` online "
        f"(about 2.6 GB for {sd.DEFAULT_MODEL})."
    )
    return "tiny"


def lesson_pipeline(device=None) -> LessonPipeline:
    """Lesson 08's pipeline on ``device`` (default ``config.device()``), with its model and label."""
    model = lesson_model()
    pipe = sd.load_pipeline(model, device=device)
    return LessonPipeline(pipe, model, real_weights=model not in sd.RANDOM_BUILDS, label=weights_label(model))
