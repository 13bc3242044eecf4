"""Streaming pixels out of an image: copy into a scratch disk image.

:func:`iter_copy` is a generator of ``(done_bytes, total_bytes)`` steps
whose return value is the copy; :func:`copy` drives it with an optional
``progress(done, total)`` callback.  Memory is bounded by one block
(``block_bytes``, by default :func:`block_size`) whatever the image size.
On any failure or cancellation the partial file is removed.

Pixels that are already contiguous in a file in the right byte order are
copied by the kernel (``os.copy_file_range``, what ``cp`` uses): no pixel
passes through this process.  :class:`Source` and :func:`write_pixels`
are shared with :mod:`.save` and processing.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .._diskimage import DiskImage, map_scratch
from .._errors import closed_error
from .._geometry import Geometry
from .._index import normalize_key
from .._scratch import create_scratch, format_bytes
from .._steps import ProgressCallback, Steps, run_steps
from ..storage._pread import bytes_of
from .atomic import full_error

__all__ = [
    "BLOCK_BYTES_ENV",
    "COPY_BLOCK_BYTES",
    "KERNEL_CHUNK",
    "Source",
    "block_size",
    "copy",
    "iter_copy",
    "kernel_copy",
    "read_box",
    "write_pixels",
]

#: Largest block of pixels a copy or save holds in memory at once, unless
#: the call gives ``block_bytes`` or the environment :data:`BLOCK_BYTES_ENV`.
COPY_BLOCK_BYTES = 32 << 20
#: Environment variable for the tools' copy and save block size in bytes
#: (e.g. 1048576: finer progress and a quicker cancel on a slow share).
BLOCK_BYTES_ENV = "NAPARI_DISKIMAGE_BLOCK_BYTES"
#: Bytes handed to the kernel per copy_file_range call (one progress step).
KERNEL_CHUNK = 128 << 20


class Source:
    """A 5D (t, c, z, y, x) read-only view of what is being copied or saved."""

    def __init__(self, image: Any, order: tuple[int, ...] = (0, 1, 2, 3, 4)):
        if isinstance(image, DiskImage):
            if image.closed:
                raise closed_error(image.path)
            self.disk_image: DiskImage | None = image
            self.data: Any = image.array
            self.name = str(image.path)
        else:
            self.disk_image = None
            data = image
            if not (hasattr(data, "shape") and hasattr(data, "dtype")):
                data = np.asarray(data)
            if not 1 <= len(data.shape) <= 5:
                raise ValueError(
                    f"cannot make a disk image of an array with shape "
                    f"{tuple(data.shape)}: 1 to 5 axes (t, c, z, y, x) expected"
                )
            pad = 5 - len(data.shape)
            self.data = data if pad == 0 else Padded(data, pad)
            self.name = f"an in-memory {type(image).__name__}"
        self.geometry = Geometry.from_shape(self.data.shape, self.data.dtype)
        self.order = tuple(order)
        self.shape = tuple(self.geometry.shape[i] for i in self.order)

    def byte_runs(self, dtype: np.dtype) -> list[tuple[Path, int, int]] | None:
        """(file, offset, nbytes) runs holding the pixels in order as ``dtype``
        (the kernel copies them), or None (in memory, compressed ...)."""
        img = self.disk_image
        if img is None:
            return None
        return img.storage.byte_runs(self.order, dtype)

    def block(self, key: tuple[Any, ...]) -> np.ndarray:
        """Pixels at ``key`` (in this source's axis order), loaded."""
        if self.order == (0, 1, 2, 3, 4):
            return self._load(key)
        # key is in transposed order: undo it, read, transpose the result.
        src_key: list[Any] = [slice(None)] * 5
        for pos, axis in enumerate(self.order):
            src_key[axis] = key[pos] if pos < len(key) else slice(None)
        block = self._load(tuple(src_key))
        kept = [a for a in self.order if not isinstance(src_key[a], (int, np.integer))]
        original = sorted(kept)
        return block.transpose([original.index(a) for a in kept])

    def _load(self, key: tuple[Any, ...]) -> np.ndarray:
        if self.disk_image is not None:
            return read_box(self.disk_image, key)
        return np.asarray(self.data[key])


def read_box(image: DiskImage, key: tuple[Any, ...]) -> np.ndarray:
    """Pixels of ``image`` at ``key`` (integers and slices over (t, c, z, y,
    x), positive steps), through :meth:`Storage.read_box`: ``pread``, not
    the memory map, so a file that another program truncated meanwhile
    raises OSError instead of killing the process with SIGBUS.

    The one adapter from numpy-style keys to the storage's ranges (copy,
    save and processing read their blocks with it).
    """
    if image.closed:
        raise closed_error(image.path)
    ranges, drop = normalize_key(key, image.shape)
    return image.storage.read_box(ranges)[drop]


class Padded:
    """An array-like with ``pad`` leading axes of size 1."""

    def __init__(self, data: Any, pad: int):
        self._data, self._pad = data, pad
        self.shape = (1,) * pad + tuple(data.shape)
        self.dtype = data.dtype

    def __getitem__(self, key: tuple[Any, ...]) -> Any:
        # numpy semantics: the padded axes stay in the result unless indexed
        # by an integer (transposing a block relies on it).
        key = tuple(key) + (slice(None),) * (len(self.shape) - len(key))
        block = np.asarray(self._data[key[self._pad :]])
        kept = sum(not isinstance(k, (int, np.integer)) for k in key[: self._pad])
        return block.reshape((1,) * kept + block.shape)


def block_size(block_bytes: int | None = None) -> int:
    """The block size of a copy or save: ``block_bytes`` when given, else
    the environment variable :data:`BLOCK_BYTES_ENV`, else
    :data:`COPY_BLOCK_BYTES` (32 MiB).

    Raises ValueError for a size below 1 byte or a variable that is not a
    whole number.
    """
    if block_bytes is None:
        text = os.environ.get(BLOCK_BYTES_ENV, "").strip()
        if not text:
            return COPY_BLOCK_BYTES
        try:
            block_bytes = int(text)
        except ValueError:
            raise ValueError(
                f"{BLOCK_BYTES_ENV}={text!r} is not a number of bytes; set it to "
                f"a whole number such as {1 << 20} (1 MiB) or unset it "
                f"(default {COPY_BLOCK_BYTES})"
            ) from None
        where = f"{BLOCK_BYTES_ENV}="
    else:
        where = "block_bytes="
    if block_bytes < 1:
        raise ValueError(
            f"{where}{block_bytes}: a copy's block size must be at least 1 byte "
            f"(default {COPY_BLOCK_BYTES})"
        )
    return int(block_bytes)


def blocks(
    shape: tuple[int, ...], itemsize: int, block_bytes: int | None = None
) -> Generator[tuple[Any, ...]]:
    """Keys that cover ``shape`` in C order, each at most ~``block_bytes``
    (:func:`block_size`)."""
    limit = block_size(block_bytes)
    inner = itemsize
    axis = len(shape)
    while axis > 0 and inner * shape[axis - 1] <= limit:
        inner *= shape[axis - 1]
        axis -= 1
    if axis == 0:
        yield ()
        return
    step = max(1, limit // inner)
    n = shape[axis - 1]
    for outer in np.ndindex(*shape[: axis - 1]):
        for start in range(0, n, step):
            yield (*outer, slice(start, min(start + step, n)))


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


def read_ahead(path: Path, offset: int, nbytes: int) -> None:
    """Ask the kernel to start reading ``nbytes`` of ``path`` (the next
    slice of a folder) while the current one is copied."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.posix_fadvise(fd, offset, nbytes, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)


def kernel_copy(
    src: Path,
    src_offset: int,
    fd: int,
    offset: int,
    nbytes: int,
    block_bytes: int | None = None,
) -> Generator[int]:
    """Copy bytes file to file in the kernel; yields bytes done.  Where the
    kernel cannot (across file systems), reads and writes ``block_bytes``
    at a time (:func:`block_size`)."""
    fallback = block_size(block_bytes)
    in_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(in_fd, src_offset, nbytes, os.POSIX_FADV_SEQUENTIAL)
        done = 0
        use_kernel = hasattr(os, "copy_file_range")
        while done < nbytes:
            n = min(KERNEL_CHUNK, nbytes - done)
            got = 0
            if use_kernel:
                try:
                    got = os.copy_file_range(
                        in_fd, fd, n, src_offset + done, offset + done
                    )
                except OSError as exc:
                    if exc.errno not in (
                        errno.EXDEV,
                        errno.ENOSYS,
                        errno.EOPNOTSUPP,
                        errno.EINVAL,
                    ):
                        raise
                    use_kernel = False  # e.g. across file systems: read/write
            if not use_kernel:
                buf = os.pread(in_fd, min(n, fallback), src_offset + done)
                if buf:
                    pwrite_all(fd, memoryview(buf), offset + done)
                got = len(buf)
            if got == 0:
                raise OSError(
                    errno.EIO,
                    f"{str(src)!r} ended early: it was truncated or changed by "
                    "another program while being copied",
                    str(src),
                )
            done += got
            yield done
    finally:
        os.close(in_fd)


def write_pixels(
    source: Source,
    fd: int,
    offset: int,
    dtype: np.dtype,
    block_bytes: int | None = None,
) -> Steps:
    """Write all of ``source`` to ``fd`` at ``offset`` as C-ordered ``dtype``,
    holding at most ~``block_bytes`` of pixels (:func:`block_size`)."""
    block_bytes = block_size(block_bytes)
    total = source.geometry.nbytes
    yield 0, total
    runs = source.byte_runs(dtype)
    if runs is not None and sum(n for _, _, n in runs) == total:
        done = 0
        for i, (path, src_offset, nbytes) in enumerate(runs):
            if i + 1 < len(runs):  # many small files: read the next one ahead
                read_ahead(*runs[i + 1])
            for part in kernel_copy(
                path, src_offset, fd, offset + done, nbytes, block_bytes
            ):
                yield done + part, total
            done += nbytes
        return
    done = 0
    for key in blocks(source.shape, dtype.itemsize, block_bytes):
        block = np.ascontiguousarray(source.block(key), dtype=dtype)
        pwrite_all(fd, bytes_of(block), offset + done)
        done += block.nbytes
        yield done, total
    if done != total:  # pragma: no cover - a bug in _blocks
        raise AssertionError(f"wrote {done} of {total} bytes")


# --- copy ------------------------------------------------------------------
def iter_copy(image: Any, *, block_bytes: int | None = None) -> Steps:
    """Steps of :func:`copy`; returns the new :class:`DiskImage`."""
    block_bytes = block_size(block_bytes)  # a bad size: an error before the file
    source = Source(image)
    geometry = source.geometry
    scratch = create_scratch(
        geometry, f"a copy of {source.name} ({format_bytes(geometry.nbytes)})"
    )
    ok = False
    try:
        try:
            yield from write_pixels(
                source, scratch.fd, 0, geometry.dtype.newbyteorder("<"), block_bytes
            )
        except OSError as exc:
            full = full_error(exc, scratch.path, geometry.nbytes)
            if full is None:
                raise
            raise full from exc
        meta = None
        if source.disk_image is not None:  # the same metadata, a scratch file
            meta = replace(source.disk_image.meta, kind="raw", shown_series=(0,))
        result = map_scratch(scratch, geometry, meta)
        ok = True
        return result
    finally:
        if not ok:
            scratch.release()


def copy(
    image: Any,
    *,
    progress: ProgressCallback | None = None,
    block_bytes: int | None = None,
) -> DiskImage:
    """Copy an image into a new scratch disk image (IPSDK util.copyImg).

    The new file is created in the disk-image directory
    (:func:`get_disk_image_dir`) with the same geometry and pixels, stored
    little-endian in (t, c, z, y, x) order; it is deleted when the result is
    dropped.  Memory use is bounded whatever the image size; pixels already
    contiguous in a file are copied by the kernel at the speed of ``cp``.

    Parameters
    ----------
    image : DiskImage or array-like
        What to copy: a disk image or any numpy-compatible array of 1 to 5
        axes (right-aligned to (t, c, z, y, x)), numpy, dask or zarr.
    progress : callable, optional
        ``progress(done_bytes, total_bytes)`` after each block; raise from
        it to cancel.
    block_bytes : int, optional
        Most bytes of pixels held in memory at once (one block, one
        progress step); default :func:`block_size`: the environment
        variable ``NAPARI_DISKIMAGE_BLOCK_BYTES`` or 32 MiB.

    Raises
    ------
    OSError
        ENOSPC, before anything is written, when the disk-image directory
        lacks space (the message gives needed and free bytes), or on a write
        error.  The partial file is always removed.
    ValueError
        Unsupported pixel type or number of axes, or ``block_bytes`` < 1.
    """
    return run_steps(iter_copy(image, block_bytes=block_bytes), progress)
