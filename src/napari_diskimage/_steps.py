"""Long operations as generators of ``(done_bytes, total_bytes)`` steps.

The same step generator drives a callback (:func:`run_steps`), a napari
worker thread with a cancel button and a terminal progress bar (both
through :func:`drive_steps`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator
from typing import Any

__all__ = ["ProgressCallback", "Steps", "drive_steps", "run_steps"]

#: ``progress(done_bytes, total_bytes)``; raise from it to cancel.
ProgressCallback = Callable[[int, int], Any]

#: Steps of a long operation: ``(done_bytes, total_bytes)``.
Steps = Generator[tuple[int, int], None, Any]


def drive_steps(
    steps: Steps, cancel: threading.Event | None = None, *, cancelled: Any = None
) -> Generator[tuple[int, int], None, Any]:
    """Yield the ``(done, total)`` steps of ``steps``; return its result.

    The one driver of the core's long operations: :func:`run_steps` (a
    callback), the napari widgets (a worker thread) and the command line
    (a terminal bar) all go through it.  When ``cancel`` is set it stops
    before the next step and returns ``cancelled``; an error raised because
    of the cancel (a run's blocks stop) also counts as cancelled.
    ``steps`` is always closed at the end, which removes the partial file
    of an operation that did not finish.
    """
    try:
        while True:
            if cancel is not None and cancel.is_set():
                return cancelled
            try:
                step = next(steps)
            except StopIteration as stop:
                return stop.value
            except Exception:
                if cancel is not None and cancel.is_set():
                    return cancelled
                raise
            yield step
    finally:
        steps.close()


def run_steps(steps: Steps, progress: ProgressCallback | None) -> Any:
    """Drive a generator of ``(done, total)`` steps; return its result.

    ``progress`` is called after each step; an exception raised by it
    (a cancel button, Ctrl+C) is thrown into the generator, which cleans up.
    """
    driver = drive_steps(steps)
    while True:
        try:
            step = next(driver)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            try:
                progress(*step)
            except BaseException as exc:
                # Let the operation clean up (remove its partial file), then
                # re-raise the caller's exception unchanged.
                with contextlib.suppress(BaseException):
                    steps.throw(exc)
                driver.close()
                raise
