"""Shared test setup: fast mode, no network, a private cache, and a summary of notebook times."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

os.environ.setdefault("SDCOURSE_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent
NOTEBOOK_BUDGET_S = 60.0  # the limit for one notebook in fast mode on two cores
_notebook_seconds: dict[str, float] = defaultdict(float)


@pytest.fixture
def tmp_home(tmp_path, monkeypatch):
    """An empty SDCOURSE_HOME, so a test sees no cached data or weights (and hears MNIST's fallback line)."""
    from sdcourse import data

    monkeypatch.setenv("SDCOURSE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "_announced", set())
    return tmp_path / "home"


def pytest_runtest_logreport(report):
    # Runs in the controller under xdist too, so the summary covers every worker's notebooks.
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb") and report.when in ("setup", "call", "teardown"):
        _notebook_seconds[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section("notebook run times (fast mode)")
    for name, seconds in sorted(_notebook_seconds.items()):
        flag = "  OVER BUDGET" if seconds > NOTEBOOK_BUDGET_S else ""
        terminalreporter.write_line(f"{seconds:6.1f} s  {name}{flag}")
