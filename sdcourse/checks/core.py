"""What every exercise check shares: ``CheckFailed``, ``compare`` and the likely-cause machinery.

Every check follows one pattern (see ``forward_noising.check_add_noise``): for a few random trials,
build inputs with ``generator``, compute the reference, call the learner's function through
``call``, and hand both to ``compare`` together with the answers that typical mistakes would give.
``compare`` raises ``CheckFailed`` naming the first element that differs, the expected and the
received value, and the likely cause when the answer matches a known mistake. A passing check
prints one line (``passed``). Each check is wrapped by ``exercise(name)``, which records the
attempt (for ``hints.hint``) and ends a failure with where to find a hint.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

__all__ = ["CheckFailed", "attempted", "call", "compare", "exercise", "generator", "passed"]

attempted: set[str] = set()  # exercises whose check has run on an answer (not on the unfilled stub)


class CheckFailed(AssertionError):
    """The learner's answer differs from the reference; the message says where and why."""


def exercise(name: str) -> Callable:
    """Decorate ``check_<name>``: an answer that is not the unfilled stub (``NotImplementedError``)
    counts as an attempt, and a failure ends with the two hint levels of ``hints.hint``."""

    def wrap(check: Callable) -> Callable:
        @functools.wraps(check)
        def run(fn: Callable, *args, **kwargs):
            try:
                result = check(fn, *args, **kwargs)
            except NotImplementedError:
                raise
            except CheckFailed as err:
                attempted.add(name)
                raise CheckFailed(f"{err}\nStuck? checks.hint({name!r}) for what to think about, "
                                  f"checks.hint({name!r}, 2) for the recipe.") from err.__cause__
            attempted.add(name)
            return result

        return run

    return wrap


def compare(
    what: str,
    got,
    expected: Tensor,
    mistakes: Mapping[str, Tensor] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    context: str = "",
) -> None:
    """Raise ``CheckFailed`` unless ``got`` equals ``expected`` within tolerance.

    ``mistakes`` maps a description of a typical mistake to the value that mistake produces (or a
    tuple of values, one per valid way of writing the rest); when ``got`` matches one, the message
    names it as the likely cause.
    """
    where = f" ({context})" if context else ""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}{where}: expected a torch.Tensor, got {type(got).__name__}")
    got64, expected64 = got.detach().double().cpu(), expected.detach().double().cpu()
    if got.shape != expected.shape:
        message = f"{what}{where}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    elif torch.allclose(got64, expected64, atol=atol, rtol=rtol):
        return
    else:
        error = (got64 - expected64).abs().nan_to_num(float("inf"))
        index = tuple(int(i) for i in torch.nonzero(error == error.max())[0])
        message = (
            f"{what}{where}: element {list(index)} should be {expected64[index].item():.6g} "
            f"but is {got64[index].item():.6g} (max abs difference {error.max().item():.3g})"
        )
    for cause, wrong in (mistakes or {}).items():
        if any(_close(got64, candidate, atol, rtol) for candidate in (wrong if isinstance(wrong, tuple) else (wrong,))):
            message += f".\nLikely cause: {cause}"
            break
    raise CheckFailed(message)


def _close(got64: Tensor, wrong, atol: float, rtol: float) -> bool:
    wrong = torch.as_tensor(wrong).detach().double().cpu()
    return wrong.shape == got64.shape and torch.allclose(got64, wrong, atol=atol, rtol=rtol)


def call(fn: Callable, *args, what: str):
    """Call the learner's function, turning an exception into a ``CheckFailed`` that names it."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as err:
        raise CheckFailed(f"{what} raised {type(err).__name__}: {err}") from err


def generator(seed: int | None) -> torch.Generator:
    """A private generator for a check's inputs: fresh inputs each run unless ``seed`` is given.

    Seeded from the OS, so a check never touches (or reseeds) the learner's global RNG.
    """
    return torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(62))


def passed(what: str, trials: int) -> None:
    """Print the one line a passing check prints."""
    print(f"✓ {what}: matches the reference on {trials} random inputs.")
