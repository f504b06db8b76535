"""environment.yml lists the same dependencies as pyproject.toml, and CI runs the README's command
(after installing Debian's Chromium for the browser tests)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"torch": "pytorch", "huggingface-hub": "huggingface_hub"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {CONDA_NAMES.get(_name(r), _name(r)) for r in project["dependencies"]}
    wanted |= {_name(r) for r in project["optional-dependencies"]["dev"]}
    dependencies = (REPO / "environment.yml").read_text().split("dependencies:", 1)[1]
    listed = {_name(line.strip()[2:]) for line in dependencies.splitlines()
              if line.strip().startswith("- ") and not line.strip().startswith("- python")}
    listed.discard("pip")
    assert wanted == listed, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / "README.md").read_text()
    commands = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert commands[-1] == "make test"
    assert all(c.startswith("DEBIAN_FRONTEND=noninteractive apt-get ") for c in commands[:-1]), commands
    assert any("install -y" in c and "chromium chromium-driver" in c for c in commands), "CI must install Chromium"
