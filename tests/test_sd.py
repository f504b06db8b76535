"""The Stable Diffusion loop against diffusers (the oracle), the offline tokenizer against open_clip,
prefetching into the Hugging Face cache, bad inputs, and no hidden side effects (nothing written to
os.environ, nothing attached to the pipeline). Everything runs offline on the "tiny" build."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from sdcourse import cli, sd
from sdcourse.experiments import sd_lesson
from sdcourse.sd import hub, loop
from sdcourse.sd.tokenizer import MODEL_MAX_LENGTH, VOCAB_SIZE, clip_tokenizer, load_tokenizer, truncated_part

SIZE, STEPS = 32, 2  # 32x32 images are 4x4 latents: the whole loop runs in well under a second


@pytest.fixture(scope="module")
def tiny():
    pipe = sd.load_pipeline("tiny", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _diffusers_run(pipe, cls_name="StableDiffusionPipeline", scheduler=None, karras=False, **kwargs):
    """Run diffusers' own pipeline; returns (final latents, PIL image)."""
    import diffusers

    components = dict(pipe.components)
    if scheduler is not None:
        components["scheduler"] = sd.make_scheduler(pipe, scheduler, karras)
    ref = getattr(diffusers, cls_name)(**components, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    captured = {}

    def keep(_pipe, _i, _t, tensors):
        captured["latents"] = tensors["latents"].clone()
        return {}

    image = ref(**kwargs, callback_on_step_end=keep).images[0]
    return captured["latents"], image


def _ours(pipe, **kwargs):
    captured = {}

    def keep(i, t, latents, pred_x0):
        captured["latents"] = latents.clone()

    image = sd.generate(pipe, **kwargs, on_step=keep)
    return captured["latents"], image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ---- the loop equals diffusers -------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", [None, "ddim", "euler", "heun", "dpmsolver"])
@pytest.mark.parametrize("negative_prompt", [None, "blurry, low quality"])
def test_txt2img_equals_stable_diffusion_pipeline(tiny, scheduler, negative_prompt):
    common = dict(
        prompt="a watercolor fox in the snow",
        negative_prompt=negative_prompt,
        guidance_scale=7.5,
        num_inference_steps=STEPS,
        height=SIZE,
        width=SIZE,
    )
    ours_latents, ours = _ours(tiny, **common, seed=1234, scheduler=scheduler)
    ref_latents, ref = _diffusers_run(
        tiny, scheduler=scheduler, **common, generator=torch.Generator("cpu").manual_seed(1234)
    )
    assert (ours_latents - ref_latents).abs().max().item() <= 1e-5
    assert _png(ours) == _png(ref)


@pytest.mark.parametrize("scheduler", loop.KARRAS)
def test_karras_sigmas_equal_the_pipeline_with_the_same_scheduler(tiny, scheduler):
    common = dict(prompt="a lighthouse", guidance_scale=5.0, num_inference_steps=3, height=SIZE, width=SIZE)
    ours_latents, ours = _ours(tiny, **common, seed=5, scheduler=scheduler, karras=True)
    ref_latents, ref = _diffusers_run(tiny, scheduler=scheduler, karras=True, **common,
                                      generator=torch.Generator("cpu").manual_seed(5))
    assert (ours_latents - ref_latents).abs().max().item() <= 1e-5
    plain_latents, _ = _ours(tiny, **common, seed=5, scheduler=scheduler)
    assert (plain_latents - ours_latents).abs().max().item() > 1e-4, "karras=True must change the sigmas"


def test_karras_needs_an_ode_solver_by_name(tiny):
    with pytest.raises(ValueError, match=r"karras=True needs one of the ODE solvers.*'ddim'"):
        sd.make_scheduler(tiny, "ddim", karras=True)
    with pytest.raises(ValueError, match=r"karras=True needs scheduler given by name"):
        sd.generate(tiny, "x", num_inference_steps=2, height=SIZE, width=SIZE, seed=0, karras=True)


def test_no_guidance_and_other_seed_differ_but_still_match(tiny):
    ours_latents, ours = _ours(
        tiny,
        prompt="a red bicycle",
        guidance_scale=1.0,
        num_inference_steps=STEPS,
        height=SIZE,
        width=16,
        seed=7,
        scheduler="ddim",
    )
    ref_latents, ref = _diffusers_run(
        tiny,
        scheduler="ddim",
        prompt="a red bicycle",
        guidance_scale=1.0,
        num_inference_steps=STEPS,
        height=SIZE,
        width=16,
        generator=torch.Generator("cpu").manual_seed(7),
    )
    assert ours.size == (16, SIZE)
    assert (ours_latents - ref_latents).abs().max().item() <= 1e-5
    other = sd.generate(
        tiny,
        "a red bicycle",
        guidance_scale=1.0,
        num_inference_steps=STEPS,
        height=SIZE,
        width=16,
        seed=8,
        scheduler="ddim",
    )
    assert not np.array_equal(np.asarray(other), np.asarray(ours)), "the seed must change the image"


@pytest.mark.parametrize("scheduler", ["ddim", "euler", "heun", "dpmsolver"])
def test_img2img_equals_img2img_pipeline(tiny, scheduler):
    init = Image.fromarray(
        (np.random.default_rng(0).random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    )
    common = dict(prompt="an oil painting of a harbour", num_inference_steps=5, strength=0.6)
    ours_latents, ours = _ours(tiny, **common, init_image=init, seed=3, scheduler=scheduler)
    ref_latents, ref = _diffusers_run(
        tiny,
        "StableDiffusionImg2ImgPipeline",
        scheduler=scheduler,
        **common,
        image=init,
        generator=torch.Generator("cpu").manual_seed(3),
    )
    assert (ours_latents - ref_latents).abs().max().item() <= 1e-5
    assert _png(ours) == _png(ref)


def test_img2img_starts_at_strength_of_the_schedule(tiny):
    init = Image.new("RGB", (SIZE, SIZE), (200, 30, 30))
    seen = []
    sd.generate(
        tiny,
        "x",
        init_image=init,
        strength=0.6,
        num_inference_steps=10,
        seed=0,
        scheduler="ddim",
        on_step=lambda i, t, latents, x0: seen.append(int(t)),
    )
    full = sd.make_scheduler(tiny, "ddim")
    full.set_timesteps(10)
    assert seen == full.timesteps[4:].tolist()  # int(10 x 0.6) = 6 steps: the last 6 of 10


def test_loop_uses_the_course_guidance(tiny, monkeypatch):
    calls = []
    real = loop.classifier_free_guidance

    def spy(eps_uncond, eps_cond, guidance_scale):
        calls.append(guidance_scale)
        return real(eps_uncond, eps_cond, guidance_scale)

    monkeypatch.setattr(loop, "classifier_free_guidance", spy)  # where generate looks it up
    sd.generate(
        tiny,
        "x",
        guidance_scale=3.0,
        num_inference_steps=STEPS,
        height=SIZE,
        width=SIZE,
        seed=0,
        scheduler="ddim",
    )
    assert calls == [3.0] * STEPS


def test_on_step_sees_latents_and_pred_x0(tiny):
    seen = []
    sd.generate(
        tiny,
        "x",
        num_inference_steps=3,
        height=SIZE,
        width=24,
        seed=0,
        scheduler="dpmsolver",
        on_step=lambda i, t, latents, x0: seen.append((i, latents.shape, x0.shape)),
    )
    assert seen == [(i, (1, 4, 4, 3), (1, 4, 4, 3)) for i in range(3)]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_predicted_x0_inverts_the_forward_process(tiny, prediction_type):
    scheduler = sd.make_scheduler(tiny, "ddim")
    scheduler.register_to_config(prediction_type=prediction_type)
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 8, 8, generator=gen).double().unbind(0)
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2  # scaled-linear schedule in float64
    for t in (1, 500, 999):
        ab = float(np.cumprod(1 - betas)[t])
        x_t = ab**0.5 * x0 + (1 - ab) ** 0.5 * eps  # Ho et al. 2020, Eq. 4
        out = eps if prediction_type == "epsilon" else ab**0.5 * eps - (1 - ab) ** 0.5 * x0  # v
        got = sd.predicted_x0(scheduler, x_t.float(), out.float(), t).double()
        assert torch.allclose(got, x0, atol=1e-4), (prediction_type, t)


# ---- bad inputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, names",
    [
        (dict(height=30), "height"),
        (dict(width=33), "width"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(init_image="rgb", strength=1.5), "strength"),
        (dict(init_image="rgb", strength=-0.1), "strength"),
        (dict(init_image="rgb", strength=0.1, num_inference_steps=2), "strength"),
        (dict(init_image=Image.new("L", (SIZE, SIZE))), "RGB"),
        (dict(init_image=Image.new("RGB", (36, SIZE))), "multiple of 8"),
        (dict(init_image="rgb", height=64), "init_image is 32x32"),
        (dict(guidance_scale=-1.0), "guidance_scale"),
    ],
)
def test_bad_inputs_name_the_problem(tiny, kwargs, names):
    if kwargs.get("init_image") == "rgb":
        kwargs["init_image"] = Image.new("RGB", (SIZE, SIZE))
    with pytest.raises(ValueError, match=names):
        sd.generate(tiny, "x", **{"num_inference_steps": STEPS, **kwargs})


def test_long_prompt_warns_with_the_dropped_part(tiny):
    prompt = " ".join(["cat"] * 75) + " and a purple elephant"
    with pytest.warns(UserWarning, match="dropped: 'and a purple elephant'"):
        sd.generate(
            tiny, prompt, num_inference_steps=1, height=SIZE, width=SIZE, seed=0, scheduler="ddim"
        )
    assert truncated_part(tiny.tokenizer, " ".join(["cat"] * 75)) == ""


# ---- the offline tokenizer -----------------------------------------------------------------------

PROMPTS = [
    "a photo of an astronaut riding a horse on mars",
    "一只戴着红色帽子的猫",
    "A Portrait of   Ada Lovelace,  oil on canvas!! (1840) -- trending on artstation",
    "don't you'll we've it's 3.14159 e=mc2 #hashtag @user",
    "",
    "café naïve Zürich emoji 🐱🎩",
    " ".join(["word"] * 100),
]


@pytest.mark.parametrize("prompt", PROMPTS, ids=range(len(PROMPTS)))
def test_tokenizer_ids_equal_open_clip(prompt):
    import open_clip

    tokenizer = clip_tokenizer()
    ours = tokenizer(
        prompt, padding="max_length", max_length=MODEL_MAX_LENGTH, truncation=True
    ).input_ids
    theirs = open_clip.tokenize([prompt])[0].tolist()
    end = theirs.index(49407) + 1  # open_clip pads with 0 after <|endoftext|>, SD 1.5 with 49407
    assert len(ours) == MODEL_MAX_LENGTH
    assert ours[:end] == theirs[:end]
    assert set(ours[end:]) <= {tokenizer.pad_token_id} and set(theirs[end:]) <= {0}


def test_tokenizer_sizes():
    tokenizer = clip_tokenizer()
    assert len(tokenizer) == VOCAB_SIZE == 49_408 and tokenizer.model_max_length == 77
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        49406,
        49407,
        49407,
    )


# ---- the offline builds --------------------------------------------------------------------------


def test_sd15_random_has_sd15_shapes():
    """Parameter counts of SD 1.5's UNet, VAE and CLIP text encoder (from the released checkpoints)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    build = sd.BUILDS["sd15-random"]
    with torch.device("meta"):  # shapes only, no memory
        parts = (
            UNet2DConditionModel(**sd.unet_config(build)),
            AutoencoderKL(**sd.vae_config(build)),
            CLIPTextModel(sd.text_encoder_config(build)),
        )
    counts = [sum(p.numel() for p in part.parameters()) for part in parts]
    assert counts == [859_520_964, 83_653_863, 123_060_480]


def test_random_builds_are_reproducible(tiny):
    again = sd.build_random_pipeline("tiny")
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(tiny, name).state_dict(), getattr(again, name).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name
    other = sd.build_random_pipeline("tiny", seed=1)
    assert not torch.equal(other.unet.conv_in.weight, tiny.unet.conv_in.weight)
    assert "tiny" in sd.RANDOM_BUILDS and sd_lesson.weights_label("tiny").startswith("random weights")


def test_memory_options_follow_free_memory():
    assert sd.recommend_memory_options(None) == sd.MemoryOptions()
    assert sd.recommend_memory_options(20.0) == sd.MemoryOptions()
    assert sd.recommend_memory_options(6.0) == sd.MemoryOptions(
        attention_slicing=True, vae_tiling=True
    )
    assert sd.recommend_memory_options(2.0).cpu_offload


# ---- missing weights, prefetch ------------------------------------------------------------------


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf"


def test_missing_model_gives_one_clear_message_fast(hf_home):
    start = time.perf_counter()
    with pytest.raises(sd.ModelNotAvailable) as err:
        sd.load_pipeline("some-org/not-downloaded-sd", device="cpu")
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert (
        "some-org/not-downloaded-sd" in message
        and "sdcourse prefetch --model some-org/not-downloaded-sd" in message
    )
    assert str(hf_home / "hub") in message


def test_model_that_is_neither_id_nor_folder(hf_home):
    with pytest.raises(ValueError, match="model must be one of"):
        sd.load_pipeline("no-such-folder", device="cpu")


# ---- no hidden side effects ------------------------------------------------------------------------


def test_load_pipeline_leaves_the_environment_and_the_pipeline_alone(hf_home, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("SDCOURSE_OFFLINE", "1")  # offline as the user asks for it: no probe at all
    before = dict(os.environ)
    start = time.perf_counter()
    with pytest.raises(sd.ModelNotAvailable, match="sdcourse prefetch"):
        sd.load_pipeline("some-org/not-downloaded-sd", device="cpu")
    assert time.perf_counter() - start < 1.0
    assert dict(os.environ) == before

    monkeypatch.delenv("SDCOURSE_OFFLINE")  # offline found by probing an unreachable hub
    monkeypatch.setattr(hub, "hub_offline", lambda timeout=1.0: True)  # resolve_model looks it up in hub
    before = dict(os.environ)
    with pytest.raises(sd.ModelNotAvailable):
        sd.load_pipeline("some-org/not-downloaded-sd", device="cpu")
    assert dict(os.environ) == before, "load_pipeline must not write os.environ (HF_HUB_OFFLINE)"

    pipe = sd.load_pipeline("tiny", device="cpu")
    assert not hasattr(pipe, "sdcourse_model")
    assert set(vars(pipe)) == set(vars(sd.build_random_pipeline("tiny"))), "nothing attached to the pipeline"


def test_hub_offline_reads_what_the_user_asked_for(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")  # config.env_flag: 1, true, yes, on
    assert sd.hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("SDCOURSE_OFFLINE", "1")
    assert sd.hub_offline()


def test_lesson_model_falls_back_to_sd_mnist_and_the_variable_wins(tiny, tmp_path, hf_home, monkeypatch, capsys):
    monkeypatch.delenv(sd_lesson.MODEL_VARIABLE, raising=False)
    assert sd_lesson.lesson_model() == "sd-mnist"  # no weights cached: the course's own SD
    said = capsys.readouterr().out
    assert "No Stable Diffusion weights cached" in said and "sd-mnist" in said and said.count("\n") == 1

    folder = tmp_path / "pipe"
    tiny.save_pretrained(folder)
    hub.add_pipeline_folder(folder, sd.DEFAULT_MODEL)  # as if `sdcourse prefetch` had run
    assert sd_lesson.lesson_model() == sd.DEFAULT_MODEL and capsys.readouterr().out == ""
    monkeypatch.setenv(sd_lesson.MODEL_VARIABLE, "tiny")  # the variable wins over the cache
    assert sd_lesson.lesson_model() == "tiny"


def test_lesson_pipeline_on_sd_mnist_says_so_and_asks_for_digits(hf_home, monkeypatch, capsys):
    monkeypatch.delenv(sd_lesson.MODEL_VARIABLE, raising=False)
    lesson = sd_lesson.lesson_pipeline(device="cpu")
    assert "No Stable Diffusion weights cached" in capsys.readouterr().out
    assert (lesson.model, lesson.real_weights, lesson.label, lesson.size) == ("sd-mnist", True, "sd-mnist", 32)
    assert lesson.prompts is sd_lesson.DIGIT_PROMPTS and "seven" in lesson.prompts.prompt
    assert lesson.init_image(64).size == (32, 32)  # a real test digit, padded as sd-mnist was trained
    assert sd_lesson.sd_mnist_pipeline(lesson) is lesson.pipe
    assert not hasattr(lesson.pipe, "sdcourse_model")
    with pytest.raises(AttributeError):  # frozen: what the lesson knows cannot drift from the pipeline
        lesson.model = "other"


def test_lesson_pipeline_takes_a_cached_model_or_the_variable(tiny, tmp_path, hf_home, monkeypatch, capsys):
    monkeypatch.delenv(sd_lesson.MODEL_VARIABLE, raising=False)
    folder = tmp_path / "pipe"
    tiny.save_pretrained(folder)
    hub.add_pipeline_folder(folder, sd.DEFAULT_MODEL)  # as if `sdcourse prefetch` had run
    lesson = sd_lesson.lesson_pipeline(device="cpu")
    assert capsys.readouterr().out == ""
    assert (lesson.model, lesson.real_weights, lesson.label) == (sd.DEFAULT_MODEL, True, sd.DEFAULT_MODEL)
    assert lesson.prompts is sd_lesson.SD_PROMPTS and lesson.init_image(48).size == (48, 48)
    assert sd_lesson.sd_mnist_pipeline(lesson) is not lesson.pipe  # the measured sweeps still run on sd-mnist

    monkeypatch.setenv(sd_lesson.MODEL_VARIABLE, str(folder))
    lesson = sd_lesson.lesson_pipeline(device="cpu")
    assert (lesson.model, lesson.real_weights, lesson.label) == (str(folder), True, str(folder))
    monkeypatch.setenv(sd_lesson.MODEL_VARIABLE, "tiny")
    lesson = sd_lesson.lesson_pipeline(device="cpu")
    assert (lesson.real_weights, lesson.label) == (False, "random weights (tiny): noise by design")


def test_latents_to_images_decodes_like_generate(tiny):
    final = []
    image = sd.generate(tiny, "a kite", num_inference_steps=STEPS, height=SIZE, width=24, seed=2,
                        scheduler="ddim", on_step=lambda i, t, latents, x0: final.append(latents))
    decoded = sd.latents_to_images(tiny, torch.cat([final[-1], final[-1]]))
    assert len(decoded) == 2 and decoded[0].size == (24, SIZE)
    assert _png(decoded[0]) == _png(image)


def test_importing_sd_does_not_import_diffusers_or_transformers():
    code = ("import sys, sdcourse.sd; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'diffusers', 'transformers'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", "keep sdcourse.sd light: import diffusers/transformers lazily"


def test_prefetch_from_pipeline_folders_then_load_offline(
    tiny, tmp_path, hf_home, tmp_home, capsys
):
    src = tmp_path / "usb"
    tiny.save_pretrained(src / "course-org" / "tiny-sd")  # layout 2: DIR/org/name
    tiny.save_pretrained(src / "course-org" / "tiny-sd-fp16", variant="fp16")
    assert cli.main(["prefetch", "--from", str(src), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["models"]) == ["course-org/tiny-sd", "course-org/tiny-sd-fp16"]

    # the HF cache layout, read back by huggingface_hub itself
    repo = hf_home / "hub" / "models--course-org--tiny-sd"
    commit = (repo / "refs" / "main").read_text()
    assert (repo / "snapshots" / commit / "unet" / "diffusion_pytorch_model.safetensors").exists()
    from huggingface_hub import scan_cache_dir

    assert {r.repo_id for r in scan_cache_dir(hf_home / "hub").repos} >= {"course-org/tiny-sd"}

    loaded = sd.load_pipeline("course-org/tiny-sd", device="cpu")
    common = dict(num_inference_steps=STEPS, height=SIZE, width=SIZE, seed=5, scheduler="ddim")
    assert _png(sd.generate(loaded, "a lighthouse", **common)) == _png(
        sd.generate(tiny, "a lighthouse", **common)
    )
    half = sd.load_pipeline("course-org/tiny-sd-fp16", device="cpu")  # fp16 files, cast to float32
    assert half.unet.dtype == torch.float32 and "course-org/tiny-sd-fp16" not in sd.RANDOM_BUILDS
    assert sd_lesson.weights_label("course-org/tiny-sd-fp16") == "course-org/tiny-sd-fp16"


def test_prefetch_from_a_copied_cache_and_a_single_folder(tiny, tmp_path, hf_home, monkeypatch):
    single = tmp_path / "one"
    tiny.save_pretrained(single)
    with pytest.raises(ValueError, match="--model"):
        hub.import_folder(single)
    assert hub.import_folder(single, model="course-org/single")["models"] == [
        "course-org/single"
    ]

    # layout 1: that cache, copied to a stick, then into a second empty cache
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf2"))
    done = hub.import_folder(hf_home)  # HF_HOME itself: finds hub/models--*
    assert done["models"] == ["course-org/single"]
    assert sd.cached_snapshot("course-org/single") is not None
    assert tuple(
        sd.load_pipeline("course-org/single", device="cpu").unet.config.block_out_channels
    ) == (32, 64)


def test_prefetch_from_an_empty_folder_says_what_it_expected(tmp_path, hf_home):
    with pytest.raises(ValueError, match="model_index.json"):
        hub.import_folder(tmp_path)


def test_pipeline_files_takes_only_fp16_safetensors():
    repo = [
        "model_index.json",
        "README.md",
        "v1-5-pruned.ckpt",
        "v1-5-pruned.safetensors",
        "unet/config.json",
        "unet/diffusion_pytorch_model.bin",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.non_ema.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.fp16.bin",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "scheduler/scheduler_config.json",
        "text_encoder/model.fp16.safetensors",
        "text_encoder/config.json",
        "text_encoder/flax_model.msgpack",
        "vae_encoder/model.onnx",
    ]
    assert hub.pipeline_files(repo) == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]


def test_cli_generate_writes_a_png(tmp_path, capsys):
    out = tmp_path / "fox.png"
    code = cli.main(
        [
            "generate",
            "a fox",
            "--model",
            "tiny",
            "--steps",
            "2",
            "--height",
            "32",
            "--width",
            "48",
            "--seed",
            "1",
            "--scheduler",
            "euler",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["size"] == [48, 32] and report["real_weights"] is False
    assert Image.open(out).size == (48, 32)
    assert (
        cli.main(["generate", "a fox", "--model", "tiny", "--height", "31", "--out", str(out)]) == 2
    )
    assert "height" in capsys.readouterr().err


def test_load_tokenizer_falls_back_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_tokenizer() is clip_tokenizer()
    # the hub is unreachable (offline): the offline build again
    assert load_tokenizer("some-org/not-here", online=True) is clip_tokenizer()
