"""Exercise notebooks are generated from solution notebooks, never edited by hand.

In ``solutions/NN_slug.ipynb`` an answer is marked in a code cell:

    def add_noise(x0, noise, alpha_bar, t):
        # BEGIN SOLUTION Use Eq. 4: scale x0 by sqrt(alpha_bar_t) and the noise by sqrt(1 - alpha_bar_t).
        ab = alpha_bar[t].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        # END SOLUTION

``build`` writes ``exercises/NN_slug.ipynb`` with each marked block replaced by
``raise NotImplementedError("<hint>")`` at the block's indentation (the hint is the text after the
``BEGIN SOLUTION`` marker), and with every output cleared. ``check`` lists stale exercises.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import config

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?P<hint>.*)$")
END = re.compile(r"^[ \t]*# END SOLUTION[ \t]*$")
DEFAULT_HINT = "Write your answer here."


class MarkerError(ValueError):
    """A solution notebook whose BEGIN/END SOLUTION markers do not pair up."""


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace each BEGIN/END SOLUTION block in ``source`` with ``raise NotImplementedError(hint)``."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if inside:
                raise MarkerError(f"{where}, line {number}: BEGIN SOLUTION inside another block")
            inside = True
            hint = begin["hint"].strip(" :-") or DEFAULT_HINT
            out.append(f"{begin['indent']}raise NotImplementedError({hint!r})")
        elif end:
            if not inside:
                raise MarkerError(f"{where}, line {number}: END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: BEGIN SOLUTION is never closed by END SOLUTION")
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


def exercise_from_solution(solution: dict, where: str = "notebook") -> dict:
    """The exercise notebook (as JSON) for a solution notebook: answers stripped, outputs cleared."""
    exercise = json.loads(json.dumps(solution))
    for index, cell in enumerate(exercise["cells"]):
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        stripped = strip_solutions(source, where=f"{where}, cell {index}")
        cell["source"] = stripped.splitlines(keepends=True)
        cell["outputs"] = []
        cell["execution_count"] = None
    return exercise


def _render(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def _expected(root: Path):
    """Each exercise path with the text ``build`` writes for it."""
    for solution in sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb")):
        notebook = exercise_from_solution(json.loads(solution.read_text()), where=str(solution))
        yield root / "exercises" / solution.name, _render(notebook)


def build(root: Path = config.REPO_ROOT) -> list[Path]:
    """Regenerate ``exercises/`` from ``solutions/``; returns the notebooks that changed."""
    changed = []
    for exercise, text in _expected(root):
        if not exercise.exists() or exercise.read_text() != text:
            exercise.parent.mkdir(parents=True, exist_ok=True)
            exercise.write_text(text)
            changed.append(exercise)
    return changed


def stale(root: Path = config.REPO_ROOT) -> list[Path]:
    """Exercises that differ from what ``build`` would write (or are missing, or orphaned)."""
    expected = dict(_expected(root))
    out = [e for e, text in expected.items() if not e.exists() or e.read_text() != text]
    out += [e for e in sorted((root / "exercises").glob("*.ipynb")) if e not in expected]
    return out
