"""Reading and writing the blocks of a run, and the dask tasks doing it.

Inputs are read through their storage's ``read_box`` (``pread`` for a
mapped file, chunk decoding for a compressed TIFF: a file that shrinks
gives an ``OSError``, never SIGBUS); outputs are written by path where
their storage's ``file_layout()`` says the pixels lie, so cluster workers
read and write the files themselves and no pixels travel through the
scheduler.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import math
import mmap
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._diskimage import DiskImage, new_disk_image
from .._errors import closed_error
from .._geometry import Geometry
from ..io.stream import Source
from ..io.zarr_output import chunk_writer
from ..storage._pread import truncated_error
from ._blocks import block_grid
from ._checks import name_of, shape_of
from ._engine import check_cancel, count, report
from ._out import output_image

__all__ = [
    "BlockWriter",
    "BoxReader",
    "map_tasks",
    "new_output",
    "reduce_tasks",
]


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
        self.source = None if self.image is not None else Source(image)
        self.shape = shape_of(image)
        #: The input in messages (its file, or the kind of array).
        self.name = name_of(image)

    def read(self, box: Sequence[tuple[int, int]]) -> np.ndarray:
        """Pixels of ``box`` ((start, stop) over t, c, z, y, x), 5D, in
        native byte order: the storage's ``read_box`` (``pread`` of a
        mapped file's rows, the chunk cache of a compressed TIFF ...)."""
        check_cancel(self.token)
        if self.image is None:
            assert self.source is not None
            key = tuple(slice(int(a), int(b)) for a, b in box)
            block = np.asarray(self.source.block(key))
        else:
            if self.image.closed:
                raise closed_error(self.image.path)
            ranges = [range(int(a), int(b)) for a, b in box]
            rows = _read_rows(self.image, ranges)
            block = self.image.storage.read_box(ranges) if rows is None else rows
        count("bytes_read", block.nbytes)
        return block

    @property
    def dtype(self) -> np.dtype:
        """The pixel type of the blocks read."""
        if self.image is not None:
            return np.dtype(self.image.dtype)
        assert self.source is not None
        return np.dtype(self.source.data.dtype)


#: Largest ratio of the bytes a plane's span of rows holds to the bytes of
#: the box's partial rows in it, for :func:`_read_rows`.
SPAN_RATIO = 16


def _read_rows(image: DiskImage, ranges: Sequence[range]) -> np.ndarray | None:
    """A box of partial rows of a raw file, read plane by plane as the
    file's span of its rows (one ``preadv`` per plane: the box's part of
    each row into the result, the rest of the row into a discarded buffer),
    on a descriptor of its own told not to read ahead; ``None`` when the
    box is whole rows, the file is not one C-ordered run, or the span holds
    over :data:`SPAN_RATIO` x the box's bytes.

    Why: a box of partial rows read from the file's memory map faults its
    pages in with the kernel's read-around (``read_ahead_kb``: 8 MiB here)
    and under a memory cap those pages are dropped before the next block
    reads them: the capped watershed test (49 x 1309 x 1309, 320 MiB) read
    62 GB from the disk for ~1.2 GB of files.
    """
    layout = image.storage.file_layout()
    rt, rc, rz, ry, rx = ranges
    shape = image.shape
    if layout is None or len(rx) == shape[4] or any(r.step != 1 for r in ranges):
        return None
    dtype, st = np.dtype(layout.dtype), layout.strides
    item = dtype.itemsize
    row = shape[4] * item
    if (
        st[4] != item
        or st[3] != row
        or len(ry) * row > SPAN_RATIO * len(ry) * len(rx) * item
    ):
        return None
    out = np.empty([len(r) for r in ranges], dtype=dtype)
    want, gap = len(rx) * item, row - len(rx) * item
    junk = memoryview(bytearray(gap))
    fd = os.open(layout.path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for i, t in enumerate(rt):
            for j, c in enumerate(rc):
                for k, z in enumerate(rz):
                    plane = memoryview(out[i, j, k]).cast("B")
                    for y0 in range(0, len(ry), _IOV_ROWS):
                        y1 = min(len(ry), y0 + _IOV_ROWS)
                        buffers = []
                        for y in range(y0, y1):
                            buffers.append(plane[y * want : (y + 1) * want])
                            if y < len(ry) - 1:
                                buffers.append(junk)
                        at = layout.offset_of(t, c, z, ry.start + y0, rx.start)
                        size = sum(len(b) for b in buffers)
                        if os.preadv(fd, buffers, at) != size:
                            raise truncated_error(
                                layout.path, os.fstat(fd).st_size, at + size
                            )
    finally:
        os.close(fd)
    return out.astype(image.dtype, copy=False)


#: Rows per ``preadv`` (two buffers a row; IOV_MAX is 1024 on Linux).
_IOV_ROWS = 500


# --- writing -------------------------------------------------------------
class BlockWriter:
    """Writes blocks into a disk image's file by path (``pwrite``).

    Picklable (a path and a layout), so cluster workers write their blocks
    themselves.  The file is opened per block: no descriptor is shared
    with the thread that may delete the file on cancel.
    """

    def __init__(self, image: DiskImage, token: str) -> None:
        self.token = token
        self.shape = image.shape
        self.dtype = np.dtype(image.dtype)
        #: Set when the output is a Zarr store (``out=``): chunks by path.
        self.chunks = chunk_writer(image)
        if self.chunks is not None:
            return
        layout = image.storage.file_layout()
        if layout is None:
            raise TypeError(
                f"{image!r} is not stored as one uncompressed run of a file: "
                "blocks cannot be written into it"
            )
        self.path = str(layout.path)
        self.offset = layout.offset
        self.dtype = layout.dtype
        self.strides = layout.strides
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
        check_cancel(self.token)
        if self.chunks is not None:
            whole = self.chunks.write(location, np.asarray(block, dtype=self.dtype))
            return self._done(location, whole)
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
        self._fetch(target, location)
        try:
            for part in _slabs(block):
                # a cancel stops a block between slabs: a block's write
                # behind a busy disk (dirty-page throttling) takes seconds
                check_cancel(self.token)
                target[key][part] = block[part]
        finally:
            mm = getattr(target, "_mmap", None)
            del target
            if mm is not None:
                with contextlib.suppress(BufferError, ValueError):
                    mm.close()
        return self._done(location, True)

    def _fetch(self, target: np.memmap, location: Sequence[tuple[int, int]]) -> None:
        """Pages of a box of partial rows: asked of the disk as each plane's
        span (``POSIX_FADV_WILLNEED``), and the map's faults told not to
        read around (``MADV_RANDOM``).  The kernel's read-around of a
        fault (``read_ahead_kb``: 8 MiB here) filled a capped run's memory
        with pages of other blocks: the capped watershed test read ~40 GB
        from the disk for ~1.2 GB of files."""
        (t0, t1), (c0, c1), (z0, z1), (y0, y1), (x0, x1) = location
        mm = getattr(target, "_mmap", None)
        if x1 - x0 == self.shape[4] or mm is None or not hasattr(mmap, "MADV_RANDOM"):
            return
        st = self.strides
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            for t, c, z in itertools.product(
                range(t0, t1), range(c0, c1), range(z0, z1)
            ):
                start = self.offset + t * st[0] + c * st[1] + z * st[2] + y0 * st[3]
                end = start + (y1 - 1 - y0) * st[3] + x1 * st[4]
                os.posix_fadvise(fd, start + x0 * st[4], end - start - x0 * st[4],
                                 os.POSIX_FADV_WILLNEED)  # fmt: skip
            mm.madvise(mmap.MADV_RANDOM)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _done(self, location: Sequence[tuple[int, int]], whole_chunks: bool) -> int:
        nbytes = int(np.prod([b - a for a, b in location])) * self.dtype.itemsize
        count("bytes_written", nbytes)
        count("blocks_written", 1)
        if not whole_chunks:
            count("partial_chunk_writes", 1)
        report(self.token, nbytes)
        return nbytes


#: Bytes a block's write puts into the output between two cancel checks.
SLAB_BYTES = 8 << 20


def _slabs(block: np.ndarray) -> list[tuple[slice, ...]]:
    """``block`` cut along its first axis longer than 1 into slabs of about
    :data:`SLAB_BYTES` (the whole block when it is smaller)."""
    for axis, n in enumerate(block.shape[:-1]):
        if n > 1:
            step = max(1, SLAB_BYTES * n // max(1, block.nbytes))
            head = (slice(None),) * axis
            return [(*head, slice(i, i + step)) for i in range(0, n, step)]
    return [(slice(None),)]


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
    itemsize = reader.dtype.itemsize
    tasks, sizes = [], []
    for box in block_grid(reader.shape, chunks):
        tasks.append(task(reader, fn, box))
        sizes.append(math.prod(b - a for a, b in box) * itemsize)
    return tasks, sizes


def new_output(geometry: Geometry, what: str, like: Any = None) -> DiskImage:
    """A scratch disk image for a result, with the metadata of ``like``
    (spacing, unit; shown in colour only if it keeps ``like``'s RGB pixels),
    or the result's image in the OME-Zarr store of ``out=`` (``_out``)."""
    in_store = output_image(geometry, like)
    if in_store is not None:
        return in_store
    output = new_disk_image(geometry, what=what)
    if isinstance(like, DiskImage):
        rgb = like.rgb and (geometry.dtype, geometry.shape[1]) == (
            like.dtype,
            like.shape[1],
        )
        output.meta = dataclasses.replace(
            like.meta, kind="raw", shown_series=(0,), rgb=rgb
        )
    return output
