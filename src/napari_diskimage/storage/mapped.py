"""One uncompressed file, memory-mapped: RAW files, contiguous TIFFs and the
scratch files of copies and processing results.

The mapping gives ``array`` (a numpy view: slicing reads only what is
sliced) and napari's fast paths; every read of the core goes through
``pread`` instead (:meth:`MappedStorage.read_region`), so a file another
program truncates raises ``OSError`` rather than killing the process with
SIGBUS, and ``bytes_read`` counts what was read.  Writes use ``pwrite``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import mmap
import numbers
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from .._errors import closed_error
from .._files import check_byte_order, check_mode, check_readable, check_writable_file
from .._geometry import Geometry
from .._meta import ImageMeta
from .._scratch import ScratchFile
from ._base import FileLayout, Opened, Storage, check_present
from ._pread import (
    BLOCK_READ_BYTES,
    bytes_of,
    pread_exactly,
    prefetch,
    read_strided,
    truncated_error,
)

__all__ = [
    "MappedStorage",
    "map_file",
    "open_mapped",
    "open_raw",
    "open_scratch",
    "truncated_error",
]


class MappedStorage(Storage):
    """The pixels of one file, mapped: ``array`` is a numpy view (t, c, z, y, x).

    ``layout`` says where the pixels lie (:class:`FileLayout`); ``scratch``
    is the scratch file when this library made the file (it is deleted when
    the storage is closed or dropped).  ``mapped`` is the numpy view and the
    ``np.memmap`` it was taken from, when the opener mapped the file
    already; otherwise the file is mapped at the first use of ``array`` and
    opened at the first read (:meth:`from_state`).
    """

    is_mapped: ClassVar[bool] = True

    def __init__(
        self,
        layout: FileLayout,
        shape: Sequence[int],
        *,
        writable: bool = False,
        scratch: ScratchFile | None = None,
        mapped: tuple[np.ndarray, np.memmap] | None = None,
        reopened: bool = False,
    ) -> None:
        if len(shape) != 5:
            raise ValueError(f"expected a 5D (t, c, z, y, x) shape, got {shape}")
        if any(s < 0 for s in layout.strides):
            raise ValueError("negative strides are not supported")
        self.path = Path(layout.path)
        self.layout = layout
        self.shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
        self.file_dtype = np.dtype(layout.dtype)
        self.scratch = scratch
        self._writable = writable
        self._reopened = reopened
        self._array: np.ndarray | None = None
        self._base: np.memmap | None = None
        if mapped is not None:
            self._array, self._base = mapped
        self._closed = False
        self._fds: dict[str, int] = {}
        self._fd_lock = threading.Lock()
        self.bytes_read = 0
        self._finalizer = weakref.finalize(
            self, _release, scratch, self._fds, self._fd_lock
        )

    @classmethod
    def of_array(
        cls,
        path: str | os.PathLike[str],
        array: np.ndarray,
        base: np.memmap,
        *,
        writable: bool = False,
        scratch: ScratchFile | None = None,
    ) -> MappedStorage:
        """The storage of ``array``, a 5D view of the memory map ``base`` of
        the file ``path``."""
        if array.ndim != 5:
            raise ValueError(f"expected a 5D (t, c, z, y, x) array, got {array.shape}")
        offset = int(base.offset) + (
            array.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        )
        layout = FileLayout(
            Path(path),
            offset,
            array.dtype,
            tuple(int(s) for s in array.strides),  # type: ignore[arg-type]
        )
        return cls(
            layout, array.shape, writable=writable, scratch=scratch,
            mapped=(array, base),
        )  # fmt: skip

    # --- the contract ----------------------------------------------------
    @property
    def file_offset(self) -> int:
        """Byte offset of pixel (0, 0, 0, 0, 0) (see :meth:`file_layout`)."""
        return self.layout.offset

    @property
    def strides(self) -> tuple[int, int, int, int, int]:
        """Bytes per step of t, c, z, y, x in the file."""
        return self.layout.strides

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def array(self) -> np.ndarray:
        if self._closed:
            raise closed_error(self.path)
        if self._array is None:
            with self._fd_lock:
                if self._array is None:
                    self._array, self._base = self._map()
        return self._array

    def _map(self) -> tuple[np.ndarray, np.memmap]:
        """Map the file (a storage reopened from its state maps on first use)."""
        lay = self.layout
        span = sum((n - 1) * s for n, s in zip(self.shape, lay.strides, strict=True))
        span += self.file_dtype.itemsize
        try:
            base = np.memmap(
                self.path, dtype=np.uint8, mode="r+" if self._writable else "r",
                offset=lay.offset, shape=(span,),
            )  # fmt: skip
        except FileNotFoundError as exc:
            raise self._missing(exc) from exc
        array = np.ndarray(
            self.shape, dtype=self.file_dtype, buffer=base, strides=lay.strides
        )
        return array, base

    def _missing(self, exc: OSError) -> OSError:
        """A reopened file gone since unpickling: say what to do."""
        if not self._reopened:
            return exc
        try:
            check_present(self.path)
        except FileNotFoundError as missing:
            return missing
        return exc

    @property
    def writable(self) -> bool:
        return self._writable

    def describe(self) -> str:
        return "uncompressed, memory-mapped"

    def close(self) -> None:
        self._closed = True
        self._array = None
        self._base = None  # the map holds a descriptor of the file
        self._finalizer()

    def state(self) -> tuple:
        lay = self.layout
        return (str(lay.path), lay.offset, self.shape, lay.strides, self.file_dtype.str)

    @classmethod
    def from_state(cls, state: tuple) -> MappedStorage:
        path, offset, shape, strides, dtype = state
        layout = FileLayout(Path(path), int(offset), np.dtype(dtype), tuple(strides))
        check_present(path)  # a stat: nothing is opened before the first read
        return cls(layout, shape, reopened=True)

    def file_layout(self) -> FileLayout:
        return self.layout

    def byte_runs(
        self, order: tuple[int, ...], dtype: np.dtype
    ) -> list[tuple[Path, int, int]] | None:
        if self.file_dtype != dtype:
            return None
        expected = self.file_dtype.itemsize
        for axis in reversed(order):
            size = self.shape[axis]
            if size > 1 and self.strides[axis] != expected:
                return None
            expected *= size
        return [(self.path, self.file_offset, expected)]

    def read_cost(self, ny: int, sy: int, nx: int, sx: int) -> int:
        """As :func:`read_strided` reads: rows close together as one block."""
        item = self.file_dtype.itemsize
        s3, s4 = self.strides[3], self.strides[4]
        row_span = (nx - 1) * sx * s4 + item
        if ny <= 1:
            return row_span
        step = sy * s3
        block = (ny - 1) * step + row_span
        if step <= 2 * row_span and block <= BLOCK_READ_BYTES:
            return block
        return ny * row_span

    # --- file descriptors ------------------------------------------------
    def fd(self, write: bool = False) -> int:
        """A file descriptor for pread/pwrite, opened on first use."""
        if self.closed:
            raise closed_error(self.path)
        key = "w" if write else "r"
        with self._fd_lock:
            if self._closed:  # closed by another thread meanwhile
                raise closed_error(self.path)
            fd = self._fds.get(key)
            if fd is None:
                if self.scratch is not None:
                    fd = os.dup(self.scratch.fd)
                else:
                    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC
                    try:
                        fd = os.open(self.path, flags)
                    except FileNotFoundError as exc:
                        raise self._missing(exc) from exc
                if not write and hasattr(os, "posix_fadvise"):
                    # Display reads strided rows: read-ahead would read far
                    # more than asked for.
                    with contextlib.suppress(OSError):
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
                self._fds[key] = fd
            return fd

    def offset_of(self, t: int, c: int, z: int, y: int, x: int) -> int:
        """File offset of pixel (t, c, z, y, x)."""
        return self.layout.offset_of(t, c, z, y, x)

    # --- pixels ------------------------------------------------------------
    def write(self, t: int, c: int, z: int, y: int, x: int, value: np.generic) -> None:
        data = np.asarray(value, dtype=self.file_dtype).tobytes()
        offset = self.offset_of(t, c, z, y, x)
        fd = self.fd(write=True)
        # pwrite past the end would silently grow a file another program
        # truncated; refuse instead.
        size = os.fstat(fd).st_size
        if size < offset + len(data):
            raise truncated_error(self.path, size, offset + len(data))
        written = os.pwrite(fd, data, offset)
        if written != len(data):  # pragma: no cover - a one-pixel write
            raise OSError(errno.EIO, f"short write to {str(self.path)!r}")

    def flush(self) -> None:
        if self.closed:
            return
        with self._fd_lock:
            fds = list(self._fds.values())
        for fd in fds:
            with contextlib.suppress(OSError):
                os.fsync(fd)
        if self.scratch is not None:
            os.fsync(self.scratch.fd)

    def advise_random(self) -> None:
        """Map only the pages touched through :attr:`array`, without
        readahead (``MADV_RANDOM``).

        For views of partial rows of long rows (a paint window of a large
        plane): readahead would map whole rows, 8 x the window of a 32768
        pixel wide uint32 plane (measured: 1.3 GiB of mapped pages after five
        4096 x 4096 windows, against 340 MiB).  Page-at-a-time faults are
        slow from disk, so announce what will be read with
        :meth:`prefetch_rows` first.
        """
        if self._base is None:
            return  # not mapped yet: nothing read through the map
        mapping = getattr(self._base, "_mmap", None)
        if mapping is not None and hasattr(mmap, "MADV_RANDOM"):
            with contextlib.suppress(OSError, ValueError):
                mapping.madvise(mmap.MADV_RANDOM)

    def prefetch_rows(
        self, t: int, c: int, z: int, y0: int, y1: int,
        x0: int = 0, x1: int | None = None,
    ) -> None:  # fmt: skip
        """Ask the kernel to read rows ``y0 .. y1-1``, columns ``x0 .. x1-1``
        (all by default) of plane (t, c, z) at once (nothing if cached)."""
        ny = y1 - y0
        nx = (self.shape[4] if x1 is None else x1) - x0
        if ny < 2 or nx < 1 or self.strides[4] != self.file_dtype.itemsize:
            return
        span = nx * self.strides[4]
        prefetch(
            self.fd(), self.offset_of(t, c, z, y0, x0), span, self.strides[3], ny,
            bytearray(span),
        )  # fmt: skip

    def prefetch_planes_row(
        self, t: int, c: int, zs: range, y: int, x0: int = 0, x1: int | None = None
    ) -> None:
        """Ask the kernel to read row ``y`` (columns ``x0 .. x1-1``) of every
        plane ``zs`` at once: an XZ view, one row of each plane."""
        nx = (self.shape[4] if x1 is None else x1) - x0
        if len(zs) < 2 or nx < 1 or self.strides[4] != self.file_dtype.itemsize:
            return
        span = nx * self.strides[4]
        prefetch(
            self.fd(), self.offset_of(t, c, zs[0], y, x0), span,
            zs.step * self.strides[2], len(zs), bytearray(span),
        )  # fmt: skip

    def read_box(self, ranges: Sequence[range]) -> np.ndarray:
        """The box ``ranges`` (ranges over t, c, z, y, x), native byte order.

        A box of whole rows is one ``preadv`` per plane, straight into the
        result: no SIGBUS if the file shrinks (an ``OSError`` instead).  A
        box of partial rows (a tile) is copied from the memory map after
        checking that the file still holds all of it: a ``pread`` per row
        would release and retake the GIL hundreds of thousands of times per
        GiB, which makes threads convoy (measured 2x slower than a filter
        itself).  Only a file truncated during the few milliseconds of that
        copy could still raise SIGBUS.  Strided boxes read plane by plane
        (:meth:`read_region`).
        """
        if any(r.step != 1 for r in ranges[3:]):
            return super().read_box(ranges)
        out = np.empty([len(r) for r in ranges], dtype=self.file_dtype)
        if out.size == 0:
            return out.astype(self.dtype)
        st, item = self.strides, self.file_dtype.itemsize
        rt, rc, rz, ry, rx = ranges
        whole_rows = (
            len(rx) == self.shape[4] and st[4] == item and st[3] == len(rx) * item
        )
        fd = self.fd()
        self._announce_box(fd, rt, rc, rz, ry, rx)
        if not whole_rows:
            last = self.offset_of(rt[-1], rc[-1], rz[-1], ry[-1], rx[-1]) + item
            size = os.fstat(fd).st_size
            if size < last:
                raise truncated_error(self.path, size, last)
            out[...] = self.array[tuple(slice(r.start, r.stop, r.step) for r in ranges)]
        else:
            for i, t in enumerate(rt):
                for j, c in enumerate(rc):
                    for k, z in enumerate(rz):
                        base = self.offset_of(t, c, z, ry.start, rx.start)
                        pread_exactly(fd, self.path, base, bytes_of(out[i, j, k]))
        self.bytes_read += out.nbytes
        return out.astype(self.dtype, copy=False)

    def _announce_box(
        self, fd: int, rt: range, rc: range, rz: range, ry: range, rx: range
    ) -> None:
        """Ask the kernel to read every plane of a box of several planes at
        once (``POSIX_FADV_WILLNEED``): the file is opened without
        read-ahead (``POSIX_FADV_RANDOM``), so one ``preadv`` per plane (or
        page faults of the map, for a tile) waited for the disk once per
        plane.  A view cache's build read its blocks of 128 planes at
        85 MB/s (2 GiB, 512 MiB cap: 24 s of its 45 s), against 550 MB/s
        for ``cp``.  Each plane's part is announced whole when its rows
        are at most half gaps, row by row otherwise: only bytes it reads."""
        if len(rz) < 2 or not hasattr(os, "posix_fadvise"):
            return
        st, item = self.strides, self.file_dtype.itemsize
        row_span = (len(rx) - 1) * st[4] + item
        plane_span = (len(ry) - 1) * st[3] + row_span
        whole = st[3] <= 2 * row_span  # rows close together: one span a plane
        with contextlib.suppress(OSError):
            for t, c, z in itertools.product(rt, rc, rz):
                first = self.offset_of(t, c, z, ry.start, rx.start)
                if whole:
                    os.posix_fadvise(fd, first, plane_span, os.POSIX_FADV_WILLNEED)
                    continue
                for y in range(len(ry)):
                    os.posix_fadvise(
                        fd, first + y * ry.step * st[3], row_span,
                        os.POSIX_FADV_WILLNEED,
                    )  # fmt: skip

    def read_region(
        self, t: int, c: int, z: int,
        y0: int, ny: int, sy: int, x0: int, nx: int, sx: int,
    ) -> np.ndarray:  # fmt: skip
        if ny == 0 or nx == 0:
            return np.empty((ny, nx), dtype=self.dtype)
        st = self.strides
        out, nbytes = read_strided(
            self.fd(), self.path, self.offset_of(t, c, z, y0, x0),
            ny, sy * st[3], nx, sx * st[4], self.file_dtype,
        )  # fmt: skip
        self.bytes_read += nbytes
        return out


def _release(
    scratch: ScratchFile | None, fds: dict[str, int], lock: threading.Lock
) -> None:
    with lock:  # no descriptor opened by another thread while closing
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        fds.clear()
    if scratch is not None:
        scratch.release()


# --- openers ---------------------------------------------------------------
def map_file(
    path: Path,
    dtype: np.dtype,
    shape: tuple[int, ...],
    offset: int = 0,
    mode: str = "r",
    *,
    scratch: ScratchFile | None = None,
) -> MappedStorage:
    """The storage of a C-ordered (t, c, z, y, x) run of ``dtype`` pixels
    from byte ``offset`` of ``path``, mapped with ``mode``."""
    base = np.memmap(path, dtype=dtype, mode=mode, offset=offset, shape=shape)  # type: ignore[call-overload]
    return MappedStorage.of_array(
        path, base, base, writable=mode == "r+", scratch=scratch
    )


def open_scratch(scratch: ScratchFile, geometry: Geometry) -> Opened:
    """A writable storage over a freshly created scratch file (deleted when
    the storage is closed or dropped)."""
    dtype = geometry.dtype.newbyteorder("<")
    storage = map_file(scratch.path, dtype, geometry.shape, mode="r+", scratch=scratch)
    return Opened(storage, ImageMeta(kind="raw"), ())


def open_mapped(
    path: Path, array: np.ndarray, base: np.memmap, mode: str, meta: ImageMeta
) -> Opened:
    """An opener's result for ``array``, a (t, c, z, y, x) view of ``base``
    (e.g. a contiguous TIFF's pixels, axes rearranged)."""
    storage = MappedStorage.of_array(path, array, base, writable=mode == "r+")
    return Opened(storage, meta, ())


def open_raw(
    path: str | os.PathLike[str],
    geometry: Geometry | None = None,
    offset: int = 0,
    byte_order: str = "<",
    mode: str = "r",
) -> Opened:
    """Map a RAW file: pixels only, (t, c, z, y, x) order, x fastest, after
    ``offset`` bytes of header (see :func:`napari_diskimage.open_raw`)."""
    p = check_readable(path, "RAW file")
    mode = check_mode(mode)
    byte_order = check_byte_order(byte_order)
    if geometry is None:
        try:
            geometry = Geometry.from_filename(p.name)
        except ValueError as exc:
            raise ValueError(
                f"{exc}; or pass the geometry, e.g. "
                "open_raw(path, Geometry('uint16', size_x, size_y, size_z))"
            ) from None
    elif not isinstance(geometry, Geometry):
        raise TypeError(f"geometry must be a Geometry, got {geometry!r}")
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral):
        raise TypeError(f"offset must be an integer number of bytes, got {offset!r}")
    offset = int(offset)
    if offset < 0:
        raise ValueError(f"offset must be 0 or more bytes, got {offset}")
    if mode == "r+":
        check_writable_file(p)
    size = p.stat().st_size
    needed = offset + geometry.nbytes
    if size < needed:
        raise ValueError(
            f"{str(p)!r} is too small for its geometry: it has {size} bytes but "
            f"offset {offset} + {geometry} ({geometry.nbytes} bytes) needs "
            f"{needed} bytes; check the sizes, pixel type and header offset"
        )
    dtype = geometry.dtype.newbyteorder(byte_order)
    storage = map_file(p, dtype, geometry.shape, offset, mode)
    return Opened(storage, ImageMeta(kind="raw"), ())
