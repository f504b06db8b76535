"""The ``sdcourse`` command line. Each command prints readable text, or one JSON object with --json.

    sdcourse doctor [--json]                 what this machine can run
    sdcourse exercises build|check [--json]  regenerate exercises/ from solutions/, or list stale ones
    sdcourse generate "prompt" [--model ...]  one Stable Diffusion image with the course's loop (lesson 08)
    sdcourse prefetch [--model ID] [--from DIR]  weights and MNIST into the caches, online or from a folder
"""

from __future__ import annotations

import argparse
import json
import sys


def _emit(args, payload: dict, text: str) -> None:
    print(json.dumps(payload) if args.json else text)


def cmd_doctor(args) -> int:
    from . import doctor

    info = doctor.report()
    _emit(args, info, doctor.format_report(info))
    return 0


def cmd_exercises(args) -> int:
    from . import config, exercises

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


def cmd_generate(args) -> int:
    import time

    from PIL import Image
    from tqdm.auto import tqdm

    from . import sd

    try:
        pipe = sd.load_pipeline(args.model)
    except (sd.ModelNotAvailable, ValueError) as err:
        print(str(err), file=sys.stderr)
        return 2
    init = Image.open(args.init_image) if args.init_image else None
    scheduler = pipe.scheduler if args.scheduler is None else sd.make_scheduler(pipe, args.scheduler)
    scheduler.set_timesteps(max(args.steps, 1))  # only to size the progress bar (PNDM adds one step)
    total = len(scheduler.timesteps)
    if init is not None:
        total -= (args.steps - int(args.steps * args.strength)) * scheduler.order
    start = time.perf_counter()
    with tqdm(total=total, desc="denoising", unit="step", disable=args.json) as bar:
        try:
            image = sd.generate(pipe, args.prompt, negative_prompt=args.negative_prompt,
                                guidance_scale=args.guidance_scale, num_inference_steps=args.steps,
                                height=args.height, width=args.width, seed=args.seed, init_image=init,
                                strength=args.strength, scheduler=scheduler,
                                on_step=lambda *_: bar.update())
        except ValueError as err:
            print(str(err), file=sys.stderr)
            return 2
    seconds = time.perf_counter() - start
    image.save(args.out)
    note = "" if sd.has_real_weights(pipe) else " (random weights: the picture is noise by design)"
    _emit(args, {"out": str(args.out), "model": args.model, "size": list(image.size), "steps": args.steps,
                 "seconds": round(seconds, 2), "real_weights": sd.has_real_weights(pipe)},
          f"wrote {args.out} ({image.size[0]}x{image.size[1]}, {args.steps} steps, "
          f"{seconds:.1f} s, {args.model}){note}")
    return 0


def cmd_prefetch(args) -> int:
    from . import prefetch, sd

    try:
        if args.from_dir:
            done = prefetch.import_folder(args.from_dir, model=args.model)
            _emit(args, done, f"cached {', '.join(done['models']) or 'no models'} in {done['cache']}"
                  + (f"; MNIST in {done['mnist']}" if done["mnist"] else "")
                  + ". Everything now runs with HF_HUB_OFFLINE=1.")
            return 0
        model = args.model or sd.DEFAULT_MODEL
        if sd.hub_offline(timeout=3.0):
            print(f"cannot reach the Hugging Face hub (offline). On a machine that is online, run "
                  f"`sdcourse prefetch --model {model}`, copy ~/.cache/huggingface/hub to a folder, "
                  "and here run `sdcourse prefetch --from FOLDER`.", file=sys.stderr)
            return 2
        snapshot = prefetch.download_model(model, args.revision)
        mnist = None if args.no_mnist else prefetch.prefetch_mnist()
    except (ValueError, OSError) as err:
        print(str(err), file=sys.stderr)
        return 2
    _emit(args, {"models": [model], "snapshot": str(snapshot), "mnist": mnist},
          f"cached {model} in {snapshot}" + (f"; MNIST in {mnist}" if mnist else ""))
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
    gen.add_argument("--model", default="stable-diffusion-v1-5/stable-diffusion-v1-5",
                     help="hub id, pipeline folder, or tiny / sd15-random (offline, random weights)")
    gen.add_argument("--steps", type=int, default=50, help="num_inference_steps")
    gen.add_argument("--guidance-scale", type=float, default=7.5, help="1 = no guidance")
    gen.add_argument("--negative-prompt", default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--height", type=int, default=None, help="multiple of 8 (default: the model's)")
    gen.add_argument("--width", type=int, default=None, help="multiple of 8 (default: the model's)")
    gen.add_argument("--init-image", default=None, help="an RGB image for img2img")
    gen.add_argument("--strength", type=float, default=0.8, help="img2img: how far to noise the image, 0..1")
    gen.add_argument("--scheduler", choices=["ddim", "euler", "dpmsolver++"], default=None,
                     help="default: the pipeline's own")
    gen.add_argument("--out", default="sdcourse.png", help="PNG to write")
    pre = add("prefetch", cmd_prefetch, "download SD weights (fp16 safetensors) and MNIST, or copy them from a folder")
    pre.add_argument("--model", default=None, help="hub id (default stable-diffusion-v1-5/stable-diffusion-v1-5)")
    pre.add_argument("--revision", default=None, help="branch, tag or commit")
    pre.add_argument("--from", dest="from_dir", default=None, help="fill the caches from this folder, offline")
    pre.add_argument("--no-mnist", action="store_true", help="skip the MNIST download")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
