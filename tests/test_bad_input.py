"""Every case of the bad-input corpus (tests/bad_input_cases.py) ends clearly (issue 19).

A clear error names the parameter (or the option) and the fix; a case that expects a result gets
the correct one. ``bench/bad_input.py`` prints the same cases as a table (clear / vague / cryptic /
hang / silent) for a tree where some fail.
"""

from __future__ import annotations

import pytest

from sdcourse import config, data
from tests.bad_input_cases import CASES, make_context
from tests.helpers.bad_input import run_case


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    patch = pytest.MonkeyPatch()
    patch.setenv("SDCOURSE_HOME", str(tmp / "home"))
    patch.setattr(data, "_announced", set())
    context = make_context(tmp)
    patch.setattr(config, "CHECKPOINTS_DIR", type(config.CHECKPOINTS_DIR)(context["shipped"]))
    yield context
    patch.undo()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_ends_clearly(case, ctx):
    outcome, detail = run_case(case, ctx)
    assert outcome == "clear", f"{case.name}: {outcome}: {detail}"


def test_corpus_covers_every_cli_command():
    commands = {c.call[0] for c in CASES if isinstance(c.call, list)}
    assert {"sample", "evaluate", "train", "generate", "prefetch"} <= commands
