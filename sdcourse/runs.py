"""The course's training runs, as used by ``sdcourse train`` and recorded in each checkpoint's card.

Each ``train_*`` builds the model and data and calls ``train.fit``, which keeps everything needed to
resume in ``NAME.resume.safetensors`` (weights, EMA, optimizer state; not committed). Runs go to
``$SDCOURSE_HOME/runs`` by default; ``check_output`` refuses to replace the repository's shipped
checkpoints or an existing run unless asked (``--force``, ``--resume``). At the end
the EMA weights alone are exported to ``NAME.safetensors``, the small file the lessons load, with
a JSON card beside it: the exact command, data source, steps, wall time and hardware (metrics are
added by ``sdcourse evaluate --card``).
"""

from __future__ import annotations

import platform
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from . import checkpoint, config, flow, ldm
from . import vae as vae_module
from .data import load_mnist
from .evaluate import Classifier, classifier_loss
from .experiments.ddpm_recipe import ddim_accuracy
from .schedules import NoiseSchedule
from .train import FitResult, TrainConfig, ddpm_loss, fit
from .unet import UNet, UNetConfig

DDPM_SCHEDULE = {"name": "linear", "num_steps": 1000}  # Ho et al. 2020: beta from 1e-4 to 0.02, T = 1000


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


_typed: list[str] | None = None  # the words of `sdcourse train ...`, set by the command line


@contextmanager
def command_line(words: list[str]):
    """Within this block the cards name ``words`` (what followed ``sdcourse``) as the command; the
    previous value comes back after, so a later run in the same process is not misnamed."""
    global _typed
    previous, _typed = _typed, list(words)
    try:
        yield
    finally:
        _typed = previous


def current_command() -> str:
    """The command line that is running, as the card records it."""
    if _typed is not None:
        return "sdcourse " + shlex.join(_typed)
    if Path(sys.argv[0]).name in {"sdcourse", "__main__.py"}:
        return "sdcourse " + shlex.join(sys.argv[1:])
    return shlex.join(sys.argv)


def check_output(out: Path, resume: bool, force: bool) -> Path:
    """``out`` if training may write there, else a ValueError naming ``--force`` / ``--resume``.

    The repository's ``checkpoints/`` holds the shipped models: written only with ``force``. An
    existing run is continued with ``resume`` or replaced with ``force``, never silently.
    """
    out = Path(out).expanduser()
    if out.is_dir() or out.suffix != ".safetensors" or out.name.endswith(".resume.safetensors"):
        raise ValueError(f"--out {str(out)!r} must be a file path NAME or NAME.safetensors (not a folder, "
                         "no other extension)")
    if out.resolve().parent == config.CHECKPOINTS_DIR.resolve() and not force:
        raise ValueError(f"--out {out} is in the repository's checkpoints/, which holds the shipped models; "
                         f"add --force to replace them, or omit --out (runs go to {config.runs_dir()})")
    existing = [p for p in (out, resume_path(out)) if p.exists()]
    if resume and not resume_path(out).exists():
        raise ValueError(f"--resume: there is no run to resume at {resume_path(out)}")
    if existing and not resume and not force:
        raise ValueError(f"{existing[0]} already holds a run; continue it with --resume, or replace it with --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def saved_train_config(out: Path) -> dict:
    """The ``train_config`` the run at ``out`` was started with (to resume it unchanged)."""
    return checkpoint.load(resume_path(out))[1].get("train_config", {})


def with_commands(meta: dict, out: Path, resume: bool) -> dict:
    """``meta`` with ``commands``: the earlier commands of this run (from its resume file) and this one."""
    earlier = checkpoint.load(resume_path(out))[1].get("commands", []) if resume else []
    return {**meta, "commands": earlier + [current_command()]}


def record_run(path: Path, result: FitResult, meta: dict, train_config: TrainConfig, extra: dict | None = None,
               resumed: bool = False) -> Path:
    """The JSON card beside ``path``: how to reproduce the checkpoint, and what it cost.

    The commands come from ``meta`` (``with_commands``), so the first command of a run killed and
    resumed is kept; a resumed run drops metrics measured on older weights.
    """
    previous = checkpoint.read_card(path) if resumed else {}
    previous.pop("metrics", None)
    previous.pop("command", None)
    previous.update({
        "checkpoint": path.name,
        "commands": meta.get("commands", [current_command()]),  # in order, from the resume file: none lost
        **meta,
        "train_config": train_config.__dict__,
        "steps": result.step,
        "wall_seconds": round(result.seconds, 1),
        "hardware": hardware(),
        "torch": torch.__version__,
        "final_loss_avg100": sum(result.losses[-100:]) / max(1, len(result.losses[-100:])),
        **(extra or {}),
    })
    return checkpoint.write_card(path, previous)


def resume_path(out: Path) -> Path:
    """Where the full, resumable training state of the checkpoint ``out`` lives."""
    return out.with_name(out.name.replace(".safetensors", "") + ".resume.safetensors")


def export_ema(run: Path, out: Path) -> Path:
    """Write only the EMA weights (and the run's metadata, minus optimizer state) to ``out``."""
    tensors, meta = checkpoint.load(run)
    meta = {k: v for k, v in meta.items() if k not in ("format", "optimizer_param_groups")}
    return checkpoint.save(out, {k: v for k, v in tensors.items() if k.startswith("ema.")}, meta)


def _train_pixel_unet(out: Path, model_config: UNetConfig, train_config: TrainConfig, resume: bool, progress: bool,
                      meta: dict, loss, monitor=None) -> FitResult:
    """The UNet of lesson 02 on the training digits with ``loss(m, x, y, gen)``: shared by the DDPM
    and the flow, so that they differ in their objective only."""
    digits = load_mnist("train")
    torch.manual_seed(train_config.seed)
    model = UNet(model_config).to(config.device(), memory_format=torch.channels_last)
    meta = {**meta, "model_config": model_config.to_dict(), "data_source": digits.source, "train_digits": len(digits)}
    meta = with_commands(meta, out, resume)
    result = fit(model, loss, (digits.images, digits.labels), train_config, resume_path(out), meta, resume,
                 progress, monitor=monitor)
    export_ema(resume_path(out), out)
    record_run(out, result, meta, train_config, resumed=resume)
    return result


def accuracy_monitor(schedule: NoiseSchedule, prediction: str, n: int, steps: int = 25):
    """``fit``'s monitor: ``ddim_accuracy`` of the EMA on ``n`` digits (DDIM-``steps``), an estimate on
    the progress bar while a run trains (binomial sd about 5 points at n = 100)."""
    def monitor(step: int, ema) -> dict:
        return {"accuracy": f"~{ddim_accuracy(ema, prediction, schedule, n, steps):.0%} (n={n})"}
    return monitor


def train_ddpm(out: Path, model_config: UNetConfig, train_config: TrainConfig, resume: bool = False,
               progress: bool = True, prediction: str = "eps", min_snr_gamma: float | None = None,
               monitor_digits: int = 0) -> FitResult:
    """The class-conditional pixel-space DDPM of lessons 02 to 04; ``prediction`` and
    ``min_snr_gamma`` as in ``train.ddpm_loss`` (the card records them; ``checkpoint.load_model``
    serves a v-model as eps). ``monitor_digits`` > 0 estimates the accuracy at every checkpoint."""
    schedule = NoiseSchedule.from_config(DDPM_SCHEDULE)

    def loss(m, x, y, gen):
        return ddpm_loss(m, schedule, x, y, gen, train_config.label_dropout, prediction, min_snr_gamma)

    recipe = {"prediction": prediction, **({} if min_snr_gamma is None else {"min_snr_gamma": min_snr_gamma})}
    monitor = accuracy_monitor(schedule, prediction, monitor_digits) if monitor_digits else None
    return _train_pixel_unet(out, model_config, train_config, resume, progress,
                             {"kind": "ddpm", "schedule": DDPM_SCHEDULE, **recipe}, loss, monitor)


def train_flow(out: Path, model_config: UNetConfig, train_config: TrainConfig, resume: bool = False,
               progress: bool = True) -> FitResult:
    """The class-conditional flow-matching model of lesson 12: the DDPM's UNet and data, trained on
    ``flow.flow_matching_loss`` (velocity eps - x_0 along x_t = (1 - t) x_0 + t eps; t from SD3's
    logit-normal), so that it compares with ``ddpm_mnist`` at equal size and budget."""

    def loss(m, x, y, gen):
        return flow.flow_matching_loss(m, x, y, gen, train_config.label_dropout, "logit_normal")

    return _train_pixel_unet(out, model_config, train_config, resume, progress,
                             {"kind": "flow", "timestep_sampling": "logit_normal", "num_train_timesteps": 1000}, loss)


def train_classifier(out: Path, train_config: TrainConfig, resume: bool = False, progress: bool = True) -> FitResult:
    """The evaluation classifier; its card records its accuracy on the held-out test digits."""
    digits = load_mnist("train")
    torch.manual_seed(train_config.seed)
    model = Classifier().to(config.device())
    meta = with_commands({"kind": "classifier", "model_config": {"features": 128}, "data_source": digits.source,
                          "train_digits": len(digits)}, out, resume)
    result = fit(model, lambda m, x, y, g: classifier_loss(m, x, y, g), (digits.images, digits.labels),
                 train_config, resume_path(out), meta, resume, progress)
    export_ema(resume_path(out), out)
    test = load_mnist("test", verbose=False)
    with torch.no_grad():
        accuracy = (result.ema(test.images).argmax(1) == test.labels).double().mean().item()
    record_run(out, result, meta, train_config, {"test_accuracy": accuracy, "test_digits": len(test)}, resumed=resume)
    return result


def train_vae(out: Path, variant: str, train_config: TrainConfig, resume: bool = False,
              progress: bool = True, model_config: dict | None = None) -> FitResult:
    """The VAEs of lesson 05: ``variant`` "vae" (4x7x7 spatial latent) or "vae2d" (2-D latent).

    Minimises the negative ELBO (``vae.vae_loss``; eps drawn from the step's generator, so resume is
    exact), exports the EMA weights, then computes the latent scaling factor (1 / std of the latents
    of the training digits, as SD's 0.18215) and stores it in the checkpoint's metadata and card,
    with the reconstruction error and KL on the held-out test digits.
    """
    digits = load_mnist("train")
    torch.manual_seed(train_config.seed)
    model = vae_module.build(variant, model_config).to(config.device())
    meta = {"kind": variant, "model_config": vae_module.config_dict(model), "data_source": digits.source,
            "train_digits": len(digits), "likelihood": "Gaussian, fixed variance 1/2: sum of squared errors"}
    meta = with_commands(meta, out, resume)

    def loss(m, x, y, gen):
        return vae_module.vae_loss(m, x.contiguous(), gen).loss

    result = fit(model, loss, (digits.images, digits.labels), train_config, resume_path(out), meta, resume,
                 progress)
    export_ema(resume_path(out), out)
    ema = checkpoint.load_model(out.stem, out.parent).model
    scale = vae_module.latent_scaling_factor(ema, digits.images)
    test = load_mnist("test", verbose=False)
    with torch.no_grad():
        terms = vae_module.vae_loss(ema, test.images, torch.Generator().manual_seed(0))
        mean, _ = ema.encode(test.images)
        pixel_mse = (ema.decode(mean) - test.images).pow(2).mean().item()
    metrics = {"scaling_factor": scale, "latent_std": 1.0 / scale, "test_digits": len(test),
               "test_reconstruction_sse": terms.reconstruction.mean().item(),
               "test_kl": terms.kl.mean().item(), "test_negative_elbo": terms.loss.item(),
               "test_pixel_mse_of_mean": pixel_mse}
    tensors, saved = checkpoint.load(out)
    checkpoint.save(out, tensors, {**saved, "scaling_factor": scale})
    record_run(out, result, meta, train_config, metrics, resumed=resume)
    return result


def train_ldm(out: Path, train_config: TrainConfig, resume: bool = False, progress: bool = True,
              vae_name: str = "vae_mnist", model_config: UNetConfig | None = None) -> FitResult:
    """The class-conditional latent DDPM of lesson 07: the lesson-02 loss on the VAE's scaled latents.

    The VAE ``checkpoints/{vae_name}`` and its stored scaling factor are recorded in the card.
    """
    digits = load_mnist("train")
    autoencoder = checkpoint.load_model(vae_name).model
    posteriors = ldm.encode_posteriors(autoencoder, digits.images)  # (N, 8, 7, 7)
    model_config = model_config or ldm.latent_unet_config()
    torch.manual_seed(train_config.seed)
    model = UNet(model_config).to(config.device(), memory_format=torch.channels_last)
    schedule = NoiseSchedule.from_config(DDPM_SCHEDULE)
    meta = {"kind": "ldm", "model_config": model_config.to_dict(), "schedule": DDPM_SCHEDULE,
            "vae": vae_name, "scaling_factor": autoencoder.scaling_factor, "latent_padding": "7x7 -> 8x8, zeros",
            "data_source": digits.source, "train_digits": len(digits)}
    meta = with_commands(meta, out, resume)

    def loss(m, x, y, gen):
        return ldm.latent_ddpm_loss(m, schedule, x, y, gen, autoencoder.scaling_factor, train_config.label_dropout)

    result = fit(model, loss, (posteriors, digits.labels), train_config, resume_path(out), meta, resume, progress)
    export_ema(resume_path(out), out)
    record_run(out, result, meta, train_config, resumed=resume)
    return result
