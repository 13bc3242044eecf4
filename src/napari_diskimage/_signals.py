"""SIGTERM and SIGHUP cancel a command as Ctrl+C does.

A batch scheduler ends a job at its time limit with SIGTERM (SLURM, PBS,
``timeout``), a closed terminal sends SIGHUP; Python's default for both is
to die at once, leaving the run's scratch file and the save's temporary
file behind.  Inside :func:`cancel_on_signals` both raise
:class:`Terminated`, a :class:`KeyboardInterrupt`, in the main thread: the
very path a Ctrl+C takes through the step generators (``run_steps`` throws
it into the run, whose ``finally`` sets its cancel flag, waits for its
blocks and deletes its output; a distributed run cancels its futures), so
nothing is left and the command exits with ``128 + signal``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Terminated", "cancel_on_signals", "exit_status"]

#: The signals that cancel a command, where the platform has them.
SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM or SIGHUP arrives."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"received {signal.Signals(signum).name}")

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def exit_status(exc: KeyboardInterrupt) -> int:
    """A shell's exit status for a command stopped by ``exc``: 128 + the
    signal's number (130 for Ctrl+C, 143 for SIGTERM, 129 for SIGHUP)."""
    if isinstance(exc, Terminated):
        return 128 + exc.signum
    return 128 + int(signal.SIGINT)


@contextlib.contextmanager
def cancel_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` while inside.

    Only the first signal raises: a second one (a scheduler repeating
    itself) must not interrupt the clean-up the first one started.  Does
    nothing outside the main thread (Python delivers signals there only).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if fired:
            return
        fired.append(signum)
        raise Terminated(signum)

    previous = {}
    for sig in SIGNALS:
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
