"""Checkpoints: tensors in safetensors (never pickle) plus JSON metadata, written atomically;
the JSON card beside each one; and ``load_model(name)``, the one way to get a trained model back.

Used by every training run of the course (lessons 02, 05, 07; ``sdcourse train ...``). A file is
written to a temporary name in the same folder, flushed to disk, and then renamed over the old one
(``os.replace`` is atomic), so a run killed mid-write leaves the previous checkpoint intact.
The next write to the same name removes the temporary files that killed writes left behind.
Each file stores a SHA-256 of its tensors (``tensor_checksum``) in its metadata, and loading
refuses, with a message naming the file, anything that is truncated, not safetensors, not ours,
not a regular file, or whose tensors no longer match their checksum.

``load_model("ddpm_mnist")`` reads ``checkpoints/ddpm_mnist.safetensors`` and its card
``ddpm_mnist.json`` and returns the model (EMA weights, eval mode) together with everything the
card says, the noise schedule it was trained with included. The checkpoint records its ``kind``;
``MODEL_CLASSES`` names the class of each kind by its dotted path and it is imported only when a
checkpoint of that kind is loaded (as ``diffusers`` reads ``model_index.json``), so this ground
module never imports the concept modules that define the models.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from . import config

FORMAT = "sdcourse-checkpoint-v1"
_META_KEY = "sdcourse"  # safetensors metadata is str -> str; ours is one JSON string under this key
MODEL_CLASSES = {  # kind -> the class that ``load_model`` builds with ``cls.from_config(model_config)``
    "ddpm": "sdcourse.unet.UNet",  # lessons 02-04: the pixel-space DDPM
    "ldm": "sdcourse.unet.UNet",  # lesson 07: the same UNet on VAE latents
    "flow": "sdcourse.unet.UNet",  # lesson 12: the same UNet predicting a velocity (flow matching)
    "vae": "sdcourse.vae.ConvVAE",  # lesson 05: 4x7x7 latents
    "vae2d": "sdcourse.vae.MLPVAE",  # lesson 05: a 2-D latent
    "classifier": "sdcourse.evaluate.Classifier",  # the evaluation classifier
}
SCHEDULE_CLASS = "sdcourse.schedules.NoiseSchedule"  # built with ``from_config(card["schedule"])``
V_PREDICTION_WRAPPER = "sdcourse.schedules.EpsFromV"  # a "prediction": "v" DDPM is loaded behind it (eps out)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def save(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write ``tensors`` and JSON-serializable ``meta`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    try:
        text = json.dumps({"format": FORMAT, **meta, "sha256": tensor_checksum(payload)}, allow_nan=False)
    except ValueError as err:
        raise CheckpointError(f"metadata of {path} holds NaN or infinity; not written ({err})") from err
    header = {_META_KEY: text}
    return _write_atomically(path, lambda tmp: save_file(payload, tmp, metadata=header))


def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of every tensor, in name order: bitwise identity."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def remove_orphans(path: Path) -> list[Path]:
    """Delete the temporary files a killed write of ``path`` left beside it; returns them."""
    orphans = sorted(Path(path).parent.glob(f".{Path(path).name}.*.tmp"))
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


def _write_atomically(path: Path, write) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, flush it to disk, rename it over ``path``."""
    remove_orphans(path)  # left by a run killed mid-write: one writer per checkpoint name
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is meant to be shared
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old or the new file
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by ``save``: (tensors, meta). Raises ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():  # a folder, or a FIFO that would block the reader forever
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint (truncated or another format?): {err}"
        ) from err
    try:
        meta = json.loads(header[_META_KEY])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is a safetensors file but not an sdcourse checkpoint (no metadata)") from err
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {meta.get('format')!r}; this sdcourse reads {FORMAT!r}")
    if "sha256" in meta and tensor_checksum(tensors) != meta["sha256"]:
        raise CheckpointError(f"{path} is damaged: its tensors do not match the sha256 checksum stored in it; "
                              "restore it (git checkout, or train again)")
    return tensors, meta


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``model.load_state_dict(state)``, with a ValueError naming the file and every mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} does not match the model's configuration: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatches {wrong[:5]}"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


# ---- cards --------------------------------------------------------------------------------------


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """An optimizer's state as flat tensors ``optim.<param index>.<name>`` and its param groups (JSON)."""
    state = optimizer.state_dict()
    tensors = {f"optim.{i}.{name}": value for i, entry in state["state"].items() for name, value in entry.items()}
    return tensors, state["param_groups"]


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
    """The inverse of ``optimizer_tensors``: the ``optim.`` tensors and param groups back into ``optimizer``."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def card_path(path: str | Path) -> Path:
    """The JSON card beside checkpoint ``path``: ``NAME.safetensors`` -> ``NAME.json``."""
    return Path(path).with_suffix(".json")


def read_card(path: str | Path) -> dict:
    """The card of checkpoint ``path`` as a dict ({} when it has none)."""
    card = card_path(path)
    if not card.is_file():
        return {}
    try:
        return json.loads(card.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"card {card} is not valid JSON ({err}); restore it with git or delete it") from err


def write_card(path: str | Path, card: dict) -> Path:
    """Write ``card`` beside checkpoint ``path`` atomically, as standard JSON (NaN and inf refused)."""
    text = json.dumps(card, indent=2, allow_nan=False) + "\n"
    target = card_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return _write_atomically(target, lambda tmp: Path(tmp).write_text(text))


# ---- the one loader -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedModel:
    """A trained model with everything its checkpoint and card say about it."""

    model: nn.Module  # in eval mode, on the requested device (EMA weights when the file has them)
    card: dict  # the checkpoint's metadata with its JSON card over it: kind, model_config, commands, metrics
    schedule: object | None  # the NoiseSchedule it was trained with (diffusion models), else None
    path: Path  # the .safetensors file

    @property
    def kind(self) -> str:
        return self.card["kind"]


def _resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def checkpoint_file(name: str, directory: str | Path | None = None) -> Path:
    """``DIR/NAME.safetensors`` (default ``checkpoints/``); a ValueError listing what is there if missing."""
    directory = Path(directory) if directory is not None else config.CHECKPOINTS_DIR
    path = directory / f"{name}.safetensors"
    if not path.exists():
        available = sorted(p.stem for p in directory.glob("*.safetensors") if not p.stem.endswith(".resume"))
        raise ValueError(f"no checkpoint {path}; available in {directory}: {available}")
    return path


def load_model(name: str, directory: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """The course's trained model ``DIR/NAME.safetensors`` (default ``checkpoints/``) and its card.

    The checkpoint's ``kind`` picks the class (``MODEL_CLASSES``), its ``model_config`` builds it,
    and weights that do not fit are a ``CheckpointError`` naming the file. A VAE gets its measured
    ``scaling_factor``; a diffusion model's ``schedule`` is rebuilt from the card, and a DDPM trained
    to predict v (``"prediction": "v"``) comes behind ``schedules.EpsFromV``, so it returns eps.
    """
    device = config.device(str(device))
    path = checkpoint_file(name, directory)
    tensors, meta = load(path)
    card = {**meta, **read_card(path)}
    if "model_config" in meta and card.get("model_config") != meta["model_config"]:
        raise CheckpointError(f"the card {card_path(path)} says model_config {card.get('model_config')} but the "
                              f"weights in {path} were saved with {meta['model_config']}; restore the card")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise CheckpointError(f"{path} holds weights that are not finite (NaN or inf) in {bad[:3]}: the run that "
                              "wrote it diverged; train again with a smaller --lr")
    kind = card.get("kind")
    if kind not in MODEL_CLASSES:
        raise CheckpointError(f"{path} holds a model of kind {kind!r}; this sdcourse loads {sorted(MODEL_CLASSES)}")
    if "model_config" not in card:
        raise CheckpointError(f"{path} carries no model_config (neither inside nor in its .json card)")
    model = _resolve(MODEL_CLASSES[kind]).from_config(card["model_config"])
    # an exported model ("ema."), a training run ("model.", "ema.", "optim."), or a plain state_dict
    prefix = "ema." if any(k.startswith("ema.") for k in tensors) else "model."
    weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)} or tensors
    load_state_dict_strict(model, weights, path)
    if "scaling_factor" in meta and hasattr(model, "scaling_factor"):
        model.scaling_factor = float(meta["scaling_factor"])  # measured after training (runs.train_vae)
    schedule = _resolve(SCHEDULE_CLASS).from_config(card["schedule"]) if "schedule" in card else None
    if card.get("prediction", "eps") == "v":  # issue 18's recipe: every sampler still receives eps
        model = _resolve(V_PREDICTION_WRAPPER)(model, schedule)
    return LoadedModel(model.to(device).eval(), card, schedule, path)
