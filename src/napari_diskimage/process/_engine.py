"""The block-wise engine: dask tasks from disk images into a new disk image.

An operation is one dask task per output block: read the block of each
input with the halo it needs, compute, write the result into a new
scratch disk image.  Tasks do not depend on each other (each reads its own
halo rather than taking it from neighbouring tasks, as
``dask.array.map_overlap`` does), so memory holds one block per thread
whatever the size or width of the image: ``map_overlap`` keeps a band of
neighbouring chunks alive, which measured 1 GiB of memory on a 1 GiB
volume.  The halo is read twice, a few per cent more reads.  Nothing here
schedules work: dask does, with its threaded scheduler on this machine or,
when a ``distributed.Client`` is active (dask's convention), on that
cluster.

* Inputs are read block by block through the image's own read path
  (``pread`` for a mapped file, chunk decoding for a compressed TIFF): a
  file that shrinks gives an ``OSError``, never SIGBUS.  A :class:`DiskImage`
  pickles as a reference (path, layout), so a cluster worker opens the file
  itself; no pixels travel through the scheduler.
* The output is written by path (``pwrite`` of whole rows), so workers on
  other machines write their blocks into the same file.  Its space is
  reserved when it is created: a full disk is an error before any work.
* Progress is counted in output bytes; cancelling (closing the step
  generator, or raising from ``progress``) stops the run within about one
  block's time and removes the output file.

This module runs the tasks and counts progress; ``_tasks`` reads and
writes blocks, ``_blocks`` plans them.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import sys
import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from .._diskimage import DiskImage
from .._steps import ProgressCallback, Steps, run_steps
from ._counters import Cancelled, count, stats

__all__ = [
    "CANCEL_WAIT",
    "Cancelled",
    "Run",
    "active_client",
    "count",
    "drive",
    "execute",
    "report",
    "stats",
]

#: Seconds a cancelled terminal command's run waits for its blocks in flight
#: before it removes its output (Ctrl+C, SIGTERM stop within a second).
CANCEL_WAIT = 0.5

# Runs in progress in this process, by token: cancel flags and progress
# queues.  Absent in a cluster worker (no progress from there; the futures
# report it).
_RUNS: dict[str, Run] = {}


def report(token: str, nbytes: int) -> None:
    """A block of run ``token`` is done (a no-op in a cluster worker)."""
    run = _RUNS.get(token)
    if run is not None:
        run.report(nbytes)


def check_cancel(token: str) -> None:
    """Raise :class:`Cancelled` in a block of run ``token`` once it was
    cancelled (a no-op in a cluster worker)."""
    run = _RUNS.get(token)
    if run is not None and run.cancel_event.is_set():
        raise Cancelled(f"run {token} was cancelled")


# --- running ---------------------------------------------------------------
def active_client() -> Any:
    """The active ``distributed.Client``, or None (dask's convention)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ValueError, ImportError):
        return None


class Run:
    """One operation writing a new scratch disk image, driven as steps.

    ``output`` exists (all zeros, its space reserved) as soon as the run is
    made, so a viewer can show it while it is written.  Iterating gives the
    ``(done_bytes, total_bytes)`` steps and returns ``output``; closing the
    iteration early (a cancel) or any failure closes ``output``, which
    deletes its file.  ``write_count`` of ``output`` grows as blocks land,
    so display caches of it are refreshed.
    """

    def __init__(
        self,
        output: DiskImage | None,
        plan: Callable[[Run], Steps],
        what: str,
        total: int,
    ) -> None:
        self.output = output
        self.what = what
        self.total = int(total)
        self.token = secrets.token_hex(8)
        self.cancel_event = threading.Event()
        self._plan = plan
        self._reports: queue.Queue[int] = queue.Queue()
        self.done = 0
        #: What a run found besides its output (e.g. ``n_labels``).
        self.info: dict[str, Any] = {}
        #: Close (delete) the output when the run fails or is cancelled.
        #: A viewer showing the output sets it False and closes the output
        #: itself once its layer is gone, so nothing draws a closed image.
        self.close_output_on_failure = True
        #: Seconds a cancelled run waits for the blocks in flight (None: until
        #: they end, so that nothing of the run outlives it).  A command that
        #: exits right after sets :data:`CANCEL_WAIT`.
        self.cancel_wait: float | None = None

    def report(self, nbytes: int) -> None:
        """Called (in any thread of this process) when a block was written."""
        self._reports.put(nbytes)

    def cancel(self) -> None:
        self.cancel_event.set()

    def __iter__(self) -> Steps:
        return self.steps()

    def then(
        self,
        finish: Callable[[Run], Steps],
        extra_bytes: int = 0,
        *,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """Follow the run's work with ``finish(run)``'s steps (what it
        returns becomes the run's result), ``extra_bytes`` more of
        progress; ``on_failure()`` when the work or ``finish`` fails or is
        cancelled.  (``out=`` finishes a run with the OME-Zarr's levels.)"""
        inner = self._plan
        self.total += int(extra_bytes)

        def plan(run: Run) -> Steps:
            ok = False
            try:
                yield from inner(run)
                result = yield from finish(run)
                ok = True
                return result
            finally:
                if not ok and on_failure is not None:
                    on_failure()

        self._plan = plan

    def steps(self) -> Steps:
        ok = False
        _RUNS[self.token] = self
        try:
            result = yield from self._plan(self)
            ok = True
            return self.output if result is None else result
        finally:
            self.cancel_event.set()  # stops blocks still running
            _RUNS.pop(self.token, None)
            if not ok and self.output is not None and self.close_output_on_failure:
                scratch = getattr(self.output.storage, "scratch", None)
                if self.cancel_wait is not None and scratch is not None:
                    # a command that exits next: its name goes now, its
                    # space when the process has exited (never waited for)
                    scratch.release_at_exit()
                self.output.close()

    @property
    def image(self) -> DiskImage:
        """The output disk image (a run that has one)."""
        if self.output is None:
            raise AttributeError(f"{self.what} has no output image")
        return self.output

    def execute(
        self, tasks: list[Any], task_bytes: Sequence[int], weight: float = 1.0
    ) -> Generator[tuple[int, int], None, list[Any]]:
        """Steps of computing ``tasks`` (dask delayed); returns their results.

        Progress advances by ``task_bytes[i] * weight`` as task ``i`` ends
        (here: reported by the task itself as it writes; on a cluster: as
        its future completes).  A run of several passes weighs each.
        """
        return execute(self, tasks, task_bytes, weight)

    def advance(self, nbytes: float) -> tuple[int, int]:
        self.done = min(self.total, self.done + int(nbytes))
        if self.output is not None:
            self.output.write_count += 1  # display caches: re-read
        return self.done, self.total


TaskSteps = Generator[tuple[int, int], None, list[Any]]


def execute(
    run: Run, tasks: list[Any], task_bytes: Sequence[int], weight: float = 1.0
) -> TaskSteps:
    """See :meth:`Run.execute`."""
    client = active_client()
    if client is not None:
        return (yield from _execute_distributed(run, tasks, task_bytes, weight, client))
    return (yield from _execute_threads(run, tasks, weight))


def _execute_threads(run: Run, tasks: list[Any], weight: float) -> TaskSteps:
    import dask

    outcome: dict[str, Any] = {}
    # One thread per core.  dask.compute called from a thread other than
    # the main one, without num_workers, makes a pool of cpu_count + 4
    # threads: blocks in flight (and memory) tripled on 2 cores.
    from dask.system import CPU_COUNT

    workers = dask.config.get("num_workers", None) or CPU_COUNT
    # The run's own pool of daemon threads.  dask's default pool (a
    # ThreadPoolExecutor) is joined when Python exits, so a cancelled
    # command waited there for its blocks in flight, which behind a disk
    # saturated by writeback took minutes (104 s seen); daemon threads
    # end with the process, and the output they were writing is already
    # deleted.
    from multiprocessing.pool import ThreadPool

    # dask's threaded scheduler itself, not its name: a name makes dask
    # import ``distributed`` to look for a client (~40 MiB and 0.3 s that a
    # run under a memory cap would carry; ``active_client`` looked already)
    from dask.threaded import get as threaded_get

    pool = ThreadPool(workers)

    def compute() -> None:
        try:
            outcome["value"] = dask.compute(*tasks, scheduler=threaded_get, pool=pool)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            if run.cancel_event.is_set():
                # dask returns at the first cancelled block: drop the blocks
                # still queued (each holds the images) and let the threads
                # end after their blocks in flight, here, in the background
                pool.terminate()
            else:
                pool.close()  # its threads end after their blocks in flight
            run.report(-1)  # wake the caller

    thread = threading.Thread(target=compute, name=f"ndi-{run.token}", daemon=True)
    thread.start()
    try:
        while True:
            n = run._reports.get()
            if n < 0:
                break
            yield run.advance(n * weight)
        while not run._reports.empty():  # reports queued after the end
            n = run._reports.get_nowait()
            if n >= 0:
                yield run.advance(n * weight)
    finally:
        cancelled = "value" not in outcome and "error" not in outcome
        if thread.is_alive() and cancelled:
            run.cancel_event.set()  # cancelled: stop the blocks
        # wait for the thread even when it is done: until it returns, its
        # frame holds the tasks, and with them the images' files.  A run
        # with ``cancel_wait`` set (a terminal command, which exits next)
        # waits only that long for the blocks in flight when cancelled (a
        # filter's block computes for seconds): they end in the background
        # without writing (the cancel flag), and the output goes at once
        thread.join(run.cancel_wait if cancelled else None)
    if "error" in outcome:
        raise _user_error(outcome["error"], run)
    return [np.asarray(v) for v in outcome["value"]]


def _execute_distributed(
    run: Run, tasks: list[Any], task_bytes: Sequence[int], weight: float, client: Any
) -> TaskSteps:
    from .._cluster._wait import completed  # fails after a while with no worker

    futures = client.compute(tasks)
    order = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    try:
        for future in completed(futures, client, run.cancel_event.is_set):
            value = future.result()  # raises the worker's exception
            i = order[future.key]
            results[i] = value
            yield run.advance(task_bytes[i] * weight)
    except BaseException as exc:
        client.cancel(futures)
        if isinstance(exc, Exception):
            raise _user_error(exc, run) from None
        raise
    return [np.asarray(v) for v in results]


def _user_error(exc: BaseException, run: Run) -> BaseException:
    """The exception of a failed block, with a note saying where it came from."""
    if isinstance(exc, Cancelled):
        return exc
    with contextlib.suppress(AttributeError, TypeError):
        exc.add_note(  # type: ignore[attr-defined]  # Python >= 3.11
            f"(in a block of {run.what}; the output file was removed and the "
            "inputs are unchanged)"
        )
    return exc


def drive(run: Run, progress: ProgressCallback | None) -> Any:
    """Drive ``run`` to its end; return its result."""
    return run_steps(iter(run), progress)
