"""Classify what sdcourse does with one bad input: clear / vague / cryptic / hang / silent.

A case either expects an error (``names``: the words the message must contain, usually the
parameter) or a correct result (``check(result)`` is True). ``classify`` runs it in this process
with a SIGALRM timeout, so a hang is caught and reported rather than waited for.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
from dataclasses import dataclass, field

from sdcourse import cli

CLASSES = ("clear", "vague", "cryptic", "hang", "silent")
CLEAR_ERRORS = (ValueError,)  # validate's errors, CheckpointError, CorruptMNISTFile, ModelNotAvailable's kin


class Hang(Exception):
    pass


@dataclass
class Case:
    name: str
    call: object  # ctx -> result; or a list of CLI words (with {placeholders} from ctx)
    names: tuple[str, ...] = ()  # an error is expected, its message naming all of these
    check: object = None  # or a correct result: check(result, ctx) is True
    timeout: float = 20.0
    extra: dict = field(default_factory=dict)


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as stop:  # argparse: exit 2 with its message
            code = stop.code if isinstance(stop.code, int) else 1
        except Hang:
            raise
        except Exception as err:  # noqa: BLE001 - escaped the command: the student sees a traceback
            return 1, f"Traceback (escaped the command): {type(err).__name__}: {err}"
    return code, err.getvalue()


def _alarm(signum, frame):
    raise Hang()


def classify(case: Case, ctx: dict) -> tuple[str, str]:
    """(class, detail) of what ``case`` does."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, case.timeout)
    try:
        if isinstance(case.call, list):
            code, message = _cli([w.format(**ctx) for w in case.call])
            if case.check is not None:
                if "Traceback" in message:
                    return "cryptic", message[-300:]
                ok = code == 0 and case.check(ctx)
                return ("clear" if ok else "silent"), f"exit {code}: {message[-300:]}"
            if code == 0:
                return "silent", "exit 0"
            if "Traceback" in message:
                return "cryptic", message[-300:]
            named = all(n.lower() in message.lower() for n in case.names)
            return ("clear" if named else "vague"), f"exit {code}: {message.strip()[-300:]}"
        result = case.call(ctx)
    except Hang:
        return "hang", f"> {case.timeout} s"
    except CLEAR_ERRORS as err:
        if case.check is not None:
            return "silent", f"expected a result, got {type(err).__name__}: {err}"
        named = all(n.lower() in str(err).lower() for n in case.names)
        return ("clear" if named else "vague"), f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - any other exception is a traceback for the student
        return "cryptic", f"{type(err).__name__}: {str(err)[:300]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if case.check is not None:
        return ("clear" if case.check(result, ctx) else "silent"), repr(result)[:200]
    return "silent", f"returned {repr(result)[:200]}"


def run_case(case: Case, ctx: dict) -> tuple[str, str]:
    """``classify`` after the case's preliminary command (``extra['before']``), in ``extra['env']``."""
    if "before" in case.extra:
        _cli([w.format(**ctx) for w in case.extra["before"]])
    env = {k: v.format(**ctx) for k, v in case.extra.get("env", {}).items()}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return classify(case, ctx)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
