"""The block-wise engine: dask graphs from disk images into a new disk image.

An operation is a dask array (``dask.array.map_overlap`` / ``map_blocks``
over the inputs) whose blocks are written, as they are computed, into a
new scratch disk image.  Nothing here schedules work: dask does, with its
threaded scheduler on this machine or, when a ``distributed.Client`` is
active (dask's convention), on that cluster.

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
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import queue
import secrets
import sys
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import numpy as np

from .._diskimage import DiskImage, Steps, new_disk_image
from .._geometry import Geometry
from .._io import _read_box

__all__ = [
    "BLOCK_BYTES",
    "Cancelled",
    "Run",
    "as_dask",
    "choose_chunks",
    "execute",
    "stats",
]

#: Input bytes per block (before the halo), the default block size.
BLOCK_BYTES = 16 << 20

# Per-process counters, read by tests and benchmarks (also in cluster
# workers, through ``client.run(stats)``).
_STATS = {"bytes_read": 0, "bytes_written": 0, "blocks_written": 0}
_STATS_LOCK = threading.Lock()

# Runs in progress in this process, by token: cancel flags and progress
# queues.  Absent in a cluster worker (no progress from there; the futures
# report it).
_RUNS: dict[str, Run] = {}


def stats() -> dict[str, int]:
    """This process's engine counters: bytes read and written, blocks."""
    with _STATS_LOCK:
        return dict(_STATS)


def _count(key: str, n: int) -> None:
    with _STATS_LOCK:
        _STATS[key] += n


class Cancelled(Exception):
    """Raised inside blocks of a run that was cancelled."""


def report(token: str, nbytes: int) -> None:
    """A block of run ``token`` is done (a no-op in a cluster worker)."""
    run = _RUNS.get(token)
    if run is not None:
        run.report(nbytes)


def _check_cancel(token: str) -> None:
    run = _RUNS.get(token)
    if run is not None and run.cancel_event.is_set():
        raise Cancelled(f"run {token} was cancelled")


# --- reading -------------------------------------------------------------
class BlockReader:
    """Array-like over a disk image for ``dask.array.from_array``.

    ``__getitem__`` reads a box of (t, c, z, y, x) through the image's
    read path.  Pickles as the image's reference (see
    :meth:`DiskImage.__reduce__`): workers reopen the file.
    """

    ndim = 5

    def __init__(self, image: DiskImage, token: str) -> None:
        self.image = image
        self.token = token
        self.shape = image.shape
        self.dtype = np.dtype(image.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        _check_cancel(self.token)
        block = _read_box(self.image, key)
        _count("bytes_read", block.nbytes)
        return block


def as_dask(image: Any, chunks: tuple[int, ...], token: str, index: int = 0) -> Any:
    """A 5D (t, c, z, y, x) dask array of ``image`` with ``chunks``.

    A :class:`DiskImage` is read through :class:`BlockReader`; other
    array-likes (numpy, dask, zarr) of 1 to 5 axes are right-aligned.
    """
    import dask.array as da

    if isinstance(image, DiskImage):
        if image.closed:
            raise ValueError(f"disk image {str(image.path)!r} is closed")
        reader = BlockReader(image, token)
        return da.from_array(
            reader,
            chunks=chunks,
            lock=False,
            asarray=False,
            name=f"ndi-read-{token}-{index}",
            meta=np.empty((0,) * 5, dtype=reader.dtype),
        )
    arr = image if isinstance(image, da.Array) else da.asarray(image)
    pad = 5 - arr.ndim
    if pad:
        arr = arr.reshape((1,) * pad + tuple(arr.shape))
    return arr.rechunk(chunks)


def shape_of(image: Any) -> tuple[int, int, int, int, int]:
    """(t, c, z, y, x) shape of a disk image or array-like of 1 to 5 axes."""
    if isinstance(image, DiskImage):
        return image.shape
    if not (hasattr(image, "shape") and hasattr(image, "dtype")):
        raise TypeError(f"expected a DiskImage or an array, got {type(image).__name__}")
    return Geometry.from_shape(tuple(image.shape), image.dtype).shape


def name_of(image: Any) -> str:
    if isinstance(image, DiskImage):
        return repr(str(image.path))
    return f"an in-memory {type(image).__name__}"


# --- blocks --------------------------------------------------------------
def choose_chunks(
    shape: Sequence[int],
    itemsize: int,
    depth: Sequence[int] = (0, 0, 0, 0, 0),
    block_bytes: int = BLOCK_BYTES,
) -> tuple[int, int, int, int, int]:
    """Block shape over (t, c, z, y, x) from the file layout.

    Blocks hold whole rows (x fastest on disk: a block is a few long
    contiguous reads), one t and one c, and about ``block_bytes`` of
    input.  Without a halo in z and y they are whole planes, then several;
    with one, as many planes as rows, which keeps the halo's share small.
    A block is never thinner than its halo.
    """
    _t, _c, z, y, x = (int(n) for n in shape)
    dz, dy, dx = (int(d) for d in depth[2:])
    row = x * itemsize
    if row >= block_bytes:  # a row alone fills a block: split the row
        cx = max(1, block_bytes // itemsize, 2 * dx)
        return (1, 1, 1, 1, min(x, cx))
    rows = max(1, block_bytes // row)
    if dz == 0 or z == 1:
        cy = min(y, rows)
        cz = max(1, min(z, rows // cy))
    else:
        side = max(1, int(math.sqrt(rows)))
        cz = min(z, side)
        cy = min(y, max(1, rows // cz))
        if cy == y:
            cz = min(z, max(1, rows // y))
    cz = min(z, max(cz, dz))
    cy = min(y, max(cy, dy))
    return (1, 1, cz, cy, x)


# --- writing -------------------------------------------------------------
class BlockWriter:
    """Writes blocks into a disk image's file by path (``pwrite``).

    Picklable (a path and a layout), so cluster workers write their blocks
    themselves.  The file is opened per block: no descriptor is shared
    with the thread that may delete the file on cancel.
    """

    def __init__(self, image: DiskImage, token: str) -> None:
        self.path = str(image.path)
        self.offset = image._file_offset
        self.shape = image.shape
        self.dtype = image._file_dtype
        self.strides = image._strides
        self.token = token
        expected = self.dtype.itemsize
        for axis in (4, 3, 2, 1, 0):
            if self.shape[axis] > 1 and self.strides[axis] != expected:
                raise ValueError(f"{self.path!r} is not stored in C order")
            expected *= self.shape[axis]

    def write(self, location: Sequence[tuple[int, int]], block: np.ndarray) -> int:
        """Write ``block`` at ``location`` ((start, stop) per axis)."""
        _check_cancel(self.token)
        data = np.ascontiguousarray(block, dtype=self.dtype)
        starts = [int(a) for a, _ in location]
        _t, _c, _z, y, x = self.shape
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                errno.ENOENT,
                f"cannot write into disk image {self.path!r} from process "
                f"{os.getpid()}: no such file. It was removed (the run was "
                "cancelled), or this worker does not see the disk-image "
                "directory: put it on a file system shared by all workers",
                self.path,
            ) from exc
        try:
            bt, bc, bz, by, bx = data.shape
            if bx == x and by == y:  # whole planes: one write per (t, c)
                for i, j in np.ndindex(bt, bc):
                    self._pwrite(
                        fd, data[i, j], (starts[0] + i, starts[1] + j, starts[2], 0, 0)
                    )
            elif bx == x:  # whole rows: one write per plane
                for i, j, k in np.ndindex(bt, bc, bz):
                    self._pwrite(
                        fd,
                        data[i, j, k],
                        (starts[0] + i, starts[1] + j, starts[2] + k, starts[3], 0),
                    )
            else:
                for i, j, k, m in np.ndindex(bt, bc, bz, by):
                    self._pwrite(
                        fd,
                        data[i, j, k, m],
                        (
                            starts[0] + i,
                            starts[1] + j,
                            starts[2] + k,
                            starts[3] + m,
                            starts[4],
                        ),
                    )
        finally:
            os.close(fd)
        _count("bytes_written", data.nbytes)
        _count("blocks_written", 1)
        report(self.token, data.nbytes)
        return data.nbytes

    def _pwrite(self, fd: int, part: np.ndarray, at: Sequence[int]) -> None:
        offset = self.offset + sum(
            int(i) * int(s) for i, s in zip(at, self.strides, strict=True)
        )
        view = memoryview(np.ascontiguousarray(part)).cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)


def _store_block(block: np.ndarray, writer: BlockWriter, block_info: Any = None):
    location = block_info[0]["array-location"]
    n = writer.write(location, block)
    return np.full((1,) * block.ndim, n, dtype=np.int64)


def store_tasks(result: Any, writer: BlockWriter) -> tuple[list[Any], list[int]]:
    """One dask task per block of ``result`` that writes it, and the bytes
    each one writes."""
    itemsize = np.dtype(writer.dtype).itemsize
    sizes = [math.prod(shape) * itemsize for shape in itertools.product(*result.chunks)]
    stored = result.map_blocks(
        _store_block,
        writer,
        dtype=np.int64,
        chunks=tuple((1,) * len(c) for c in result.chunks),
        name=f"ndi-store-{writer.token}",
        meta=np.empty((0,) * result.ndim, dtype=np.int64),
    )
    return list(stored.to_delayed().ravel()), sizes


def _reduce_block(
    block: np.ndarray, fn: Callable[[np.ndarray], Any], token: str
) -> Any:
    _check_cancel(token)
    value = fn(np.asarray(block))
    report(token, block.nbytes)
    return value


def reduce_tasks(
    array: Any, fn: Callable[[np.ndarray], Any], token: str
) -> tuple[list[Any], list[int]]:
    """One task per block of ``array`` computing ``fn(block)`` (small
    results, e.g. a histogram), and the bytes each one reads."""
    import dask

    itemsize = array.dtype.itemsize
    blocks = list(array.to_delayed().ravel())
    sizes = [math.prod(s) * itemsize for s in itertools.product(*array.chunks)]
    reduce = dask.delayed(_reduce_block, pure=True)
    return [reduce(b, fn, token) for b in blocks], sizes


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

    def report(self, nbytes: int) -> None:
        """Called (in any thread of this process) when a block was written."""
        self._reports.put(nbytes)

    def cancel(self) -> None:
        self.cancel_event.set()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return self.steps()

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
            if not ok and self.output is not None:
                self.output.close()

    def execute(
        self, tasks: list[Any], task_bytes: Sequence[int], weight: float = 1.0
    ) -> Generator:
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


def execute(
    run: Run, tasks: list[Any], task_bytes: Sequence[int], weight: float = 1.0
) -> Generator:
    """See :meth:`Run.execute`."""
    client = active_client()
    if client is not None:
        return (yield from _execute_distributed(run, tasks, task_bytes, weight, client))
    return (yield from _execute_threads(run, tasks, weight))


def _execute_threads(run: Run, tasks: list[Any], weight: float) -> Generator:
    import dask

    outcome: dict[str, Any] = {}

    def compute() -> None:
        try:
            outcome["value"] = dask.compute(*tasks, scheduler="threads")
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc
        finally:
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
        if thread.is_alive():  # cancelled: stop the blocks, wait for them
            run.cancel_event.set()
            thread.join()
    if "error" in outcome:
        raise _user_error(outcome["error"], run)
    return [np.asarray(v) for v in outcome["value"]]


def _execute_distributed(
    run: Run, tasks: list[Any], task_bytes: Sequence[int], weight: float, client: Any
) -> Generator:
    from distributed import as_completed

    futures = client.compute(tasks)
    order = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    try:
        for future in as_completed(futures):
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
        exc.add_note(
            f"(in a block of {run.what}; the output file was removed and the "
            "inputs are unchanged)"
        )
    return exc


def new_output(geometry: Geometry, what: str, like: Any = None) -> DiskImage:
    """A scratch disk image for a result, with the spacing of ``like``."""
    output = new_disk_image(geometry, what=what)
    if isinstance(like, DiskImage):
        output.spacing = like.spacing
        output.unit = like.unit
    return output
