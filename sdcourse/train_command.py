"""``sdcourse train MODEL``: where the run goes, what it may replace, and what Ctrl-C does.

The default ``--out`` is ``$SDCOURSE_HOME/runs/<model>.safetensors`` (``config.runs_dir``), or
``DIR/<model>.safetensors`` with ``--checkpoints DIR``;
``runs.check_output`` refuses the repository's ``checkpoints/`` and an existing run unless
``--force`` or ``--resume`` says so. On ``--resume`` the options not given are those the run was
started with, so the card and the run agree. SIGINT/SIGTERM save and end with exit status 130
and the exact command that continues the run.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from . import config, reflow_runs, runs, sd_mnist_runs, stopping
from .experiments.ddpm_recipe import RECIPES
from .train import TrainConfig
from .unet import UNetConfig

DEFAULT_NAMES = {"ddpm": "ddpm_mnist", "classifier": "mnist_classifier", "vae": "vae_mnist",
                 "vae2d": "vae2d_mnist", "ldm": "ldm_mnist", "flow": "flow_mnist",
                 "reflow": "reflow_mnist"}


# Issue 18's preset: bench/ddpm_recipe.py's fastest recipe to 90 % (v-prediction, 64 digits per step;
# bench/ddpm_cpu.py: 2.3-2.4 minutes to 90 % on two idle cores) on a wall-clock budget that leaves a minute
# of the ten for loading the data and the accuracy estimates.
TEN_MINUTES_RECIPE = RECIPES["v+batch-64"]
TEN_MINUTES = {"train": {"minutes": 9.0, "steps": 6000, "checkpoint_every": 250,  # steps: a cap
                         "lr": TEN_MINUTES_RECIPE.lr, "batch_size": TEN_MINUTES_RECIPE.batch_size},
               "monitor_digits": 100}


def _train_config(args, out: Path) -> TrainConfig:
    """The options given; on --resume, the others as the run was started (a changed one is refused by fit);
    with ``--preset ten-minutes``, that preset's for the options not given."""
    fields = {"steps": args.steps, "minutes": args.minutes, "batch_size": args.batch_size, "lr": args.lr,
              "seed": args.seed, "checkpoint_every": args.checkpoint_every}
    if args.preset == "ten-minutes":
        fields = {k: TEN_MINUTES["train"].get(k) if v is None else v for k, v in fields.items()}
    saved = runs.saved_train_config(out) if args.resume else {}
    given = {k: v for k, v in fields.items() if v is not None}
    keep = {k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__ and k not in given
            and k not in ("steps", "minutes")}
    return TrainConfig(**{**keep, **given})


def _resume_command(args, out: Path) -> str:
    words = [w for w in args.argv if w not in ("--force", "--resume")]
    if args.out is None and args.checkpoints is None:
        words += ["--out", str(out)]
    return "sdcourse " + shlex.join(words + ["--resume"])


def _train(args, out: Path):
    if args.preset == "ten-minutes" and args.model != "ddpm":
        raise ValueError(f"--preset ten-minutes is a recipe of `sdcourse train ddpm`; {args.model} takes tiny, cpu "
                         "or gpu")
    if args.beta is not None and args.model not in ("vae", "vae2d"):
        raise ValueError(f"--beta is the KL weight of the VAEs (train vae, train vae2d); {args.model} has none")
    out = runs.check_output(out, args.resume, args.force)
    with runs.command_line(args.argv):
        return _run(args, out, _train_config(args, out))


def _run(args, out: Path, train_config: TrainConfig):
    if args.model == "ddpm" and args.preset == "ten-minutes":  # the cpu UNet, issue 18's recipe
        return runs.train_ddpm(out, UNetConfig.cpu(), train_config, args.resume, progress=not args.json,
                               prediction=TEN_MINUTES_RECIPE.prediction, min_snr_gamma=TEN_MINUTES_RECIPE.min_snr_gamma,
                               monitor_digits=TEN_MINUTES["monitor_digits"])
    if args.model in ("ddpm", "flow"):  # the same UNet, trained on noise (lesson 02) or velocity (12)
        run = runs.train_ddpm if args.model == "ddpm" else runs.train_flow
        return run(out, UNetConfig.preset(args.preset), train_config, args.resume, progress=not args.json)
    if args.model == "reflow":  # lesson 12's 2-rectified flow, from the shipped flow_mnist
        return reflow_runs.train_reflow(out, train_config, args.resume, progress=not args.json)
    if args.model == "ldm":
        return runs.train_ldm(out, train_config, args.resume, progress=not args.json)
    if args.model in ("vae", "vae2d"):
        return runs.train_vae(out, args.model, train_config, args.resume, progress=not args.json,
                              model_config=None if args.beta is None else {"beta": args.beta})
    return runs.train_classifier(out, train_config, args.resume, progress=not args.json)


def cmd_train(args) -> int:
    if args.model == "sd-mnist":  # a folder of three stages and the pipeline (lesson 09)
        return sd_mnist_runs.command(args)
    if args.out and args.checkpoints:
        print("give --out (the checkpoint's path) or --checkpoints (its folder), not both", file=sys.stderr)
        return 2
    out = Path(args.out or Path(args.checkpoints or config.runs_dir()) / DEFAULT_NAMES[args.model])
    out = out if out.suffix or out.is_dir() else out.with_suffix(".safetensors")  # NAME -> NAME.safetensors
    try:
        result = _train(args, out)
    except stopping.Interrupted as stop:
        print(f"interrupted: saved step {stop.step} in {stop.path}. Continue with:\n  {_resume_command(args, out)}",
              file=sys.stderr)
        return stopping.EXIT_CODE
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return 2
    payload = {"checkpoint": str(out), "steps": result.step, "seconds": round(result.seconds, 1),
               "final_loss": result.losses[-1] if result.losses else None}
    print(json.dumps(payload) if args.json else
          f"wrote {out} after {result.step} steps ({result.seconds / 60:.1f} min); card {out.with_suffix('.json')}; "
          f"sample it with `sdcourse sample --model {out.stem} --checkpoints {out.parent}`")
    return 0
