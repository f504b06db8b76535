"""sd-mnist (lesson 09): a tiny random build saved as a diffusers folder and loaded back offline."""

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sdcourse import clip, config, sd
from sdcourse.sd import mnist


def digits() -> torch.Tensor:
    return mnist.pad_digits(torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    text = clip.TinyCLIP(embed_dim=8, hidden_size=16, intermediate_size=32, num_attention_heads=2).text_model
    vae = mnist.build_vae(mnist.vae_config((16, 16, 16)))
    unet = mnist.build_unet(mnist.unet_config(16, (16, 32)))
    images = digits()
    pipe = mnist.assemble(vae, unet, text, mnist.latent_scaling_factor(vae, images))
    return mnist.save(pipe, tmp_path_factory.mktemp("sd") / "sd-mnist", card={"model": "test"})


def test_folder_is_safetensors_under_10_mib(folder):
    files = [p for p in folder.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert len(weights) == 3 and not [p for p in files if p.suffix in (".bin", ".ckpt", ".pt")]
    assert all(p.stat().st_size < 10 * 2**20 for p in files)
    assert (folder / "card.json").exists()


def test_scaling_factor_is_measured_into_the_vae_config(folder):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder / "vae")
    with torch.no_grad():
        means = vae.encode(digits()).latent_dist.mean
    assert vae.config.scaling_factor == pytest.approx(1 / means.std().item(), rel=1e-4)
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 4  # f = 4: 32x32 <-> 8x8


@pytest.fixture(scope="module")
def pipe(folder):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)


def test_pipeline_makes_32px_images(pipe):
    image = pipe("a thick seven", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (32, 32, 3)


def test_generate_equals_the_pipeline(pipe):
    ours = np.asarray(sd.generate(pipe, "手写数字七", guidance_scale=5, num_inference_steps=3, seed=1), dtype=int)
    theirs = pipe("手写数字七", guidance_scale=5, num_inference_steps=3,
                  generator=torch.Generator("cpu").manual_seed(1)).images[0]
    assert np.abs(ours - np.asarray(theirs, dtype=int)).max() <= 1


def test_img2img_and_inpaint_load_the_same_folder(folder):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline
    from PIL import Image

    init = Image.fromarray(np.full((32, 32, 3), 128, dtype=np.uint8))
    mask = Image.fromarray(np.pad(np.full((16, 16), 255, dtype=np.uint8), 8))
    img2img = StableDiffusionImg2ImgPipeline.from_pretrained(folder, local_files_only=True)
    assert img2img("a 7", image=init, strength=0.5, num_inference_steps=4).images[0].size == (32, 32)
    inpaint = StableDiffusionInpaintPipeline.from_pretrained(folder, local_files_only=True)
    out = inpaint("a 7", image=init, mask_image=mask, num_inference_steps=2, height=32, width=32)
    assert out.images[0].size == (32, 32)


def test_load_pipeline_finds_sd_mnist_in_checkpoints(folder, monkeypatch):
    monkeypatch.setattr(config, "CHECKPOINTS_DIR", folder.parent)
    pipe = sd.load_pipeline("sd-mnist", device="cpu")
    assert pipe.vae.config.latent_channels == 4 and pipe.unet.config.sample_size == 8
    monkeypatch.setattr(config, "CHECKPOINTS_DIR", folder.parent / "nowhere")
    with pytest.raises(sd.ModelNotAvailable, match="sdcourse train sd-mnist"):
        sd.load_pipeline("sd-mnist", device="cpu")


def test_info_nce_against_a_written_out_reference():
    torch.manual_seed(0)
    logits = torch.randn(5, 5)
    rows = -torch.stack([logits[i, i] - torch.logsumexp(logits[i], 0) for i in range(5)]).mean()
    cols = -torch.stack([logits[i, i] - torch.logsumexp(logits[:, i], 0) for i in range(5)]).mean()
    assert clip.info_nce(logits).item() == pytest.approx(((rows + cols) / 2).item(), rel=1e-6)
    perfect = 50 * torch.eye(5)
    assert clip.info_nce(perfect).item() < 1e-6
    with pytest.raises(ValueError, match="square"):
        clip.info_nce(torch.zeros(2, 3))


def test_zero_shot_picks_the_nearest_prompt():
    torch.manual_seed(0)
    model = clip.TinyCLIP(embed_dim=8, hidden_size=16, intermediate_size=32, num_attention_heads=2)
    images = torch.randn(4, 1, 32, 32)
    prompts = ["a 1", "a 2", "a 3"]
    with torch.no_grad():
        sims = F.normalize(model.image_encoder(images), dim=-1) @ model.encode_text(clip.tokenize(prompts)).T
    assert torch.equal(clip.zero_shot(model, images, prompts), sims.argmax(1))


def test_pad_digits_rejects_other_shapes():
    with pytest.raises(ValueError, match="images"):
        mnist.pad_digits(torch.zeros(1, 3, 32, 32))


SHIPPED = config.CHECKPOINTS_DIR / "sd-mnist"


@pytest.mark.skipif(not (SHIPPED / "model_index.json").exists(), reason="checkpoints/sd-mnist not shipped")
def test_the_tutorial_snippet_runs_on_the_shipped_checkpoint(monkeypatch):
    from diffusers import StableDiffusionPipeline

    monkeypatch.chdir(config.REPO_ROOT)
    pipe = StableDiffusionPipeline.from_pretrained("checkpoints/sd-mnist")
    image = pipe("手写数字七", num_inference_steps=5).images[0]
    assert image.size == (32, 32)
    card = json.loads((SHIPPED / "card.json").read_text())
    for key in ("commands", "data_source", "steps", "wall_seconds", "hardware", "tertiles", "scaling_factor"):
        assert key in card, key
    assert pipe.vae.config.scaling_factor == pytest.approx(card["scaling_factor"])
