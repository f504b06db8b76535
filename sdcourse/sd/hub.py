"""Stable Diffusion weights: model ids, the Hugging Face cache, offline, prefetch (lessons 00 and 08).

``HUB_MODELS`` is the course's one list of known models; ``resolve_model(model)`` finds a model's
local folder (a folder given directly, the cached snapshot, or a fresh download) and raises
``ModelNotAvailable`` with one message naming the fix when the weights are not here and the hub is
offline. Offline is what the user asks for (``HF_HUB_OFFLINE=1`` or ``SDCOURSE_OFFLINE=1``, read
by ``config.offline``) or an unreachable hub; nothing here writes the environment.

``sdcourse prefetch`` fills the caches before a workshop. Online, ``download_model`` fetches only
what ``StableDiffusionPipeline.from_pretrained`` reads (``model_index.json``, each component's
configs and tokenizer files, and one safetensors file per component, fp16 when the repository has
it: about 2.6 GB for SD 1.5 instead of its 40 GB of checkpoints) and ``prefetch_mnist`` fetches
the full MNIST through torchvision. Offline, ``import_folder(DIR)`` fills the caches from a folder
an instructor copied (USB stick, shared drive). It understands three layouts:

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
import json
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from .. import config, data
from .builds import RANDOM_BUILDS

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
HUB_MODELS = {  # the ids the course knows; any other SD 1.x/2.x diffusers repository works too
    DEFAULT_MODEL: "SD 1.5, 512x512, the course's reference model",
    "CompVis/stable-diffusion-v1-4": "SD 1.4, 512x512",
    "stabilityai/stable-diffusion-2-1": "SD 2.1, 768x768, v-prediction, OpenCLIP ViT-H text encoder",
    "stabilityai/sd-turbo": "SD 2.1 distilled (ADD), 512x512 in 1 to 4 steps: the CPU-friendly choice",
}
COURSE_MODELS = {  # trained by the course, shipped in checkpoints/ (lesson 09): name -> folder name
    "sd-mnist": "sd-mnist",
}
WEIGHT_VARIANT = "fp16"  # half the bytes; load_pipeline casts to float32 on a CPU


class ModelNotAvailable(RuntimeError):
    """The weights are neither cached nor downloadable; the message names them and the fix."""


# ---- the cache and the network -------------------------------------------------------------------


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline(timeout: float = 1.0) -> bool:
    """True when offline was asked for (``config.offline``) or the hub does not answer within ``timeout`` s.

    An HTTP request, not only a connection: a proxy or firewall that accepts connections and never
    answers (or presents a bad certificate) counts as offline instead of hanging the download.
    """
    if config.offline():
        return True
    answered = []

    def probe():  # in a thread: DNS lookups ignore socket timeouts, and join(timeout) bounds the wait
        try:
            urllib.request.urlopen(urllib.request.Request(hub_endpoint(), method="HEAD"), timeout=timeout).close()
            answered.append(True)
        except urllib.error.HTTPError:  # any HTTP status is an answer
            answered.append(True)
        except (OSError, ValueError):  # refused, timed out, DNS, TLS (URLError is an OSError)
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return not answered


def missing_message(model: str, revision: str | None = None) -> str:
    """The one message for weights that are not here: what is missing, where we looked, the fix."""
    rev = f" --revision {revision}" if revision else ""
    return (
        f"Stable Diffusion weights for {model!r} are not in the Hugging Face cache ({hf_cache_dir()}) "
        f"and the hub cannot be reached (offline). Run `sdcourse prefetch --model {model}{rev}` while "
        "online, or `sdcourse prefetch --from DIR` with a folder your instructor copied; meanwhile "
        "load_pipeline('tiny') runs with random weights."
    )


def cached_snapshot(model: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of hub id ``model`` holding a model_index.json, or None."""
    from huggingface_hub import snapshot_download  # lazy: huggingface_hub is slow to import

    try:
        path = Path(snapshot_download(model, revision=revision, cache_dir=hf_cache_dir(), local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError), or an invalid id
        return None
    return path if (path / "model_index.json").exists() else None


def resolve_model(model: str, revision: str | None = None) -> Path:
    """A local folder for ``model``: a course model, the folder itself, the cached snapshot, or a download."""
    if model in COURSE_MODELS:
        folder = config.CHECKPOINTS_DIR / COURSE_MODELS[model]
        if not (folder / "model_index.json").exists():
            raise ModelNotAvailable(f"{folder} is missing: restore it with git, or train it with "
                                    f"`sdcourse train {model} --out DIR` and copy DIR/{model} there")
        return folder
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "model_index.json").exists():
            raise ModelNotAvailable(f"{folder} has no model_index.json: it is not a diffusers pipeline folder")
        return folder
    if model.count("/") != 1 or model.startswith(("/", ".", "~")):
        raise ValueError(
            f"model must be one of {RANDOM_BUILDS + tuple(COURSE_MODELS)}, a hub id such as {DEFAULT_MODEL!r}, "
            f"or an existing folder; got {model!r}"
        )
    snapshot = cached_snapshot(model, revision)
    if snapshot is not None:
        return snapshot
    if hub_offline():
        raise ModelNotAvailable(missing_message(model, revision))
    return download_model(model, revision)


# ---- prefetch: downloads -------------------------------------------------------------------------


def pipeline_files(repo_files: list[str], variant: str = WEIGHT_VARIANT) -> list[str]:
    """The files of a diffusers repository that ``from_pretrained`` needs, weights as safetensors.

    Keeps ``model_index.json``; in each component folder its ``*.json``/``*.txt`` files and one
    weights file: ``*.{variant}.safetensors`` when present, else the plain ``name.safetensors``.
    Skips root checkpoints (``*.ckpt``), pickles (``*.bin``), EMA/non-EMA copies and ONNX/Flax files.
    """
    keep = [f for f in repo_files if f == "model_index.json"]
    folders = sorted({PurePosixPath(f).parts[0] for f in repo_files if len(PurePosixPath(f).parts) == 2})
    for folder in folders:
        files = [f for f in repo_files if PurePosixPath(f).parent == PurePosixPath(folder)]
        keep += [f for f in files if f.endswith((".json", ".txt"))]
        names = {f: PurePosixPath(f).name for f in files}
        weights = [f for f, n in names.items() if n.endswith(f".{variant}.safetensors")]
        weights = weights or [f for f, n in names.items() if n.endswith(".safetensors") and n.count(".") == 1]
        keep += weights
    return sorted(set(keep))


def download_model(model: str = DEFAULT_MODEL, revision: str | None = None) -> Path:
    """Download ``pipeline_files`` of hub id ``model`` into the HF cache; returns the snapshot folder."""
    from huggingface_hub import HfApi, snapshot_download  # lazy: huggingface_hub is slow to import

    files = pipeline_files(HfApi().list_repo_files(model, revision=revision))
    if "model_index.json" not in files:
        raise ValueError(f"{model!r} has no model_index.json: it is not a diffusers pipeline repository")
    return Path(snapshot_download(model, revision=revision, allow_patterns=files, cache_dir=hf_cache_dir()))


def prefetch_mnist() -> str:
    """Download the full MNIST with torchvision into the course cache; returns where it lives."""
    data._download_torchvision(data.mnist_dir().parent.parent)
    return str(data.mnist_dir())


# ---- prefetch: from a copied folder --------------------------------------------------------------


def _stand_in_commit(folder: Path) -> str:
    # SHA-1 of the sorted (relative path, size) pairs: 40 hex digits, the same for the same files.
    digest = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def check_pipeline_folder(folder: Path) -> None:
    """A ValueError unless ``folder/model_index.json`` names a pipeline and its component folders exist."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ValueError(f"{folder} has no model_index.json: not a diffusers pipeline folder")
    try:
        spec = json.loads(index.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{index} is not valid JSON ({err}): copy the pipeline folder again") from None
    required = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    missing = [c for c in required if not isinstance(spec, dict) or c not in spec or not (folder / c).is_dir()]
    if missing:
        raise ValueError(f"{index} does not describe a complete Stable Diffusion pipeline (missing: {missing}): "
                         "copy the whole pipeline folder again")
    refuse_pickles(folder)


def refuse_pickles(folder: Path) -> None:
    """A ValueError when ``folder`` has model weights only as pickled ``.bin`` files (safetensors preferred)."""
    weights = [p for p in Path(folder).rglob("*") if p.suffix in (".safetensors", ".bin")]
    if weights and not any(p.suffix == ".safetensors" for p in weights):
        raise ValueError(f"{folder} has only pickled .bin weights; the course loads safetensors only (a .bin can run "
                         "code when loaded): download the safetensors variant (`sdcourse prefetch` online)")


def add_pipeline_folder(folder: Path, model: str, revision: str = "main", cache: Path | None = None) -> Path:
    """Copy a pipeline folder into the HF cache as ``model`` at ``revision``; returns the snapshot."""
    folder = Path(folder)
    check_pipeline_folder(folder)
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
    models = _copy_cache(src, cache) + (_copy_cache(src / "hub", cache) if (src / "hub").is_dir() else [])
    if (src / "model_index.json").exists():
        if model is None:
            raise ValueError(
                f"{src} is one pipeline folder: name its hub id with --model ID "
                f"(e.g. --model {DEFAULT_MODEL}) so that load_pipeline(ID) finds it"
            )
        add_pipeline_folder(src, model, cache=cache)
        models.append(model)
    for index in sorted(src.glob("*/*/model_index.json")):
        org = index.parent.parent.name
        if org not in {"hub", "snapshots"} and not org.startswith("models--"):
            model_id = f"{org}/{index.parent.name}"
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
