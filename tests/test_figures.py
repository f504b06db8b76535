"""Every lesson has its small picture in docs/figures/ (made by `make figures`), and the README's
lesson map shows it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LESSONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_BYTES = 100 * 1024  # "a few tens of KB each"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_has_a_small_figure(lesson):
    figure = REPO / "docs" / "figures" / f"{lesson.stem}.png"
    assert figure.exists(), f"{lesson.name} has no {figure.relative_to(REPO)}: run `make figures` and commit it"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{figure.name} is not a PNG"
    assert figure.stat().st_size < MAX_BYTES, f"{figure.name} is {figure.stat().st_size // 1024} KB"


def test_readme_lesson_map_shows_every_figure():
    readme = (REPO / "README.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| (\d\d) \|.*$", readme, flags=re.M)}
    for lesson in LESSONS:
        number = lesson.stem[:2]
        assert number in rows, f"the README's lesson map has no row for {lesson.name}"
        assert f"docs/figures/{lesson.stem}.png" in rows[number], f"the README's row {number} shows no figure"
