"""``sdcourse train reflow``: rectified flow's reflow on digits, the 2-rectified ``flow_mnist`` (lesson 12).

The teacher's (sample, noise) pairs are made once and kept beside the run, so that a resumed run
trains on the very same pairs; the run itself goes through ``runs``' card and ``train.fit``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from . import checkpoint, config, flow, validate
from .runs import export_ema, record_run, resume_path, with_commands
from .train import FitResult, TrainConfig, fit
from .unet import UNet

REFLOW_PAIRS, REFLOW_ODE_STEPS = 4000, 50  # as many pairs as training digits; Euler-50 is within noise of the best


def _teacher_pairs(path: Path, teacher, num_pairs: int, ode_steps: int, seed: int, progress: bool):
    """The teacher's (sample, noise) pairs, their labels, the recipe and the seconds it took to make
    them, made once and kept beside the run (``NAME.pairs.safetensors``) so that a resumed run
    trains on the very same pairs."""
    tensors, _ = checkpoint.load(teacher.path)
    recipe = {"teacher": str(teacher.path.name), "teacher_checksum": checkpoint.tensor_checksum(tensors),
              "num_pairs": num_pairs, "ode_steps": ode_steps, "seed": seed}
    if path.exists():
        saved, meta = checkpoint.load(path)
        if meta.get("recipe") == recipe:
            return saved["pairs"], saved["labels"], recipe, meta.get("seconds")
        print(f"{path} was made with {meta.get('recipe')}, not {recipe}: making the pairs again", file=sys.stderr)
    began = time.perf_counter()
    labels = torch.arange(num_pairs) % 10  # every digit equally often
    noise = torch.randn(num_pairs, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    pairs = flow.reflow_pairs(teacher.model, noise, labels, ode_steps, progress=progress)
    seconds = round(time.perf_counter() - began, 3)
    checkpoint.save(path, {"pairs": pairs, "labels": labels}, {"recipe": recipe, "seconds": seconds})
    return pairs, labels, recipe, seconds


def train_reflow(out: Path, train_config: TrainConfig, resume: bool = False, progress: bool = True,
                 teacher: str = "flow_mnist", num_pairs: int | None = None, ode_steps: int | None = None,
                 checkpoints: Path | None = None) -> FitResult:
    """Rectified flow's reflow on digits (Liu et al. 2022, Sec. 2.2; lesson 12): the 2-rectified flow.

    The trained flow ``teacher`` carries ``num_pairs`` (default ``REFLOW_PAIRS``) noises, every digit
    equally often, to samples with its Euler ODE (``ode_steps``, default ``REFLOW_ODE_STEPS``; no
    guidance); a copy of it, started from its weights as there,
    then learns the velocity along the straight line of each fixed (sample, noise) pair
    (``flow.reflow_loss``, t uniform) instead of between independent digits and noises. The same
    label dropout keeps guidance possible.
    """
    num_pairs = validate.integer("num_pairs", REFLOW_PAIRS if num_pairs is None else num_pairs, 10)
    ode_steps = validate.integer("ode_steps", REFLOW_ODE_STEPS if ode_steps is None else ode_steps, 1)
    source = checkpoint.load_model(teacher, checkpoints)
    if source.kind != "flow":
        raise ValueError(f"teacher must be a flow-matching checkpoint (kind 'flow'), got {teacher!r} of kind "
                         f"{source.kind!r}")
    pairs_path = out.with_name(out.name.replace(".safetensors", "") + ".pairs.safetensors")
    pairs, labels, recipe, pair_seconds = _teacher_pairs(pairs_path, source, num_pairs, ode_steps, train_config.seed,
                                                         progress)
    torch.manual_seed(train_config.seed)
    model = UNet.from_config(source.card["model_config"]).to(config.device(), memory_format=torch.channels_last)
    model.load_state_dict(source.model.state_dict())

    def loss(m, x, y, gen):
        return flow.reflow_loss(m, x, y, gen, train_config.label_dropout)

    meta = with_commands({"kind": "flow", "timestep_sampling": "uniform", "num_train_timesteps": 1000,
                          "reflow_of": recipe, "model_config": source.card["model_config"]}, out, resume)
    result = fit(model, loss, (pairs, labels), train_config, resume_path(out), meta, resume, progress)
    export_ema(resume_path(out), out)
    record_run(out, result, meta, train_config, {"pairs_seconds": pair_seconds}, resumed=resume)
    return result
