"""The job every long tool runs: core steps in a worker thread, a napari
progress bar with Cancel, and a tool widget that owns Run / Cancel / status.

The core's long operations are generators of ``(done, total)`` steps
(copy, save, processing runs); :class:`StepsJob` drives one in a worker
thread, shows napari's progress bar (Cancel there too) and reports the
outcome as a notification.  :class:`JobTool` is the widget side: a tool
with a start button, a Cancel button and a status line, whose subclasses
only say how to start their job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, ClassVar

from magicgui.widgets import Container, PushButton
from napari.utils.progress import cancelable_progress
from superqt.utils import create_worker

from .._napari.notify import error_message, notify_error, show_info
from .._scratch import format_bytes
from .._steps import drive_steps
from ._common import NO_IMAGE_LAYER, status_label

__all__ = [
    "JobTool",
    "StepsJob",
    "cancel_all_jobs",
    "close_in_background",
    "start_save",
]

logger = logging.getLogger(__name__)


def _percent(done: int, total: int) -> int:
    return 100 if total <= 0 else min(100, int(100 * done / total))


class _CancelableProgress(cancelable_progress):
    """napari progress bar whose Cancel button (activity dock) cancels a job."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()


_CANCELLED = object()
#: The application property set once its quit cancels the running jobs.
_CANCEL_ON_QUIT = "napari_diskimage_cancel_on_quit"


def _drive(make_steps: Callable[[], Any], cancel: threading.Event) -> Generator:
    """Run core steps in the worker thread; stop (and clean up) on cancel."""
    return (yield from drive_steps(make_steps(), cancel, cancelled=_CANCELLED))


class StepsJob:
    """Runs a core step generator in a worker thread with progress and cancel.

    ``on_done(result)`` runs in the GUI thread when it succeeds; failure and
    cancellation are notified (the core has removed the partial file).

    Cancel releases the tool at once: the user is told, the progress bar
    goes and ``on_end`` runs right away (``released``), while the worker
    stops in the background, where blocks in flight (a filter's block, a
    write stuck behind a busy disk) may take seconds; the core removes the
    partial file when it stops, and ``done`` turns True then.
    """

    #: Jobs still running (see :func:`cancel_all_jobs`).
    running_jobs: ClassVar[set[StepsJob]] = set()

    def __init__(
        self,
        make_steps: Callable[[], Any],
        what: str,
        on_done: Callable[[Any], None] | None,
        on_end: Callable[[], None] | None = None,
        *,
        on_step: Callable[[tuple[int, int]], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
        cancelled_message: str = "its partial file is removed",
    ) -> None:
        self.what = what
        self.cancelled_message = cancelled_message
        self._on_done = on_done
        self._on_end = on_end
        self._on_step = on_step
        self._on_cancel = on_cancel
        self._cancel = threading.Event()
        self.cancelled = False
        #: Cancelled and handed back to the user; the worker may still run.
        self.released = False
        self.error: BaseException | None = None
        self.done = False
        self.pbar = _CancelableProgress(
            total=100, desc=what, cancel_callback=self.cancel
        )
        self.worker = create_worker(
            _drive,
            make_steps,
            self._cancel,
            _start_thread=False,
            _connect={
                "yielded": self._on_yield,
                "returned": self._on_returned,
                "errored": self._on_error,  # a notification, not a re-raise
                "finished": self._on_finished,
            },
        )

    def start(self) -> StepsJob:
        if not StepsJob.running_jobs:
            _cancel_on_quit()
        StepsJob.running_jobs.add(self)
        self.worker.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next step; its partial file is removed."""
        self._cancel.set()
        if self._on_cancel is not None:
            self._on_cancel()  # e.g. stop a run's blocks at once
        self._release()

    def _release(self) -> None:
        """Tell the user it is cancelled and give the tool back, without
        waiting for the worker (it removes the partial file as it stops)."""
        if self.done or self.released:
            return
        self.released = self.cancelled = True
        self.pbar.close()
        show_info(f"{self.what} cancelled; {self.cancelled_message}.")
        on_end = self._drop_callbacks()
        if on_end is not None:
            on_end()

    def _drop_callbacks(self) -> Callable[[], None] | None:
        """Forget the callbacks (they hold layers and images: a job kept by
        its widget must not keep a removed layer's file alive); returns
        ``on_end``."""
        on_end = self._on_end
        self._on_done = self._on_end = self._on_step = self._on_cancel = None
        return on_end

    @property
    def running(self) -> bool:
        """Running and not cancelled (a cancelled job's worker may still be
        stopping: see ``done``)."""
        return not self.done and not self.released

    def _on_yield(self, step: tuple[int, int]) -> None:
        if self.released:
            return
        done, total = step
        if self.pbar.n != _percent(done, total):
            self.pbar.update(_percent(done, total) - self.pbar.n)
        self.pbar.set_description(
            f"{self.what}: {format_bytes(done)} of {format_bytes(total)}"
        )
        if self._on_step is not None:
            self._on_step(step)

    def _on_returned(self, value: Any) -> None:
        if value is _CANCELLED:
            if not self.released:
                self.cancelled = True
                show_info(f"{self.what} cancelled; {self.cancelled_message}.")
            return
        if self.released:  # it ended before the cancel reached it
            show_info(f"{self.what} had already ended when it was cancelled.")
            return
        if self._on_done is None:
            return
        try:
            self._on_done(value)
        except Exception as exc:
            self.error = exc
            notify_error(self.what, exc)

    def _on_error(self, exc: BaseException) -> None:
        self.error = exc
        notify_error(self.what, exc)

    def _on_finished(self) -> None:
        self.done = True
        StepsJob.running_jobs.discard(self)
        self.pbar.close()
        on_end = self._drop_callbacks()  # None once released
        if on_end is not None:
            on_end()


def close_in_background(image: Any) -> threading.Thread:
    """Close ``image`` (a scratch image's file is deleted) in a daemon thread,
    so the GUI never waits for it; returns the thread.

    Freeing a large deleted file can block for minutes in the ``close`` that
    drops its last reference: on a file system mounted with ``discard``,
    ext4 discards its blocks synchronously, behind whatever the disk is
    doing (see :meth:`napari_diskimage._scratch.ScratchFile.release_at_exit`).
    The file's name goes first (a quick unlink), then its space.
    """

    def close() -> None:
        try:
            image.close()
        except Exception:  # never raised to a thread nobody joins
            logger.exception("closing %s failed", getattr(image, "path", image))

    thread = threading.Thread(target=close, name="napari-diskimage close", daemon=True)
    thread.start()
    return thread


def _cancel_on_quit() -> None:
    """Quitting napari cancels running jobs, so their partial files go."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None and not app.property(_CANCEL_ON_QUIT):
        app.aboutToQuit.connect(cancel_all_jobs)
        app.setProperty(_CANCEL_ON_QUIT, True)  # once per application


def cancel_all_jobs(timeout: float = 10.0) -> None:
    """Cancel running copies and saves and wait for their threads to end."""
    for job in list(StepsJob.running_jobs):
        job.cancel()
    deadline = time.monotonic() + timeout
    from qtpy.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    if pool is not None:
        pool.waitForDone(int(timeout * 1000))
    while StepsJob.running_jobs and time.monotonic() < deadline:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()
    StepsJob.running_jobs.clear()


def start_save(
    source: Any,
    path: Path,
    what: str,
    on_done: Callable[[Any], None],
    on_end: Callable[[], None] | None = None,
    byte_order: str = "<",
) -> StepsJob | None:
    """Start streaming ``source`` to ``path`` (:func:`napari_diskimage.iter_save`:
    atomic, progress, Cancel); None, with a notification, when ``path``'s
    suffix is refused (checked before any work)."""
    from ..io import save as _io

    try:
        _io.iter_save(source, path, byte_order).close()
    except ValueError as exc:
        notify_error(what, exc)
        return None

    def steps() -> Any:
        return _io.iter_save(source, path, byte_order)

    return StepsJob(steps, what, on_done, on_end).start()


class JobTool(Container):
    """A tool that starts a :class:`StepsJob`: start and Cancel buttons and a
    status line.  Subclasses implement :meth:`make_job` (return a started
    job, or None after telling the user why not) and may extend
    :meth:`job_ended`.

    When ``widgets`` starts with a layer drop-down (``layer``), a one-line
    hint under it says why the tool cannot act on the chosen layer
    (:meth:`unavailable_reason`), and the start button is disabled then.
    """

    def __init__(self, start_text: str, widgets: list[Any]) -> None:
        self.start_button = PushButton(text=start_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = status_label()
        self.hint = status_label()
        self.hint.visible = False
        super().__init__(
            widgets=[
                *widgets[:1],
                self.hint,
                *widgets[1:],
                self.start_button,
                self.cancel_button,
                self.status,
            ]
        )
        self.job: StepsJob | None = None
        self.start_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        layer = getattr(self, "layer", None)
        if layer is not None and hasattr(layer, "changed"):
            layer.changed.connect(self.fit_layer)
            self.fit_layer()

    def unavailable_reason(self) -> str:
        """Why the tool cannot act on the chosen layer ("" if it can)."""
        if getattr(self, "layer", None) is not None and self.layer.value is None:
            return NO_IMAGE_LAYER
        return ""

    def fit_layer(self, _value: Any = None) -> None:
        """Show the hint for the chosen layer; enable the start button."""
        reason = self.unavailable_reason()
        self.hint.value = reason
        self.hint.visible = bool(reason)
        self.start_button.enabled = not reason and not (
            self.job is not None and self.job.running
        )

    def make_job(self) -> StepsJob | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self, _value: Any = None) -> StepsJob | None:
        """Start the tool's job (as its button does); return it."""
        if self.job is not None and self.job.running:
            from .._napari.notify import show_warning

            show_warning(f"{self.job.what} is still running: wait or cancel it.")
            return None
        job = self.make_job()
        if job is None:
            return None
        self.job = job
        self.start_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = f"{job.what}..."
        return job

    def cancel(self, _value: Any = None) -> None:
        if self.job is not None:
            self.job.cancel()

    def job_ended(self) -> None:
        """Called in the GUI thread when the job has ended, however."""
        self.cancel_button.enabled = False
        self.start_button.enabled = not self.unavailable_reason()
        job = self.job
        if job is None:
            return
        if job.cancelled:
            self.status.value = f"cancelled; {job.cancelled_message}"
        elif job.error is not None:
            self.status.value = f"failed: {error_message(job.error)}"
        elif not self.status.value or self.status.value.endswith("..."):
            self.status.value = "done"
