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
import mmap
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._errors import closed_error
from .._scratch import ScratchFile
from ._base import FileLayout, Storage

if TYPE_CHECKING:
    from .._diskimage import DiskImage

__all__ = ["MappedStorage", "truncated_error"]

#: Bytes of strided rows announced to the kernel ahead of reading them.
PREFETCH_BYTES = 16 << 20


def truncated_error(path: Path, size: int, needed: int) -> OSError:
    """The error for a file shorter than its pixels need."""
    return OSError(
        errno.EIO,
        f"{str(path)!r} is truncated: it has {size} bytes but its pixels need "
        f"{needed}; it was changed by another program since it was opened. "
        "Close the image and open the file again",
        str(path),
    )


def bytes_of(array: np.ndarray) -> memoryview:
    """A writable byte view of a C-contiguous array (for pread / pwrite)."""
    return memoryview(array).cast("B")  # type: ignore[arg-type]


class MappedStorage(Storage):
    """The pixels of one file, mapped: ``array`` is a numpy view (t, c, z, y, x).

    ``base`` is the ``np.memmap`` the view was taken from (its offset gives
    the file offset of pixel (0, 0, 0, 0, 0)); ``scratch`` the scratch file
    when this library made the file (it is deleted when the storage is
    closed or dropped).
    """

    is_mapped: ClassVar[bool] = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        array: np.ndarray,
        *,
        base: np.memmap,
        writable: bool = False,
        scratch: ScratchFile | None = None,
    ) -> None:
        if array.ndim != 5:
            raise ValueError(f"expected a 5D (t, c, z, y, x) array, got {array.shape}")
        if any(s < 0 for s in array.strides):
            raise ValueError("negative strides are not supported")
        self.path = Path(path)
        self._array: np.ndarray | None = array
        self.shape = tuple(int(n) for n in array.shape)  # type: ignore[assignment]
        self.file_dtype = array.dtype
        self.file_offset = int(base.offset) + (
            array.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        )
        self.strides = tuple(int(s) for s in array.strides)
        self.scratch = scratch
        self._writable = writable
        self._fds: dict[str, int] = {}
        self._fd_lock = threading.Lock()
        self.bytes_read = 0
        self._base: np.memmap | None = base
        self._finalizer = weakref.finalize(
            self, _release, scratch, self._fds, self._fd_lock
        )

    # --- the contract ----------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._array is None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            raise closed_error(self.path)
        return self._array

    @property
    def writable(self) -> bool:
        return self._writable

    def describe(self) -> str:
        return "uncompressed, memory-mapped"

    def close(self) -> None:
        self._array = None
        self._base = None  # the map holds a descriptor of the file
        self._finalizer()

    def reference(self, image: DiskImage) -> tuple[Callable[..., Any], tuple]:
        ref = (
            str(self.path), self.file_offset, self.shape, self.strides,
            self.file_dtype.str, image.kind, image.spacing, image.unit, image.rgb,
        )  # fmt: skip
        return (reopen_mapped, ref)

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

    # --- file descriptors ------------------------------------------------
    def fd(self, write: bool = False) -> int:
        """A file descriptor for pread/pwrite, opened on first use."""
        if self.closed:
            raise closed_error(self.path)
        key = "w" if write else "r"
        with self._fd_lock:
            if self._array is None:  # closed by another thread meanwhile
                raise closed_error(self.path)
            fd = self._fds.get(key)
            if fd is None:
                if self.scratch is not None:
                    fd = os.dup(self.scratch.fd)
                else:
                    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC
                    fd = os.open(self.path, flags)
                if not write and hasattr(os, "posix_fadvise"):
                    # Display reads strided rows: read-ahead would read far
                    # more than asked for.
                    with contextlib.suppress(OSError):
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
                self._fds[key] = fd
            return fd

    def offset_of(self, t: int, c: int, z: int, y: int, x: int) -> int:
        """File offset of pixel (t, c, z, y, x)."""
        st = self.strides
        return (
            self.file_offset
            + t * st[0] + c * st[1] + z * st[2] + y * st[3] + x * st[4]
        )  # fmt: skip

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
        mapping = getattr(self._base, "_mmap", None)
        if mapping is not None and hasattr(mmap, "MADV_RANDOM"):
            with contextlib.suppress(OSError, ValueError):
                mapping.madvise(mmap.MADV_RANDOM)

    def prefetch_rows(
        self, t: int, c: int, z: int, y0: int, ny: int, x0: int, nx: int
    ) -> None:
        """Ask the kernel to read rows ``y0 .. y0+ny-1``, columns ``x0 ..
        x0+nx-1`` of plane (t, c, z) at once (nothing if already cached)."""
        if ny < 2 or nx < 1 or self.strides[4] != self.file_dtype.itemsize:
            return
        span = nx * self.strides[4]
        prefetch(
            self.fd(), self.offset_of(t, c, z, y0, x0), span, self.strides[3], ny,
            bytearray(span),
        )  # fmt: skip

    def file_layout(self) -> FileLayout:
        t, c, z, y, x = self.strides
        return FileLayout(self.path, self.file_offset, self.file_dtype, (t, c, z, y, x))

    def read_box(self, ranges: Sequence[range]) -> np.ndarray:
        """The box ``ranges`` (unit-step ranges over t, c, z, y, x), native order.

        A box of whole rows is one ``preadv`` per plane, straight into the
        result: no SIGBUS if the file shrinks (an ``OSError`` instead).  A
        box of partial rows (a tile) is copied from the memory map after
        checking that the file still holds all of it: a ``pread`` per row
        would release and retake the GIL hundreds of thousands of times per
        GiB, which makes threads convoy (measured 2x slower than a filter
        itself).  Only a file truncated during the few milliseconds of that
        copy could still raise SIGBUS.
        """
        out = np.empty([len(r) for r in ranges], dtype=self.file_dtype)
        if out.size == 0:
            return out.astype(self.dtype)
        st, item = self.strides, self.file_dtype.itemsize
        rt, rc, rz, ry, rx = ranges
        whole_rows = (
            len(rx) == self.shape[4] and st[4] == item and st[3] == len(rx) * item
        )
        fd = self.fd()
        if not whole_rows:
            last = self.offset_of(rt[-1], rc[-1], rz[-1], ry[-1], rx[-1]) + item
            size = os.fstat(fd).st_size
            if size < last:
                raise truncated_error(self.path, size, last)
            out[...] = self.array[tuple(slice(r.start, r.stop) for r in ranges)]
        else:
            for i, t in enumerate(rt):
                for j, c in enumerate(rc):
                    for k, z in enumerate(rz):
                        base = self.offset_of(t, c, z, ry.start, rx.start)
                        pread_exactly(fd, self.path, base, bytes_of(out[i, j, k]))
        self.bytes_read += out.nbytes
        return out.astype(self.dtype, copy=False)

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


def read_strided(
    fd: int, path: Path, first: int,
    ny: int, row_step: int, nx: int, col_step: int, file_dtype: np.dtype,
) -> tuple[np.ndarray, int]:  # fmt: skip
    """``ny`` rows of ``nx`` pixels from ``fd``: pixel (j, i) at byte
    ``first + j * row_step + i * col_step``; returns (pixels in native byte
    order, bytes read).

    Dense rows are read straight into the result; rows close together as
    one block; strided rows one by one, announced to the kernel ahead
    (:func:`prefetch`).  OSError (naming ``path``) if the file ends first.
    """
    out = np.empty((ny, nx), dtype=file_dtype.newbyteorder("="))
    if ny == 0 or nx == 0:
        return out, 0
    item = file_dtype.itemsize
    row_span = (nx - 1) * col_step + item
    block_span = (ny - 1) * row_step + row_span
    dense = col_step == item and row_step == nx * item
    if dense and file_dtype == out.dtype:
        return out, pread_exactly(fd, path, first, bytes_of(out))
    if row_step <= 2 * row_span and block_span <= (256 << 20):
        buf = bytearray(block_span)
        done = pread_exactly(fd, path, first, buf)
        out[...] = np.ndarray(
            (ny, nx), file_dtype, buffer=buf, strides=(row_step, col_step)
        )
        return out, done
    buf = bytearray(row_span)
    window = max(1, PREFETCH_BYTES // row_span)
    done = 0
    for j in range(ny):
        if j % window == 0:
            prefetch(
                fd, first + j * row_step, row_span, row_step, min(window, ny - j), buf
            )
        done += pread_exactly(fd, path, first + j * row_step, buf)
        out[j] = np.ndarray((nx,), file_dtype, buffer=buf, strides=(col_step,))
    return out, done


def pread_exactly(fd: int, path: Path, offset: int, buf: bytearray | memoryview) -> int:
    """Fill ``buf`` from ``offset``; OSError naming ``path`` if the file ends
    first.  Returns the bytes read."""
    view = memoryview(buf)
    done = 0
    while done < len(buf):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise truncated_error(path, os.fstat(fd).st_size, offset + len(buf))
        done += got
    return done


def prefetch(
    fd: int, offset: int, span: int, step: int, n: int, probe: bytearray
) -> None:
    """Ask the kernel to start reading ``n`` rows of ``span`` bytes.

    Strided rows read one by one wait for the disk once per row; announced
    together (``POSIX_FADV_WILLNEED``) they are fetched in parallel: 3-5x
    faster from a cold cache, the same bytes read.  Skipped when the first
    and last rows are already in the page cache (a non-blocking read of
    them succeeds), where the announcements would only cost time.
    """
    if not hasattr(os, "posix_fadvise") or n < 2:
        return
    if hasattr(os, "RWF_NOWAIT"):
        try:
            if all(
                os.preadv(fd, [probe], offset + k * step, os.RWF_NOWAIT) == span
                for k in (0, n - 1)
            ):
                return
        except OSError:  # EAGAIN: not cached; EOPNOTSUPP: cannot tell
            pass
    with contextlib.suppress(OSError):
        for k in range(n):
            os.posix_fadvise(fd, offset + k * step, span, os.POSIX_FADV_WILLNEED)


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


def reopen_mapped(
    path: str,
    file_offset: int,
    shape: tuple[int, ...],
    strides: tuple[int, ...],
    dtype: str,
    kind: str,
    spacing: tuple[float, float, float],
    unit: str | None,
    rgb: bool,
) -> DiskImage:
    """Map a file again from a pickled reference (read-only, never deleted)."""
    from .._diskimage import DiskImage

    file_dtype = np.dtype(dtype)
    span = sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
    span += file_dtype.itemsize
    try:
        base = np.memmap(
            path, dtype=np.uint8, mode="r", offset=file_offset, shape=(span,)
        )
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot open disk image {path!r} here (pid {os.getpid()}): no such "
            "file. Every process that works on a disk image must see its file "
            "at the same path: put the disk-image directory on a file system "
            "shared by all workers (set_disk_image_dir)",
            path,
        ) from exc
    array = np.ndarray(shape, dtype=file_dtype, buffer=base, strides=strides)
    storage = MappedStorage(path, array, base=base)
    return DiskImage(
        path, storage, kind=kind, spacing=tuple(spacing), unit=unit, rgb=rgb
    )
