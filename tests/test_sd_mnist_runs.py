"""sdcourse train sd-mnist: three stages through train.fit, resumable, exported as a loadable pipeline."""

import json

import pytest

from sdcourse import checkpoint, sd_mnist_runs
from sdcourse.train import TrainConfig


def test_three_tiny_stages_export_a_pipeline_with_a_card(tmp_path):
    from diffusers import StableDiffusionPipeline

    tiny = TrainConfig(steps=2, batch_size=4, checkpoint_every=1)
    configs = {stage: tiny for stage in sd_mnist_runs.STAGES}
    stats = sd_mnist_runs.train(tmp_path, "all", progress=False, configs=configs)
    assert {k: v["steps"] for k, v in stats.items()} == {"clip": 2, "vae": 2, "unet": 2}
    more = {"unet": TrainConfig(steps=3, batch_size=4, checkpoint_every=1)}
    stats = sd_mnist_runs.train(tmp_path, "unet", resume=True, progress=False, configs=more)
    assert stats["unet"]["steps"] == 3 and len(checkpoint.load(tmp_path / "unet.resume.safetensors")[1]["losses"]) == 3
    card = json.loads((tmp_path / "sd-mnist" / "card.json").read_text())
    assert card["steps"] == {"clip": 2, "vae": 2, "unet": 3} and card["data_source"]
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "sd-mnist")
    assert pipe.vae.config.scaling_factor == pytest.approx(card["scaling_factor"])


def test_unknown_stage_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--stage"):
        sd_mnist_runs.train(tmp_path, "text")
