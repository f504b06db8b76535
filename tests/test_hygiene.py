"""Repository conventions: lessons are paired with exercises, notebooks carry no outputs, and
exercises/ is exactly what ``sdcourse exercises build`` makes from solutions/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sdcourse import exercises

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(
    p for folder in ("notebooks", "exercises", "solutions") for p in (REPO / folder).glob("*.ipynb")
)


def test_there_are_lessons():
    assert (REPO / "notebooks" / "00_start_here.ipynb").exists()
    assert (REPO / "notebooks" / "01_forward_noising.ipynb").exists()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_is_named_and_stored_without_outputs(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), f"{path.name} is not NN_slug.ipynb"
    for index, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "code" or not cell.get("outputs"):
            continue
        assert "NBVAL_CHECK_OUTPUT" in "".join(cell["source"]), (
            f"{path.name} cell {index} stores outputs; strip them (only NBVAL_CHECK_OUTPUT cells keep theirs)"
        )


def test_every_lesson_has_exercise_and_solution():
    lessons = {p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")} - {"00_start_here.ipynb"}
    for folder in ("exercises", "solutions"):
        present = {p.name for p in (REPO / folder).glob("*.ipynb")}
        assert lessons == present, f"{folder}/ should hold exactly the lessons' names: {sorted(lessons ^ present)}"


def test_exercises_are_in_sync_with_solutions():
    assert exercises.stale(REPO) == [], "run `sdcourse exercises build` and commit exercises/"


def test_exercises_hide_every_solution():
    for path in (REPO / "exercises").glob("*.ipynb"):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, path.name
        assert "NotImplementedError" in text, f"{path.name} asks the learner for nothing"
