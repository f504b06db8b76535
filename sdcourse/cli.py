"""The ``sdcourse`` command line. Each command prints readable text, or one JSON object with --json.

    sdcourse doctor [--json]                 what this machine can run
    sdcourse exercises build|check [--json]  regenerate exercises/ from solutions/, or list stale ones
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
