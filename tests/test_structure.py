"""The library's shape (docs/ARCHITECTURE.md): layers import only downward, no import cycles, imports
at the top of modules (lazy only for heavy optional packages, and saying why), modules short
enough to read in one sitting, and the public names of the course's contracts still importable."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIBRARY = sorted((REPO / "sdcourse").rglob("*.py"))
MAX_LINES = 300  # "short enough to read in one sitting"; the goal is about 300
LAZY_MARK = "# lazy:"  # an import inside a function must say why it is not at the top


def _lint_imports() -> str | None:
    found = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    return found if Path(found).exists() else None


@pytest.mark.skipif(_lint_imports() is None, reason="import-linter is not installed (pip install -e '.[dev]')")
def test_layers_import_only_downward_and_without_cycles():
    done = subprocess.run([_lint_imports(), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout and "Contracts: 2 kept" in done.stdout, done.stdout


def _imports_inside_functions(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    lines = path.read_text().splitlines()
    found = []
    for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        for node in ast.walk(func):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append((node.lineno, lines[node.lineno - 1]))
    return found


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_inside_functions_are_only_lazy_heavy_dependencies(path):
    for lineno, line in _imports_inside_functions(path):
        where = f"{path.relative_to(REPO)}:{lineno}: {line.strip()}"
        assert "sdcourse" not in line and "from ." not in line, f"{where}: import sdcourse modules at the top"
        assert LAZY_MARK in line, f"{where}: move it to the top, or say why it is lazy ({LAZY_MARK} ...)"


def test_the_structure_test_would_catch_a_hidden_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from . import config\n    import diffusers  # lazy: heavy\n")
    assert [n for n, _ in _imports_inside_functions(module)] == [2, 3]


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(REPO)))
def test_modules_are_short_enough_to_read(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines: split it by idea (at most {MAX_LINES})"


CONTRACT_NAMES = {  # ../shared/COURSE_DESIGN.md, "Contracts other code (and the tests) rely on"
    "sdcourse.data": ["load_mnist"],
    "sdcourse.schedules": ["NoiseSchedule"],
    "sdcourse.samplers": ["DDPMSampler", "DDIMSampler", "sample"],
    "sdcourse.attention": ["attention", "CrossAttention", "SelfAttention"],
    "sdcourse.guidance": ["classifier_free_guidance", "GuidedModel"],
    "sdcourse.vae": ["kl_divergence"],
    "sdcourse.sd": ["load_pipeline", "generate"],
    "sdcourse.checkpoint": ["load_model", "save", "load"],
    "sdcourse.train": ["fit", "TrainConfig"],
    "sdcourse.checks": ["CheckFailed"],
}


@pytest.mark.parametrize("module", sorted(CONTRACT_NAMES))
def test_contract_names_import(module):
    loaded = importlib.import_module(module)
    for name in CONTRACT_NAMES[module]:
        assert hasattr(loaded, name), f"{module}.{name} is part of the course's contracts"
