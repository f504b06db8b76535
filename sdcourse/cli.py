"""The ``sdcourse`` command line. Each command prints readable text, or one JSON object with --json.

    sdcourse doctor [--json]                 what this machine can run
    sdcourse exercises build|check [--json]  regenerate exercises/ from solutions/, or list stale ones
    sdcourse generate "prompt" [--model ...]  one Stable Diffusion image with the course's loop (lesson 08)
    sdcourse prefetch [--model ID] [--from DIR]  weights and MNIST into the caches, online or from a folder
    sdcourse train ddpm|flow|reflow|classifier|vae|vae2d|ldm|sd-mnist  train a course model (checkpoints, --resume)
    sdcourse sample [--sampler ddim ...]     a PNG grid of digits from a checkpoint (lessons 02 to 04)
    sdcourse evaluate [CHECKPOINT]           conditional accuracy and FID of a checkpoint's samples
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from tqdm.auto import tqdm

from . import checkpoint, config, digits, doctor, evaluate, exercises, outputs, sd, sd_mnist_runs, viz
from .train_command import cmd_train


def _emit(args, payload: dict, text: str) -> None:
    print(json.dumps(payload) if args.json else text)


def cmd_doctor(args) -> int:
    info = doctor.report()
    _emit(args, info, doctor.format_report(info))
    return 0


def cmd_exercises(args) -> int:
    root = config.REPO_ROOT
    if args.action == "build":
        changed = [str(p.relative_to(root)) for p in exercises.build(root)]
        _emit(args, {"changed": changed},
              "\n".join(f"wrote {p}" for p in changed) or "exercises/ is up to date")
        return 0
    stale = [str(p.relative_to(root)) for p in exercises.stale(root)]
    _emit(args, {"stale": stale},
          "exercises/ is up to date" if not stale else
          "stale exercises (run `sdcourse exercises build`):\n" + "\n".join(f"  {p}" for p in stale))
    return 1 if stale else 0


def _open_init_image(path) -> Image.Image:
    path = outputs.input_file("--init-image", path)
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"--init-image {str(path)!r} is not an image PIL can read ({err})") from None


def cmd_generate(args) -> int:
    try:  # everything the user typed is checked before the (slow) pipeline loads
        out = outputs.output_file("--out", args.out, (".png",))
        init = _open_init_image(args.init_image) if args.init_image else None
        seed = args.seed if args.seed is not None else int(torch.randint(0, 2**31 - 1, ()))
        sd.loop.check_inputs(args.prompt, args.negative_prompt, args.guidance_scale, args.steps, args.height,
                             args.width, init, args.strength)
        if args.karras and args.scheduler is None:
            raise ValueError(f"--karras needs --scheduler, one of {sd.loop.KARRAS}")
        pipe = sd.load_pipeline(args.model)
        scheduler = pipe.scheduler if args.scheduler is None else sd.make_scheduler(pipe, args.scheduler, args.karras)
    except (sd.ModelNotAvailable, ValueError) as err:
        print(str(err), file=sys.stderr)
        return 2
    real_weights = args.model not in sd.RANDOM_BUILDS
    scheduler.set_timesteps(args.steps)  # only to size the progress bar (PNDM adds one step)
    total = len(scheduler.timesteps)
    if init is not None:
        total -= (args.steps - int(args.steps * args.strength)) * scheduler.order
    start = time.perf_counter()
    with tqdm(total=total, desc="denoising", unit="step", disable=args.json) as bar:
        try:
            image = sd.generate(pipe, args.prompt, negative_prompt=args.negative_prompt,
                                guidance_scale=args.guidance_scale, num_inference_steps=args.steps,
                                height=args.height, width=args.width, seed=seed, init_image=init,
                                strength=args.strength, scheduler=scheduler,
                                on_step=lambda *_: bar.update())
        except ValueError as err:
            print(str(err), file=sys.stderr)
            return 2
    seconds = time.perf_counter() - start
    info = PngInfo()  # the PNG says how to make it again
    info.add_text("sdcourse", json.dumps({"prompt": args.prompt, "model": args.model, "seed": seed,
                                          "steps": args.steps, "guidance_scale": args.guidance_scale}))
    image.save(out, pnginfo=info)
    note = "" if real_weights else " (random weights: the picture is noise by design)"
    _emit(args, {"out": str(out), "model": args.model, "size": list(image.size), "steps": args.steps,
                 "seed": seed, "seconds": round(seconds, 2), "real_weights": real_weights},
          f"wrote {out} ({image.size[0]}x{image.size[1]}, {args.steps} steps, seed {seed}, "
          f"{seconds:.1f} s, {args.model}){note}")
    return 0


def cmd_prefetch(args) -> int:
    try:
        if args.from_dir:
            done = sd.hub.import_folder(args.from_dir, model=args.model)
            _emit(args, done, f"cached {', '.join(done['models']) or 'no models'} in {done['cache']}"
                  + (f"; MNIST in {done['mnist']}" if done["mnist"] else "")
                  + ". Everything now runs with HF_HUB_OFFLINE=1.")
            return 0
        model = args.model or sd.DEFAULT_MODEL
        if sd.hub_offline(timeout=3.0):
            print(f"cannot reach the Hugging Face hub at {sd.hub.hub_endpoint()} (offline, or it did not answer "
                  f"within 3 s). On a machine that is online, run "
                  f"`sdcourse prefetch --model {model}`, copy ~/.cache/huggingface/hub to a folder, "
                  "and here run `sdcourse prefetch --from FOLDER`.", file=sys.stderr)
            return 2
        snapshot = sd.hub.download_model(model, args.revision)
        mnist = None if args.no_mnist else sd.hub.prefetch_mnist()
    except (ValueError, OSError) as err:
        print(str(err), file=sys.stderr)
        return 2
    _emit(args, {"models": [model], "snapshot": str(snapshot), "mnist": mnist},
          f"cached {model} in {snapshot}" + (f"; MNIST in {mnist}" if mnist else ""))
    return 0


def _parse_labels(text: str | None, n: int) -> torch.Tensor:
    if text is None:
        return torch.arange(n) % 10
    try:
        labels = torch.tensor([int(v) for v in text.split(",")])
    except ValueError:
        raise ValueError(f"--labels must be comma-separated digits 0..9, got {text!r}") from None
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"--labels must be digits 0..9, got {text!r}")
    return labels.repeat(-(-n // len(labels)))[:n]


MAX_DIGITS = 100_000  # --n: 100,000 digits of 28x28 float32 are 300 MB, far more than a grid or FID needs


def _check_sampling_args(args) -> None:
    """Reject bad --steps, --eta, --n and --nrow before any checkpoint is loaded, naming the option."""
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise ValueError(f"--steps must be in [1, 1000] (the training steps), got {args.steps}")
    if not 0.0 <= args.eta <= 1.0:
        raise ValueError(f"--eta must be in [0, 1] (0 = DDIM, 1 = DDPM-like), got {args.eta}")
    if not 1 <= args.n <= MAX_DIGITS:
        raise ValueError(f"--n must be in [1, {MAX_DIGITS}] (more does not fit in memory at once), got {args.n}")
    if getattr(args, "nrow", None) is not None and args.nrow < 1:
        raise ValueError(f"--nrow must be at least 1 (digits per row), got {args.nrow}")


def _digits(args, labels: torch.Tensor) -> torch.Tensor:
    args.sampler = digits.sampler_for(args.model, args.checkpoints, args.sampler)  # the default depends on the kind
    return digits.from_checkpoint(args.model, labels, sampler=args.sampler, steps=args.steps, eta=args.eta,
                                  seed=args.seed, guidance_scale=args.guidance_scale,
                                  negative_label=args.negative_label, directory=args.checkpoints,
                                  progress=not args.json, karras=args.karras)


def _guidance_text(args) -> str:
    if args.guidance_scale == 1.0 and args.negative_label is None:
        return ""
    away = "" if args.negative_label is None else f", away from {args.negative_label}"
    return f", guidance scale {args.guidance_scale:g}{away}"


def cmd_sample(args) -> int:
    try:
        _check_sampling_args(args)
        out = outputs.output_file("--out", args.out, (".png", ".jpg", ".jpeg"))
        labels = _parse_labels(args.labels, args.n)
        images = _digits(args, labels)
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return 2
    nrow = args.nrow if args.nrow is not None else math.ceil(math.sqrt(args.n))
    array = (viz.grid(images, nrow=nrow) * 255).round().astype("uint8")
    Image.fromarray(array).resize((array.shape[1] * 2, array.shape[0] * 2), Image.NEAREST).save(out)
    _emit(args, {"out": str(args.out), "n": args.n, "sampler": args.sampler, "labels": labels.tolist(),
                 "guidance_scale": args.guidance_scale, "negative_label": args.negative_label},
          f"wrote {args.out}: {args.n} digits, {args.sampler} sampler{_guidance_text(args)}")
    return 0


def cmd_evaluate(args) -> int:
    try:
        _check_sampling_args(args)
        labels = _parse_labels(None, args.n)
        images = _digits(args, labels)
        quality = evaluate.evaluate_samples(images, labels)
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return 2
    name = f"{args.sampler}{'-karras' if args.karras else ''}-{args.steps or (1000 if args.sampler == 'ddpm' else 50)}"
    if args.guidance_scale != 1.0 or args.negative_label is not None:
        name += f"-cfg{args.guidance_scale:g}" + ("" if args.negative_label is None else f"-neg{args.negative_label}")
    if args.card:
        path = checkpoint.checkpoint_file(args.model, args.checkpoints)
        card = checkpoint.read_card(path)
        card.setdefault("metrics", {})[name] = {**quality.as_dict(), "seed": args.seed,
                                                 "command": "sdcourse " + " ".join(sys.argv[1:])}
        checkpoint.write_card(path, card)
    _emit(args, {"model": args.model, "sampler": name, **quality.as_dict()}, f"{args.model} {name}: {quality}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdcourse", description="Stable Diffusion from first principles.")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        sub.set_defaults(func=func)
        return sub

    add("doctor", cmd_doctor, "versions, devices, data and weights: which lessons this machine runs")
    ex = add("exercises", cmd_exercises, "build exercises/ from solutions/, or check they are in sync")
    ex.add_argument("action", choices=["build", "check"])
    gen = add("generate", cmd_generate, "one Stable Diffusion image, with the course's hand-written loop")
    gen.add_argument("prompt")
    gen.add_argument("--model", default=sd.DEFAULT_MODEL,
                     help=f"hub id, pipeline folder, or {' / '.join(sd.RANDOM_BUILDS)} (offline, random weights)")
    gen.add_argument("--steps", type=int, default=50, help="num_inference_steps")
    gen.add_argument("--guidance-scale", type=float, default=7.5, help="1 = no guidance")
    gen.add_argument("--negative-prompt", default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--height", type=int, default=None, help="multiple of 8 (default: the model's)")
    gen.add_argument("--width", type=int, default=None, help="multiple of 8 (default: the model's)")
    gen.add_argument("--init-image", default=None, help="an RGB image for img2img")
    gen.add_argument("--strength", type=float, default=0.8, help="img2img: how far to noise the image, 0..1")
    gen.add_argument("--scheduler", choices=sd.SCHEDULERS, default=None, help="default: the pipeline's own")
    gen.add_argument("--karras", action="store_true", help="Karras sigmas for euler, heun or dpmsolver (lesson 11)")
    gen.add_argument("--out", default="sdcourse.png", help="PNG to write")
    pre = add("prefetch", cmd_prefetch, "download SD weights (fp16 safetensors) and MNIST, or copy them from a folder")
    pre.add_argument("--model", default=None, help=f"hub id (default {sd.DEFAULT_MODEL})")
    pre.add_argument("--revision", default=None, help="branch, tag or commit")
    pre.add_argument("--from", dest="from_dir", default=None, help="fill the caches from this folder, offline")
    pre.add_argument("--no-mnist", action="store_true", help="skip the MNIST download")

    train = add("train", cmd_train, "train a course model (checkpoints every N steps; --resume continues)")
    train.add_argument("model", choices=["ddpm", "flow", "reflow", "classifier", "vae", "vae2d", "ldm", "sd-mnist"])
    train.add_argument("--stage", default="all", choices=[*sd_mnist_runs.STAGES, "all"], help="sd-mnist only")
    train.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "gpu", "ten-minutes"],
                       help="UNet size (ddpm, flow); ten-minutes: ddpm's fast recipe on a 9-minute budget")
    train.add_argument("--beta", type=float, default=None, help="KL weight of the VAE's loss (vae, vae2d; default 1)")
    train.add_argument("--steps", type=int, default=None, help="optimizer steps (default 4000)")
    train.add_argument("--minutes", type=float, default=None, help="wall-clock budget; stops with a checkpoint")
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--checkpoint-every", type=int, default=None)
    train.add_argument("--out", default=None, help="checkpoint path (default $SDCOURSE_HOME/runs/<model>.safetensors)")
    train.add_argument("--checkpoints", default=None, help="the folder to write <model>.safetensors in (or --out)")
    train.add_argument("--resume", action="store_true", help="continue from --out exactly where it stopped")
    train.add_argument("--force", action="store_true",
                       help="replace an existing run, or write into the repository's checkpoints/")

    for name, func, help in (("sample", cmd_sample, "a PNG grid of generated digits from a checkpoint"),
                             ("evaluate", cmd_evaluate, "conditional accuracy and FID of generated digits")):
        sub = add(name, func, help)
        sub.add_argument("--model", default="ddpm_mnist", help="checkpoint name in checkpoints/")
        sub.add_argument("--checkpoints", default=None, help="folder holding the checkpoint (default checkpoints/)")
        sub.add_argument("--sampler", choices=list(digits.SAMPLERS), default=None,
                         help="ddpm, ddim (lesson 03), euler, heun, dpmsolver (11); default ddim, euler for a flow")
        sub.add_argument("--steps", type=int, default=None,
                         help="steps of ddim and the solvers (default 50; heun evaluates the network 2 steps - 1 "
                              "times); ddpm uses all 1000")
        sub.add_argument("--karras", action="store_true", help="Karras et al.'s sigmas for euler, heun, dpmsolver")
        sub.add_argument("--eta", type=float, default=0.0, help="DDIM noise: 0 deterministic, 1 DDPM-like")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--n", type=int, default=64 if name == "sample" else 1000, help="number of digits")
        sub.add_argument("--guidance-scale", type=float, default=1.0,
                         help="classifier-free guidance: 1 = none, 0 = unconditional (the paper's w = scale - 1)")
        sub.add_argument("--negative-label", type=int, default=None,
                         help="a digit 0..9 to guide away from (in place of the null label)")
        if name == "sample":
            sub.add_argument("--labels", default=None, help="comma-separated digits, repeated (default 0..9)")
            sub.add_argument("--nrow", type=int, default=None)
            sub.add_argument("--out", default="samples.png")
        else:
            sub.add_argument("--card", action="store_true", help="record the metrics in the checkpoint's card")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the words as typed, for the resume command of an interrupted run
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
