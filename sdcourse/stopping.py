"""Ctrl-C and SIGTERM during a long run: finish the step, save, and say how to continue.

``with graceful_stop() as stop:`` turns SIGINT and SIGTERM into ``stop.requested = True`` (the
previous handlers come back on exit); the training loop checks it after each step, writes its
checkpoint and raises ``Interrupted``, which the command line turns into the resume command and
exit status 130 (the shell's code for "ended by Ctrl-C"). A second signal stops at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a run ended by Ctrl-C


class Interrupted(Exception):
    """A run stopped by a signal after saving; ``step`` is where the saved checkpoint stands."""

    def __init__(self, step: int, path):
        super().__init__(f"interrupted at step {step}; saved {path}")
        self.step, self.path = step, path


class StopFlag:
    requested: bool = False


@contextlib.contextmanager
def graceful_stop():
    """Within the block, the first SIGINT/SIGTERM sets ``flag.requested``; a second one raises."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
