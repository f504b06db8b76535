"""Every typical mistake of tests/helpers/mistakes.py is rejected with its likely cause; valid
variants pass; the DDPM off-by-one is caught for every seed; hints are tiered and wait for an attempt."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from sdcourse import checks
from sdcourse.checks import core, hints

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from mistakes import MISTAKES, VALID, _ddpm_step, _guided_eps, _guided_noise  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("name", "label", "fn", "cause"), MISTAKES, ids=[f"{m[0]}: {m[1]}" for m in MISTAKES])
def test_each_typical_mistake_gets_its_likely_cause(name, label, fn, cause, seed):
    with pytest.raises(checks.CheckFailed) as err:
        getattr(checks, f"check_{name}")(fn, seed=seed)
    message = str(err.value)
    assert "Likely cause:" in message or "the value is right, but" in message, message
    if cause is not None:
        assert re.search(cause, message), message


@pytest.mark.parametrize(("name", "label", "fn"), VALID, ids=[f"{v[0]}: {v[1]}" for v in VALID])
def test_valid_variants_pass(name, label, fn, capsys):
    getattr(checks, f"check_{name}")(fn)
    assert "✓" in capsys.readouterr().out


def test_the_papers_off_by_one_is_rejected_for_every_seed():
    off_by_one = _ddpm_step(noise_if=lambda t: t > 1)  # Algorithm 2's "z ~ N(0, I) if t > 1", 0-based t
    for seed in range(200):
        with pytest.raises(checks.CheckFailed, match="counts t from 1"):
            checks.check_ddpm_step(off_by_one, seed=seed, trials=1)  # even one trial still runs t = 0, T-1, 1


def test_lessons_04_and_08_agree_on_one_pass():
    with pytest.raises(checks.CheckFailed) as eps_err:
        checks.check_guided_eps(_guided_eps(two_calls=True))
    with pytest.raises(checks.CheckFailed) as noise_err:
        checks.check_guided_noise(_guided_noise(two_calls=True))
    for err in (eps_err, noise_err):
        assert checks.guidance.ONE_PASS_REASON in str(err.value)


def test_every_exercise_has_two_hint_levels():
    exercises = {n.removeprefix("check_") for n in checks.__all__ if n.startswith("check_")}
    assert set(hints.HINTS) == exercises
    for first, recipe in hints.HINTS.values():
        assert first and recipe and first != recipe


def test_the_recipe_waits_for_a_first_attempt(capsys, monkeypatch):
    monkeypatch.setattr(core, "attempted", set())
    monkeypatch.setattr(hints, "attempted", core.attempted)

    def stub(*args):
        raise NotImplementedError("Write your answer here.")

    with pytest.raises(NotImplementedError):
        checks.check_snr(stub)  # the unfilled exercise is not an attempt
    checks.hint("snr", 2)
    out = capsys.readouterr().out
    assert "Try it first" in out and hints.HINTS["snr"][1] not in out
    checks.hint("snr")
    assert capsys.readouterr().out.strip() == hints.HINTS["snr"][0]
    with pytest.raises(checks.CheckFailed, match=r"checks.hint\('snr'\).*checks.hint\('snr', 2\)"):
        checks.check_snr(lambda ab: (1 - ab) / ab)
    checks.hint("snr", 2)
    assert capsys.readouterr().out.strip() == hints.HINTS["snr"][1]


def test_hint_refuses_unknown_names_and_levels():
    with pytest.raises(ValueError, match="name must be one of"):
        checks.hint("ddpm_losss")
    with pytest.raises(ValueError, match="level must be 1"):
        checks.hint("ddpm_loss", 3)


def test_a_passing_answer_is_unchanged_by_the_hint_machinery(capsys):
    checks.check_snr(lambda ab: ab / (1 - ab), trials=2)
    assert capsys.readouterr().out.startswith("✓ snr")
