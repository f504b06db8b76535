"""Training ``sd-mnist``, Stable Diffusion on captioned digits, in three stages (lesson 09).

``sdcourse train sd-mnist --stage clip|vae|unet|all --out DIR`` runs, each through ``train.fit``
(resumable: ``DIR/STAGE.resume.safetensors``; the EMA weights go to ``DIR/STAGE.safetensors``):

1. ``clip``: the tiny CLIP (``clip.TinyCLIP``) on (digit, caption) pairs, InfoNCE loss;
2. ``vae``: the ``AutoencoderKL`` (f = 4) on the padded digits: squared error + ``beta`` KL;
3. ``unet``: the ``UNet2DConditionModel`` on the VAE's scaled latents, conditioned on the frozen
   CLIP text tower's hidden states, with the text replaced by "" 10 % of the time (classifier-free
   guidance); the loss of Ho et al. 2020 (arXiv:2006.11239) with SD 1.5's noise schedule.

Then ``export`` measures the VAE's scaling factor, assembles the pipeline and writes the diffusers
folder ``DIR/sd-mnist`` with ``card.json`` (commands, data source, steps, wall time, hardware).
Captions: ``CAPTIONS_PER_DIGIT`` per training digit, from ``captions`` with tertiles measured on
the training digits; the pair (digit, caption) is one training example.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.nn import functional as F

from . import captions, checkpoint, clip, config
from .data import load_mnist
from .runs import export_ema, hardware, resume_path
from .sd import mnist
from .train import TrainConfig, fit

STAGES = ("clip", "vae", "unet")
CAPTIONS_PER_DIGIT = 6  # two in each language
VAE_BETA = 1e-3  # KL weight per latent element, against the mean squared error per pixel
PRESETS = {  # the budgets of the shipped checkpoint (one CPU thread): see its card
    "clip": TrainConfig(steps=200, batch_size=64, lr=1e-3, ema_decay=0.99, checkpoint_every=100),
    "vae": TrainConfig(steps=300, batch_size=32, lr=1e-3, ema_decay=0.99, checkpoint_every=100),
    "unet": TrainConfig(steps=3000, batch_size=64, lr=1e-3, ema_decay=0.99, checkpoint_every=250),
}


def captioned_digits(seed: int = 0):
    """Training digits, their tertiles, and (image index, token ids) for each caption."""
    digits = load_mnist("train")
    tertiles = captions.Tertiles.fit(captions.measure(digits.images))
    texts = captions.captions_for(digits.labels, tertiles.bins(captions.measure(digits.images)),
                                  CAPTIONS_PER_DIGIT, seed)
    ids = clip.tokenize([t for per_digit in texts for t in per_digit])
    index = torch.arange(len(digits)).repeat_interleave(CAPTIONS_PER_DIGIT)
    return digits, tertiles, index, ids


def _ema_weights(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = checkpoint.load(path)
    return {k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")}


def _run(stage: str, model, loss, data, train_config: TrainConfig, out: Path, meta: dict, resume: bool,
         progress: bool) -> dict:
    path = out / f"{stage}.safetensors"
    result = fit(model, loss, data, train_config, resume_path(path), meta, resume, progress)
    export_ema(resume_path(path), path)
    return {"steps": result.step, "wall_seconds": round(result.seconds, 1), "batch_size": train_config.batch_size,
            "images_per_second": round(result.step * train_config.batch_size / max(result.seconds, 1e-9), 1),
            "final_loss_avg50": sum(result.losses[-50:]) / max(1, len(result.losses[-50:]))}


def train_clip(out: Path, train_config: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    digits, tertiles, index, ids = captioned_digits(train_config.seed)
    grey = mnist.pad_digits(digits.images)[:, :1]
    torch.manual_seed(train_config.seed)
    model = clip.TinyCLIP()
    meta = {"kind": "sd-mnist-clip", "model_config": clip.TEXT, "data_source": digits.source}
    return _run("clip", model, lambda m, x, y, g: clip.info_nce(m(x, y)), (grey[index], ids), train_config, out,
                meta, resume, progress)


def vae_loss(vae, x: torch.Tensor, gen: torch.Generator, beta: float = VAE_BETA) -> torch.Tensor:
    """Mean squared error of the reconstruction from z ~ q(z|x) plus ``beta`` x KL(q || N(0, I)) per element."""
    posterior = vae.encode(x).latent_dist
    eps = torch.randn(posterior.mean.shape, generator=gen)
    z = posterior.mean + posterior.std * eps  # reparameterisation, noise from the step's generator
    kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1 - posterior.logvar).mean()
    return F.mse_loss(vae.decode(z).sample, x) + beta * kl


def train_vae(out: Path, train_config: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    digits = load_mnist("train")
    torch.manual_seed(train_config.seed)
    config = mnist.vae_config()
    model = mnist.build_vae(config)
    meta = {"kind": "sd-mnist-vae", "model_config": config, "data_source": digits.source, "beta": VAE_BETA}
    return _run("vae", model, lambda m, x, y, g: vae_loss(m, x, g), (mnist.pad_digits(digits.images), digits.labels),
                train_config, out, meta, resume, progress)


def load_stage(out: Path, stage: str):
    """The trained EMA model of ``stage`` from ``out`` (its config from the stage's metadata)."""
    path = out / f"{stage}.safetensors"
    _, meta = checkpoint.load(path)
    model = {"clip": lambda: clip.TinyCLIP(), "vae": lambda: mnist.build_vae(meta["model_config"]),
             "unet": lambda: mnist.build_unet(meta["model_config"])}[stage]()
    checkpoint.load_state_dict_strict(model, _ema_weights(path), path)
    return model.eval().requires_grad_(False), meta


def train_unet(out: Path, train_config: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    from diffusers import DDPMScheduler  # lazy: diffusers takes seconds to import

    digits, _, index, ids = captioned_digits(train_config.seed)
    text_encoder = load_stage(out, "clip")[0].text_model
    vae = load_stage(out, "vae")[0]
    images = mnist.pad_digits(digits.images)
    scale = mnist.latent_scaling_factor(vae, images)
    with torch.no_grad():
        posterior = torch.cat([vae.encode(images[i:i + 500]).latent_dist.parameters
                               for i in range(0, len(images), 500)])  # (N, 8, 8, 8): mean and log-variance
    empty = clip.tokenize([""])[0]
    schedule = DDPMScheduler(**{k: v for k, v in mnist.make_scheduler().config.items()
                                if k in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps")})
    torch.manual_seed(train_config.seed)
    config = mnist.unet_config(text_encoder.config.hidden_size)
    model = mnist.build_unet(config)
    meta = {"kind": "sd-mnist-unet", "model_config": config, "data_source": digits.source, "scaling_factor": scale}

    def loss(m, params, tokens, gen):
        mean, logvar = params.chunk(2, dim=1)
        z = scale * (mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=gen))
        drop = torch.rand(len(tokens), generator=gen) < train_config.label_dropout
        tokens = torch.where(drop[:, None], empty, tokens)
        t = torch.randint(0, schedule.config.num_train_timesteps, (len(z),), generator=gen)
        noise = torch.randn(z.shape, generator=gen)
        with torch.no_grad():
            context = text_encoder(input_ids=tokens).last_hidden_state
        return F.mse_loss(m(schedule.add_noise(z, noise, t), t, encoder_hidden_states=context).sample, noise)

    return _run("unet", model, loss, (posterior[index], ids), train_config, out, meta, resume, progress)


def _command() -> str:
    return "sdcourse " + " ".join(sys.argv[1:])


def export(out: Path, stats: dict) -> Path:
    """Assemble the three stages into ``out/sd-mnist`` (diffusers folder + card.json)."""
    digits, tertiles, _, _ = captioned_digits()
    clip_model, _ = load_stage(out, "clip")
    vae, _ = load_stage(out, "vae")
    unet, _ = load_stage(out, "unet")
    scale = mnist.latent_scaling_factor(vae, mnist.pad_digits(digits.images))
    pipe = mnist.assemble(vae, unet, clip_model.text_model, scale)
    commands = list(dict.fromkeys([v["command"] for v in stats.values() if "command" in v] + [_command()]))
    card = {"model": mnist.NAME, "commands": commands,
            "data_source": digits.source, "train_digits": len(digits), "captions_per_digit": CAPTIONS_PER_DIGIT,
            "tertiles": tertiles.to_dict(), "scaling_factor": scale, "hardware": hardware(),
            "torch": torch.__version__, "stages": stats,
            "steps": {k: v["steps"] for k, v in stats.items()},
            "wall_seconds": round(sum(v["wall_seconds"] for v in stats.values()), 1)}
    return mnist.save(pipe, out / mnist.NAME, card)


def train(out: Path, stage: str, resume: bool = False, progress: bool = True,
          configs: dict[str, TrainConfig] | None = None) -> dict:
    """Run ``stage`` ("clip", "vae", "unet" or "all"); after "unet" or "all", export the pipeline."""
    if stage not in (*STAGES, "all"):
        raise ValueError(f"--stage must be one of {(*STAGES, 'all')}, got {stage!r}")
    configs = {**PRESETS, **(configs or {})}  # a stage given alone may take its own TrainConfig
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runners = {"clip": train_clip, "vae": train_vae, "unet": train_unet}
    stats_path = out / "stages.json"
    for name in STAGES if stage == "all" else (stage,):
        began = time.perf_counter()
        again = resume and resume_path(out / f"{name}.safetensors").exists()  # stages not begun start afresh
        done = {**runners[name](out, configs[name], again, progress), "command": _command(),
                "process_seconds": round(time.perf_counter() - began, 1)}
        stats = {**checkpoint.read_card(stats_path), name: done}  # read now: stages may run side by side
        checkpoint.write_card(stats_path, stats)
    if stage in ("unet", "all"):
        export(out, stats)
    return stats


def command(args) -> int:
    """``sdcourse train sd-mnist --stage S --out DIR [--steps N] [--resume]``: exit status 0, or 2 with the reason.

    As for the other models, the repository's ``checkpoints/`` (the shipped sd-mnist) is written
    only with ``--force``.
    """
    if args.out is None:
        print("--out DIR is required for sd-mnist (a folder for the stages and the pipeline)", file=sys.stderr)
        return 2
    inside = config.CHECKPOINTS_DIR.resolve() in (Path(args.out).resolve(), *Path(args.out).resolve().parents)
    if inside and not args.force:
        print(f"--out {args.out} is in the repository's checkpoints/, which holds the shipped models; add --force "
              "to write there", file=sys.stderr)
        return 2
    one = args.stage != "all" and args.steps  # --steps of one stage: its preset, that many steps
    try:
        configs = {args.stage: replace(PRESETS[args.stage], steps=args.steps)} if one else None
        stats = train(Path(args.out), args.stage, args.resume, not args.json, configs)
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return 2
    print(json.dumps({"out": args.out, "stages": stats}) if args.json else f"trained {args.stage} in {args.out}")
    return 0
