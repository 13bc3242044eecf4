"""TIFF images decoded lazily: compressed, tiled or scattered pixel data.

Pixels that are not stored as one uncompressed run (LZW, Deflate, Zstd,
JPEG ..., tiles, strips scattered through the file, predictors, separate
colour planes) cannot be memory-mapped.  Such a file is read through
tifffile's zarr store: a read decodes only the strips or tiles it touches,
and decoded chunks are kept in a bounded LRU cache (:data:`CACHE_BYTES` per
open file).  Opening parses the header only.

A lazily decoded image is still a disk image (opened, not loaded) but it is
read-only: ``write_pixel`` raises PermissionError; copy it
(:func:`napari_diskimage.copy`) to get a writable, memory-mapped scratch
image.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import math
import os
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .._cache import LRUCache
from .._errors import closed_error
from .._index import as_slice, normalize_key
from .._tiff_meta import WIDEN, axis_targets, compression_name
from ._base import Storage, check_present

__all__ = [
    "CACHE_BYTES",
    "LazyTiffStorage",
    "TczyxView",
    "TiffHandle",
]

#: Decoded strips or tiles kept in memory per open file (all levels).
CACHE_BYTES = 64 << 20


# --- the file -----------------------------------------------------------
class _CountingFile(io.FileIO):
    """A read-only file that counts the bytes read through it."""

    bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data or b"")
        return data

    def readinto(self, buffer: Any) -> int:
        n = super().readinto(buffer)
        self.bytes_read += n or 0
        return n


def _close_tiff(tif: tifffile.TiffFile, fh: io.FileIO) -> None:
    try:
        tif.close()
    finally:
        fh.close()


def _read_first_page_exactly(fd: int) -> None:
    """Bring the file's first page into the cache without read-ahead.

    The kernel's read-ahead for the header's first read would also read the
    start of the pixel data (up to ``read_ahead_kb``, 8 MiB on some disks)
    and mark a page there, so that the first pixel rows read later pull in
    another 1-2 MiB nobody asked for.  The header's first page, read with
    read-ahead off, avoids both; later header reads (IFDs elsewhere in the
    file) keep normal read-ahead.
    """
    if not hasattr(os, "posix_fadvise"):
        return
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        os.pread(fd, 4096, 0)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_NORMAL)


class TiffHandle:
    """An open TIFF file, shared by an image and its resolution levels.

    Each storage using the file takes a share (:meth:`acquire`) and gives
    it back when closed (:meth:`release`); the file is closed with the last
    share, by :meth:`close`, or when every user is dropped.  ``bytes_read``
    counts every byte read from the file (header included); ``cache`` holds
    decoded chunks (``cache.misses``: chunks decoded).
    """

    def __init__(self, path: Path, cache_bytes: int | None = None) -> None:
        self.path = path
        self._file = _CountingFile(path, "r")
        try:
            _read_first_page_exactly(self._file.fileno())
            self.tif = tifffile.TiffFile(self._file)
        except BaseException:
            self._file.close()
            raise
        self.cache = LRUCache(CACHE_BYTES if cache_bytes is None else cache_bytes)
        self.users = 0
        self._users_lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _close_tiff, self.tif, self._file)

    @property
    def bytes_read(self) -> int:
        return self._file.bytes_read

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def acquire(self) -> None:
        """Take a share of the file (a storage reading it)."""
        with self._users_lock:
            self.users += 1

    def release(self) -> None:
        """Give a share back; the last one closes the file."""
        with self._users_lock:
            self.users -= 1
            last = self.users <= 0
        if last:
            self.close()

    def close(self) -> None:
        self.cache.clear()
        self._finalizer()


# --- lazy arrays --------------------------------------------------------
_META_SUFFIXES = (".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json")


@functools.cache
def _cached_store_class() -> type:
    """tifffile's zarr store with a chunk cache (zarr imported on first use:
    it takes a quarter of a second, and only compressed TIFFs need it)."""
    from tifffile.zarr import ZarrTiffStore

    class CachedTiffStore(ZarrTiffStore):
        """tifffile's zarr store for one level, with decoded chunks cached."""

        def __init__(
            self, series: tifffile.TiffPageSeries, level: int, cache: LRUCache
        ) -> None:
            super().__init__(series, level=level)
            self._chunk_cache = cache
            self._cache_prefix = (id(series), level)

        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            if (
                byte_range is not None
                or key in self._store
                or key.endswith(_META_SUFFIXES)
            ):
                return await super().get(key, prototype, byte_range)
            cache_key = (*self._cache_prefix, key)
            hit = self._chunk_cache.get(cache_key)
            if hit is not None:
                return hit
            value = await super().get(key, prototype, byte_range)
            if value is not None:
                self._chunk_cache.put(cache_key, value, len(value))
            return value

    return CachedTiffStore


class TczyxView:
    """A 5D ``(t, c, z, y, x)`` read-only view of an n-D array-like.

    ``source`` is indexed by the tifffile axes ``axes`` (e.g. ``"TZCYXS"``,
    ``"QYX"``); the view reorders them without reading.  Indexing with
    integers and slices (any step) returns an in-memory numpy array in
    native byte order, reading only the selected part of ``source``.
    Fancy indexing is not supported.
    """

    ndim = 5

    def __init__(self, source: Any, axes: str, name: str = "the TIFF file") -> None:
        if len(axes) != len(source.shape):
            raise ValueError(f"axes {axes!r} do not match shape {source.shape}")
        targets = axis_targets(axes)
        self._groups: list[list[int]] = [
            [i for i, tgt in enumerate(targets) if tgt == pos] for pos in range(5)
        ]
        if len(self._groups[3]) != 1 or len(self._groups[4]) != 1:
            raise ValueError(f"cannot map TIFF axes {axes!r} to (t, c, z, y, x)")
        self._source = source
        self._axes = axes
        self._name = name
        self._target_of = targets
        self.shape = tuple(
            math.prod(source.shape[i] for i in group) for group in self._groups
        )
        dtype = np.dtype(source.dtype)
        self.dtype: np.dtype = WIDEN.get(dtype, dtype).newbyteorder("=")

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def chunk_rows(self) -> int:
        """Rows (y) decoded together: the height of a strip or tile."""
        chunks = getattr(self._source, "chunks", None)
        if not chunks:
            return 1
        return max(1, int(chunks[self._groups[3][0]]))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<TczyxView {self.shape} {self.dtype} of {self._axes!r} data>"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a lazily decoded image cannot be viewed without a copy")
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def _normalize(self, key: Any) -> list[int | slice]:
        ranges, drop = normalize_key(key, self.shape, negative_steps=True)
        return [
            r.start if isinstance(d, int) else as_slice(r)
            for r, d in zip(ranges, drop, strict=True)
        ]

    def __getitem__(self, key: Any) -> np.ndarray:
        return self._read(self._normalize(key))

    def _read(self, key: list[int | slice]) -> np.ndarray:
        # A merged axis (two file axes on one of t, c, z) is read index by index.
        for pos, group in enumerate(self._groups):
            merged = key[pos]
            if len(group) > 1 and isinstance(merged, slice):
                indices = range(*merged.indices(self.shape[pos]))
                at = sum(isinstance(k, slice) for k in key[:pos])
                parts = [self._read([*key[:pos], i, *key[pos + 1 :]]) for i in indices]
                if parts:
                    return np.stack(parts, axis=at)
                empty = self._read([*key[:pos], 0, *key[pos + 1 :]])
                return np.empty((*empty.shape[:at], 0, *empty.shape[at:]), self.dtype)
        src_key: list[int | slice] = [slice(None)] * len(self._source.shape)
        flips: list[int] = []
        out_shape: list[int] = []
        for pos, (group, k) in enumerate(zip(self._groups, key, strict=True)):
            if isinstance(k, slice):
                r = range(*k.indices(self.shape[pos]))
                out_shape.append(len(r))
                if r.step < 0:  # zarr takes positive steps only: read, then flip
                    flips.append(pos)
                    r = r[::-1]
                k = slice(r.start, r.stop, r.step) if len(r) else slice(0, 0)
            if not group:
                continue  # an axis of size 1 that the file does not have
            if len(group) == 1:
                src_key[group[0]] = k
            else:  # an integer on merged axes: split it
                sizes = [self._source.shape[i] for i in group]
                assert isinstance(k, int)
                for i, sub in zip(group, np.unravel_index(k, sizes), strict=True):
                    src_key[i] = int(sub)
        if 0 in out_shape:
            return np.empty(out_shape, self.dtype)
        try:
            block = np.asarray(self._source[tuple(src_key)])
        except Exception as exc:
            # imagecodecs, tifffile and zarr raise many types on corrupt data
            raise OSError(
                errno.EIO,
                f"cannot decode pixels of {self._name}: {exc}. The file may "
                "be damaged or truncated; check it with another program",
                self._name,
            ) from exc
        kept = [i for i, k in enumerate(src_key) if isinstance(k, slice)]
        order = sorted(range(len(kept)), key=lambda j: self._target_of[kept[j]])
        block = block.transpose(order).reshape(out_shape)
        if flips:
            sliced = [p for p, k in enumerate(key) if isinstance(k, slice)]
            flip = tuple(
                slice(None, None, -1) if p in flips else slice(None) for p in sliced
            )
            block = block[flip]
        return np.ascontiguousarray(block, dtype=self.dtype)


# --- the image ----------------------------------------------------------
class LazyTiffStorage(Storage):
    """A TIFF series (or one of its stored levels) decoded on demand.

    ``array`` is a :class:`TczyxView`: an array-like indexed ``(t, c, z, y,
    x)`` whose slices decode only the strips or tiles they touch.
    ``bytes_read`` counts the bytes read from the file, header included,
    by every level sharing the file handle.  Read-only: writing raises
    PermissionError (copy the image to edit it).  Each storage takes a
    share of ``handle`` and gives it back when closed.
    """

    def __init__(
        self,
        handle: TiffHandle,
        series: tifffile.TiffPageSeries,
        *,
        level: int = 0,
        description: str | None = None,
    ) -> None:
        level_series = series.levels[level]
        view = _view_of(handle, series, level)
        handle.acquire()
        self._handle: TiffHandle | None = handle
        self.path = handle.path
        self._array: TczyxView | None = view
        self.shape = view.shape
        self.file_dtype = np.dtype(view.dtype).newbyteorder(handle.tif.byteorder)
        self._description = description or compression_name(level_series)
        self._closed = False
        # what a pickled state reopens (see state)
        self.series_index = next(
            (i for i, s in enumerate(handle.tif.series) if s is series), None
        )
        self.level = level

    # --- pickling: reopened lazily ----------------------------------------
    def state(self) -> tuple:
        """(path, series, level, shape, file dtype, description): never the
        pixels."""
        if self.series_index is None:  # pragma: no cover - tifffile contract
            raise TypeError(f"cannot pickle {self.path}: its series is unknown")
        return (
            str(self.path), self.series_index, self.level, self.shape,
            self.file_dtype.str, self._description,
        )  # fmt: skip

    @classmethod
    def from_state(cls, state: tuple) -> LazyTiffStorage:
        path, series, level, shape, dtype, description = state
        check_present(path)  # a stat: nothing is opened before the first read
        self = cls.__new__(cls)
        self._handle = None  # opened at the first read
        self.path = Path(path)
        self._array = None
        self.shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
        self.file_dtype = np.dtype(dtype)
        self._description = description
        self._closed = False
        self.series_index, self.level = int(series), int(level)
        return self

    @property
    def handle(self) -> TiffHandle:
        """The open file (opened now if this storage was unpickled)."""
        if self._closed:
            raise closed_error(self.path)
        if self._handle is None:
            handle = TiffHandle(self.path)
            try:
                assert self.series_index is not None
                series = handle.tif.series[self.series_index]
                self._array = _view_of(handle, series, self.level)
            except BaseException:
                handle.close()
                raise
            handle.acquire()
            self._handle = handle
        return self._handle

    # --- the contract ----------------------------------------------------
    @property
    def bytes_read(self) -> int:  # type: ignore[override]
        """Bytes read from the file so far (header included)."""
        return 0 if self._handle is None else self._handle.bytes_read

    @property
    def chunks_decoded(self) -> int:
        """Strips or tiles decoded so far (cache misses), all levels."""
        return 0 if self._handle is None else self._handle.cache.misses

    @property
    def chunk_rows(self) -> int:
        """Rows decoded together: the height of a strip or tile."""
        return self.array.chunk_rows

    def describe(self) -> str:
        return self._description

    def summary(self) -> str:
        return f"{self._description}, decoded lazily"

    @property
    def closed(self) -> bool:
        return self._closed or (self._handle is not None and self._handle.closed)

    @property
    def array(self) -> TczyxView:
        """Lazy ``(t, c, z, y, x)`` view: slicing it decodes what is sliced."""
        handle = self.handle
        if self._array is None or handle.closed:
            raise closed_error(self.path)
        return self._array

    def close(self) -> None:
        """Give the file back (closed with the last storage using it)."""
        if self._closed:
            return
        self._closed = True
        self._array = None
        if self._handle is not None:
            self._handle.release()

    def read_cost(self, ny: int, sy: int, nx: int, sx: int) -> int:
        """Every strip or tile across the rows is decoded: whole chunk rows."""
        itemsize = self.dtype.itemsize
        chunk_rows = min(self.chunk_rows, self.shape[3])
        if chunk_rows <= 1:
            return super().read_cost(ny, sy, nx, sx)
        touched = 1 if ny <= 1 else min(ny, (ny - 1) * sy // chunk_rows + 2)
        return touched * chunk_rows * self.shape[4] * itemsize

    def read_region(
        self, t: int, c: int, z: int,
        y0: int, ny: int, sy: int, x0: int, nx: int, sx: int,
    ) -> np.ndarray:  # fmt: skip
        """Decodes only the strips or tiles that hold the rows (cached)."""
        view = self.array
        if ny == 0 or nx == 0:
            return np.empty((ny, nx), dtype=self.dtype)
        ys = slice(y0, y0 + (ny - 1) * sy + 1, sy)
        xs = slice(x0, x0 + (nx - 1) * sx + 1, sx)
        return view[t, c, z, ys, xs]


def _view_of(
    handle: TiffHandle, series: tifffile.TiffPageSeries, level: int
) -> TczyxView:
    """The (t, c, z, y, x) view of level ``level`` of ``series``, decoded
    through ``handle``'s chunk cache."""
    import zarr

    store = _cached_store_class()(series, level, handle.cache)
    source = zarr.open_array(store, mode="r", zarr_format=2)
    return TczyxView(source, series.levels[level].axes, repr(str(handle.path)))
