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
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import numbers
import os
import queue
import secrets
import sys
import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from .._diskimage import DiskImage, Steps, new_disk_image
from .._geometry import Geometry
from .._io import _read_box, _Source
from ..storage.mapped import MappedStorage

__all__ = [
    "BLOCK_BYTES",
    "BoxReader",
    "Cancelled",
    "Run",
    "block_grid",
    "choose_chunks",
    "execute",
    "map_tasks",
    "reduce_tasks",
    "stats",
]

#: Input bytes per block of an operation without a halo (pointwise).
BLOCK_BYTES = 16 << 20
#: Input bytes per block (before the halo) of a filter with a halo.
HALO_BLOCK_BYTES = 64 << 20
#: Columns of a block of a filter with a halo (when rows are longer).
TILE_X = 1024
#: Seconds a cancelled terminal command's run waits for its blocks in flight
#: before it removes its output (Ctrl+C, SIGTERM stop within a second).
CANCEL_WAIT = 0.5

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
class BoxReader:
    """Reads boxes of one input: a disk image by its read path, or an array.

    Picklable: a :class:`DiskImage` pickles as a reference to its file
    (:meth:`DiskImage.__reduce__`), so a cluster worker reads the file
    itself; an in-memory array travels with the task.
    """

    def __init__(self, image: Any, token: str) -> None:
        self.token = token
        self.image = image if isinstance(image, DiskImage) else None
        self.source = None if self.image is not None else _Source(image)
        self.shape = shape_of(image)

    def read(self, box: Sequence[tuple[int, int]]) -> np.ndarray:
        """Pixels of ``box`` ((start, stop) over t, c, z, y, x), 5D."""
        _check_cancel(self.token)
        key = tuple(slice(int(a), int(b)) for a, b in box)
        if self.image is None:
            assert self.source is not None
            block = np.asarray(self.source.block(key))
        elif self.image.is_mapped:
            block = read_tile(self.image, key)
        else:  # decoded lazily: through the image's chunk cache
            block = _read_box(self.image, key)
        _count("bytes_read", block.nbytes)
        return block


def block_grid(
    shape: Sequence[int], chunks: Sequence[int]
) -> list[tuple[tuple[int, int], ...]]:
    """The boxes of ``chunks`` that tile ``shape``, in C order (file order)."""
    axes = [
        [(a, min(n, a + c)) for a in range(0, n, c)]
        for n, c in zip(shape, chunks, strict=True)
    ]
    return [tuple(box) for box in itertools.product(*axes)]


def read_tile(image: DiskImage, key: Any) -> np.ndarray:
    """A box of a mapped image (unit-step slices over t, c, z, y, x).

    See :meth:`MappedStorage.read_box`; other steps go plane by plane.
    """
    ranges = []
    for k, n in zip(
        tuple(key) + (slice(None),) * (5 - len(key)), image.shape, strict=True
    ):
        start, stop, step = k.indices(n) if isinstance(k, slice) else (k, k + 1, 1)
        if step != 1:
            return _read_box(image, key)
        ranges.append(range(start, max(start, stop)))
    storage = image.storage
    assert isinstance(storage, MappedStorage)
    return storage.read_box(ranges)


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
def user_blocks(block_shape: Any) -> tuple[int, int, int] | None:
    """A caller's ``block_shape`` (x, y, z) as (z, y, x), or None for none.

    Raises ValueError unless it is 3 whole numbers >= 1.
    """
    if block_shape is None:
        return None
    if (
        isinstance(block_shape, str)
        or not isinstance(block_shape, Sequence)
        or len(block_shape) != 3
        or any(
            isinstance(n, bool)
            or not isinstance(n, (numbers.Integral, np.integer))
            or n < 1
            for n in block_shape
        )
    ):
        raise ValueError(
            f"block_shape must be 3 whole numbers >= 1 (x, y, z), got {block_shape!r}"
        )
    bx, by, bz = (int(n) for n in block_shape)
    return bz, by, bx


def choose_chunks(
    shape: Sequence[int],
    itemsize: int,
    depth: Sequence[int] = (0, 0, 0, 0, 0),
    block_bytes: int | None = None,
) -> tuple[int, int, int, int, int]:
    """Block shape over (t, c, z, y, x) from the file layout and the halo.

    Blocks hold one t and one c.  Without a halo they are whole rows,
    whole planes, then several planes, about :data:`BLOCK_BYTES` each (x
    is fastest on disk: one read per plane).  With a halo they are tiles
    of :data:`HALO_BLOCK_BYTES`: z as deep as a cube of that size (all of
    it for most stacks, so no halo in z), then :data:`TILE_X` columns and
    as many rows as fit.  The halo's share of the work stays small, and
    scipy's filters run 2-3x faster on such tiles than on whole rows of
    2048 or 4096 pixels, whose power-of-two stride aliases in the CPU
    cache on the y pass.  A block is never thinner than its halo.
    """
    _t, _c, z, y, x = (int(n) for n in shape)
    dz, dy, dx = (int(d) for d in depth[2:])
    halo = bool(dz or dy or dx)
    if block_bytes is None:
        block_bytes = HALO_BLOCK_BYTES if halo else BLOCK_BYTES
    voxels = max(1, block_bytes // itemsize)
    if not halo:
        if x >= voxels:
            return (1, 1, 1, 1, voxels)
        cy = min(y, voxels // x)
        cz = max(1, min(z, voxels // (cy * x)))
        return (1, 1, cz, cy, x)
    cz = 1
    if dz and z > 1:
        cz = min(z, max(1, 2 * dz, round(voxels ** (1 / 3))))
    plane = max(1, voxels // cz)  # voxels of a block in y and x
    cx = x if not dx or x <= TILE_X * 3 // 2 else TILE_X
    cy = min(y, max(1, 2 * dy, plane // cx))
    return (1, 1, cz, cy, cx)


# --- writing -------------------------------------------------------------
class BlockWriter:
    """Writes blocks into a disk image's file by path (``pwrite``).

    Picklable (a path and a layout), so cluster workers write their blocks
    themselves.  The file is opened per block: no descriptor is shared
    with the thread that may delete the file on cancel.
    """

    def __init__(self, image: DiskImage, token: str) -> None:
        storage = image.storage
        if not isinstance(storage, MappedStorage):
            raise TypeError(f"{image!r} is not a mapped file: it cannot be written")
        self.path = str(image.path)
        self.offset = storage.file_offset
        self.shape = image.shape
        self.dtype = storage.file_dtype
        self.strides = storage.strides
        self.token = token
        expected = self.dtype.itemsize
        for axis in (4, 3, 2, 1, 0):
            if self.shape[axis] > 1 and self.strides[axis] != expected:
                raise ValueError(f"{self.path!r} is not stored in C order")
            expected *= self.shape[axis]

    def write(self, location: Sequence[tuple[int, int]], block: np.ndarray) -> int:
        """Write ``block`` at ``location`` ((start, stop) per axis).

        Through a memory map of the output, made for this block and
        dropped after it: the output is a scratch file whose space was
        reserved when it was made (no SIGBUS on a full disk) and that no
        other program truncates, and a map writes tiles of partial rows
        at memory speed where a ``pwrite`` per row would not.  The map is
        never kept: a deleted output's space is freed at once.
        """
        _check_cancel(self.token)
        key = tuple(slice(int(a), int(b)) for a, b in location)
        try:
            target = np.memmap(
                self.path,
                dtype=self.dtype,
                mode="r+",
                offset=self.offset,
                shape=self.shape,
            )
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
            target[key] = block
        finally:
            mm = getattr(target, "_mmap", None)
            del target
            if mm is not None:
                with contextlib.suppress(BufferError, ValueError):
                    mm.close()
        nbytes = int(np.prod([b - a for a, b in location])) * self.dtype.itemsize
        _count("bytes_written", nbytes)
        _count("blocks_written", 1)
        report(self.token, nbytes)
        return nbytes


_PAD_MODES = {"reflect": "symmetric", "nearest": "edge", "periodic": "wrap"}


def _map_block(
    readers: Sequence[BoxReader],
    fn: Callable[..., np.ndarray],
    box: Sequence[tuple[int, int]],
    depth: Sequence[int],
    boundary: Any,
    writer: BlockWriter,
) -> int:
    """Read ``box`` of each input with its halo, apply ``fn``, write the core.

    At the image's edges the halo is what ``boundary`` makes of it
    ("none": no halo there, ``fn`` handles the edge itself, as scipy's
    ``mode`` does).
    """
    shape = readers[0].shape
    ext = [
        (max(0, a - d), min(n, b + d))
        for (a, b), d, n in zip(box, depth, shape, strict=True)
    ]
    blocks = [r.read(ext) for r in readers]
    before = [a - e0 for (a, _), (e0, _) in zip(box, ext, strict=True)]
    if boundary != "none":
        pads = [
            (d - (a - e0), d - (e1 - b))
            for (a, b), (e0, e1), d in zip(box, ext, depth, strict=True)
        ]
        if any(p for pair in pads for p in pair):
            if boundary in _PAD_MODES:
                mode: Any = _PAD_MODES[boundary]
                blocks = [np.pad(b, pads, mode=mode) for b in blocks]
            else:
                blocks = [
                    np.pad(b, pads, mode="constant", constant_values=boundary)
                    for b in blocks
                ]
            before = [b + p for b, (p, _) in zip(before, pads, strict=True)]
    result = np.asarray(fn(*blocks))
    core = result[
        tuple(slice(f, f + (b - a)) for f, (a, b) in zip(before, box, strict=True))
    ]
    return writer.write(box, core)


def map_tasks(
    readers: Sequence[BoxReader],
    fn: Callable[..., np.ndarray],
    chunks: Sequence[int],
    writer: BlockWriter,
    depth: Sequence[int] = (0, 0, 0, 0, 0),
    boundary: Any = "none",
) -> tuple[list[Any], list[int]]:
    """One independent task per block: read it (with its halo), compute,
    write.  No task depends on another, so memory is one block per thread
    whatever the size of the image; the halo is read twice (a few %)."""
    import dask

    task = dask.delayed(_map_block, pure=False)
    itemsize = np.dtype(writer.dtype).itemsize
    tasks, sizes = [], []
    for box in block_grid(readers[0].shape, chunks):
        tasks.append(task(readers, fn, box, depth, boundary, writer))
        sizes.append(math.prod(b - a for a, b in box) * itemsize)
    return tasks, sizes


def _reduce_block(
    reader: BoxReader, fn: Callable[[np.ndarray], Any], box: Sequence[tuple[int, int]]
) -> Any:
    block = reader.read(box)
    value = fn(block)
    report(reader.token, block.nbytes)
    return value


def reduce_tasks(
    reader: BoxReader, fn: Callable[[np.ndarray], Any], chunks: Sequence[int]
) -> tuple[list[Any], list[int]]:
    """One task per block computing ``fn(block)`` (a small result, e.g. a
    histogram), and the bytes each one reads."""
    import dask

    task = dask.delayed(_reduce_block, pure=False)
    itemsize = np.dtype(readers_dtype(reader)).itemsize
    tasks, sizes = [], []
    for box in block_grid(reader.shape, chunks):
        tasks.append(task(reader, fn, box))
        sizes.append(math.prod(b - a for a, b in box) * itemsize)
    return tasks, sizes


def readers_dtype(reader: BoxReader) -> np.dtype:
    if reader.image is not None:
        return np.dtype(reader.image.dtype)
    assert reader.source is not None
    image = reader.source.data
    return np.dtype(image.dtype)


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

    def compute() -> None:
        try:
            outcome["value"] = dask.compute(
                *tasks, scheduler="threads", num_workers=workers
            )
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
    from .._cluster import completed  # fails after a while with no worker

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


def new_output(geometry: Geometry, what: str, like: Any = None) -> DiskImage:
    """A scratch disk image for a result, with the spacing of ``like``."""
    output = new_disk_image(geometry, what=what)
    if isinstance(like, DiskImage):
        output.spacing = like.spacing
        output.unit = like.unit
    return output
