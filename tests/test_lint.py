"""The library and tests pass ruff (pyflakes, pycodestyle, import order, bugbear): unused names and
imports, shadowed loop variables and the like are caught before review."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff is not installed (pip install -e '.[dev]')")
def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    paths = [p for p in ("sdcourse", "tests", "bench", "site", "conftest.py") if (REPO / p).exists()]
    done = subprocess.run([ruff, "check", *paths], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
