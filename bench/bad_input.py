"""Run the bad-input corpus (tests/bad_input_cases.py) and print the table of outcomes (issue 19).

    OMP_NUM_THREADS=1 python bench/bad_input.py [--details]

Prints tried / clear / vague / cryptic / hang / silent, and with --details one line per case.
Runs in a temporary SDCOURSE_HOME, offline, with ``config.CHECKPOINTS_DIR`` pointed at a copy of
the shipped checkpoints (so a training run that writes there cannot damage the real ones).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("SDCOURSE_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sdcourse-bad-input-"))
    os.environ["SDCOURSE_HOME"] = str(tmp / "home")
    from sdcourse import config
    from tests.bad_input_cases import CASES, make_context
    from tests.helpers.bad_input import CLASSES, run_case

    ctx = make_context(tmp)
    config.CHECKPOINTS_DIR = Path(ctx["shipped"])
    counts = Counter()
    for case in CASES:
        outcome, detail = run_case(case, ctx)
        counts[outcome] += 1
        if "--details" in sys.argv:
            print(f"{outcome:8s} {case.name}: {detail.splitlines()[-1] if detail.strip() else ''}"[:220], flush=True)
    print("| tried | " + " | ".join(CLASSES) + " |")
    print("|---" * (len(CLASSES) + 1) + "|")
    print(f"| {len(CASES)} | " + " | ".join(str(counts[c]) for c in CLASSES) + " |")


if __name__ == "__main__":
    main()
