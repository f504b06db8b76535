"""Shared test setup: fast mode, no network, a private cache, and a summary of notebook times."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

os.environ.setdefault("SDCOURSE_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "agg")

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_BUDGET_S = 60.0  # the limit for one notebook in fast mode on two cores
_notebook_seconds: dict[str, float] = defaultdict(float)


@pytest.fixture
def tmp_home(tmp_path, monkeypatch):
    """An empty SDCOURSE_HOME, so a test sees no cached data or weights."""
    monkeypatch.setenv("SDCOURSE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    start = time.perf_counter()
    yield
    if item.fspath.ext == ".ipynb":
        _notebook_seconds[str(Path(item.fspath).relative_to(REPO))] += time.perf_counter() - start


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section("notebook run times (fast mode)")
    for name, seconds in sorted(_notebook_seconds.items()):
        flag = "  OVER BUDGET" if seconds > NOTEBOOK_BUDGET_S else ""
        terminalreporter.write_line(f"{seconds:6.1f} s  {name}{flag}")
