"""Weights and data into the caches before a workshop: ``sdcourse prefetch`` (lessons 01 to 08).

Online, ``download_model`` fetches only what ``StableDiffusionPipeline.from_pretrained`` reads
(``model_index.json``, each component's configs and tokenizer files, and one safetensors file per
component, fp16 when the repository has it: about 2.6 GB for SD 1.5 instead of its 40 GB of
checkpoints) and ``prefetch_mnist`` fetches the full MNIST through torchvision.

Offline, ``import_folder(DIR)`` fills the caches from a folder an instructor copied (USB stick,
shared drive). It understands three layouts:

1. a copy of a Hugging Face cache: ``DIR/models--org--name/...`` (or ``DIR/hub/models--...``),
   e.g. ``cp -r ~/.cache/huggingface/hub DIR`` on a machine that ran ``sdcourse prefetch``;
2. pipeline folders named by their hub id: ``DIR/org/name/model_index.json`` (what
   ``pipe.save_pretrained("DIR/org/name")`` writes);
3. one pipeline folder: ``DIR/model_index.json``, whose hub id ``model`` must be given.
``DIR/mnist/MNIST/raw`` (torchvision's files) is copied into the course cache when present.

How a pipeline folder becomes a cache entry that ``from_pretrained(model_id)`` finds with
``HF_HUB_OFFLINE=1`` (the layout ``huggingface_hub`` reads)::

    $HF_HUB_CACHE/                                 default ~/.cache/huggingface/hub
      models--org--name/                           "/" in the id becomes "--"
        refs/main                                  one line: the commit that "main" points to
        snapshots/<commit>/model_index.json        the repository's files at that commit
        snapshots/<commit>/unet/diffusion_pytorch_model.fp16.safetensors, ...

Downloads store files once under ``blobs/`` and link them from ``snapshots/``; plain files in
``snapshots/`` read the same (that is how the cache looks on Windows without symlinks). A copied
folder has no commit, so the folder name is a stand-in: the SHA-1 of its file names and sizes
(40 hex digits like a git commit, stable for the same files), and ``refs/main`` points to it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from . import config, data
from .sd import DEFAULT_MODEL, hf_cache_dir

WEIGHT_VARIANT = "fp16"  # half the bytes; load_pipeline casts to float32 on a CPU


def pipeline_files(repo_files: list[str], variant: str = WEIGHT_VARIANT) -> list[str]:
    """The files of a diffusers repository that ``from_pretrained`` needs, weights as safetensors.

    Keeps ``model_index.json``; in each component folder its ``*.json``/``*.txt`` files and one
    weights file: ``*.{variant}.safetensors`` when present, else the plain ``name.safetensors``.
    Skips root checkpoints (``*.ckpt``), pickles (``*.bin``), EMA/non-EMA copies and ONNX/Flax files.
    """
    keep = [f for f in repo_files if f == "model_index.json"]
    folders = sorted(
        {PurePosixPath(f).parts[0] for f in repo_files if len(PurePosixPath(f).parts) == 2}
    )
    for folder in folders:
        files = [f for f in repo_files if PurePosixPath(f).parent == PurePosixPath(folder)]
        keep += [f for f in files if f.endswith((".json", ".txt"))]
        names = {f: PurePosixPath(f).name for f in files}
        weights = [f for f, n in names.items() if n.endswith(f".{variant}.safetensors")]
        weights = weights or [
            f for f, n in names.items() if n.endswith(".safetensors") and n.count(".") == 1
        ]
        keep += weights
    return sorted(set(keep))


def download_model(model: str = DEFAULT_MODEL, revision: str | None = None) -> Path:
    """Download ``pipeline_files`` of hub id ``model`` into the HF cache; returns the snapshot folder."""
    from huggingface_hub import HfApi, snapshot_download

    files = pipeline_files(HfApi().list_repo_files(model, revision=revision))
    if "model_index.json" not in files:
        raise ValueError(
            f"{model!r} has no model_index.json: it is not a diffusers pipeline repository"
        )
    return Path(
        snapshot_download(model, revision=revision, allow_patterns=files, cache_dir=hf_cache_dir())
    )


def prefetch_mnist() -> str:
    """Download the full MNIST with torchvision into the course cache; returns where it lives."""
    data._download_torchvision(data.mnist_dir().parent.parent)
    return str(data.mnist_dir())


def _stand_in_commit(folder: Path) -> str:
    # SHA-1 of the sorted (relative path, size) pairs: 40 hex digits, the same for the same files.
    digest = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def add_pipeline_folder(
    folder: Path, model: str, revision: str = "main", cache: Path | None = None
) -> Path:
    """Copy a pipeline folder into the HF cache as ``model`` at ``revision``; returns the snapshot."""
    folder = Path(folder)
    if not (folder / "model_index.json").exists():
        raise ValueError(f"{folder} has no model_index.json: not a diffusers pipeline folder")
    if model.count("/") != 1:
        raise ValueError(f"model must be a hub id 'org/name', got {model!r}")
    repo = Path(cache or hf_cache_dir()) / ("models--" + model.replace("/", "--"))
    commit = _stand_in_commit(folder)
    snapshot = repo / "snapshots" / commit
    if not snapshot.exists():
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=snapshot.parent, prefix=".incoming-"))
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        os.replace(staging, snapshot)  # atomic: a half-copied snapshot is never visible
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(ref.name + ".tmp")
    tmp.write_text(commit)
    os.replace(tmp, ref)
    return snapshot


def _copy_cache(src: Path, cache: Path) -> list[str]:
    models = []
    for repo in sorted(src.glob("models--*")):
        shutil.copytree(repo, cache / repo.name, symlinks=True, dirs_exist_ok=True)
        models.append(repo.name.removeprefix("models--").replace("--", "/", 1))
    return models


def import_folder(src, model: str | None = None) -> dict:
    """Fill the HF cache (and the MNIST cache) from folder ``src`` (layouts: module docstring).

    Returns ``{"models": [hub ids now cached], "mnist": path or None, "cache": HF cache folder}``.
    """
    src = Path(src).expanduser()
    if not src.is_dir():
        raise ValueError(f"--from must be an existing folder, got {str(src)!r}")
    cache = hf_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    models = _copy_cache(src, cache) + (
        _copy_cache(src / "hub", cache) if (src / "hub").is_dir() else []
    )
    if (src / "model_index.json").exists():
        if model is None:
            raise ValueError(
                f"{src} is one pipeline folder: name its hub id with --model ID "
                f"(e.g. --model {DEFAULT_MODEL}) so that load_pipeline(ID) finds it"
            )
        add_pipeline_folder(src, model, cache=cache)
        models.append(model)
    for index in sorted(src.glob("*/*/model_index.json")):
        if index.parent.parent.name not in {
            "hub",
            "snapshots",
        } and not index.parent.parent.name.startswith("models--"):
            model_id = f"{index.parent.parent.name}/{index.parent.name}"
            add_pipeline_folder(index.parent, model_id, cache=cache)
            models.append(model_id)
    mnist = None
    for raw in (src / "mnist" / "MNIST" / "raw", src / "MNIST" / "raw"):
        if raw.is_dir():
            shutil.copytree(raw, data.mnist_dir(), dirs_exist_ok=True)
            mnist = str(data.mnist_dir())
            break
    if not models and mnist is None:
        raise ValueError(
            f"{src} holds no Stable Diffusion pipeline and no MNIST files; expected "
            "models--org--name/ (a copied HF cache), org/name/model_index.json, "
            "model_index.json (with --model ID) or mnist/MNIST/raw/"
        )
    return {"models": models, "mnist": mnist, "cache": str(cache), "home": str(config.home())}
