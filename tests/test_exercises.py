"""Building exercises from solutions: markers, hints, cleared outputs, and the CLI's check."""

from __future__ import annotations

import json

import pytest

from sdcourse import cli, exercises

SOLUTION_CELL = """def snr(alpha_bar):
    # BEGIN SOLUTION Divide the signal variance by the noise variance.
    return alpha_bar / (1 - alpha_bar)
    # END SOLUTION

check_snr(snr)
"""


def test_strip_replaces_block_with_hint_at_its_indentation():
    out = exercises.strip_solutions(SOLUTION_CELL)
    assert out == (
        "def snr(alpha_bar):\n"
        "    raise NotImplementedError('Divide the signal variance by the noise variance.')\n"
        "\ncheck_snr(snr)\n"
    )


def test_strip_without_hint_uses_the_default():
    out = exercises.strip_solutions("x = 1\n# BEGIN SOLUTION\ny = 2\n# END SOLUTION\n")
    assert out == f"x = 1\nraise NotImplementedError({exercises.DEFAULT_HINT!r})\n"


@pytest.mark.parametrize(("source", "problem"), [
    ("# BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n# END SOLUTION\n", "without BEGIN"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n", "inside another block"),
])
def test_unpaired_markers_are_reported(source, problem):
    with pytest.raises(exercises.MarkerError, match=problem):
        exercises.strip_solutions(source, where="solutions/01_x.ipynb, cell 3")


def _notebook(source, outputs=()):
    return {"cells": [{"cell_type": "code", "source": source.splitlines(keepends=True),
                       "outputs": list(outputs), "execution_count": 3, "metadata": {}},
                      {"cell_type": "markdown", "source": ["# BEGIN SOLUTION is text here"],
                       "metadata": {}}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_build_and_check_round_trip(tmp_path, capsys, monkeypatch):
    (tmp_path / "solutions").mkdir()
    solution = _notebook(SOLUTION_CELL, outputs=[{"output_type": "stream", "name": "stdout", "text": "ok"}])
    (tmp_path / "solutions" / "01_demo.ipynb").write_text(json.dumps(solution))
    assert [p.name for p in exercises.stale(tmp_path)] == ["01_demo.ipynb"]
    assert [p.name for p in exercises.build(tmp_path)] == ["01_demo.ipynb"]
    assert exercises.stale(tmp_path) == [] and exercises.build(tmp_path) == []

    built = json.loads((tmp_path / "exercises" / "01_demo.ipynb").read_text())
    code, markdown = built["cells"]
    assert code["outputs"] == [] and code["execution_count"] is None
    assert "return alpha_bar" not in "".join(code["source"])
    assert markdown["source"] == ["# BEGIN SOLUTION is text here"]  # markdown is left alone

    # An edited solution makes the exercise stale, and the CLI says which one.
    solution["cells"][0]["source"].append("print('changed')\n")
    (tmp_path / "solutions" / "01_demo.ipynb").write_text(json.dumps(solution))
    monkeypatch.setattr("sdcourse.config.REPO_ROOT", tmp_path)
    assert cli.main(["exercises", "check"]) == 1
    assert "exercises/01_demo.ipynb" in capsys.readouterr().out
    assert cli.main(["exercises", "build", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"changed": ["exercises/01_demo.ipynb"]}
    assert cli.main(["exercises", "check", "--json"]) == 0


def test_orphaned_exercise_is_stale(tmp_path):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "09_gone.ipynb").write_text("{}")
    assert [p.name for p in exercises.stale(tmp_path)] == ["09_gone.ipynb"]
