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
import numbers
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from .._errors import closed_error
from .._tiff_meta import WIDEN, axis_targets, compression_name, is_rgb, tczyx_shape
from ._base import Storage

if TYPE_CHECKING:
    from .._diskimage import DiskImage

__all__ = [
    "CACHE_BYTES",
    "LazyTiffStorage",
    "TczyxView",
    "TiffHandle",
    "open_levels",
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


class _ChunkCache:
    """Least-recently-used decoded chunks, at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.decoded = 0  # chunks decoded from the file (cache misses)
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        with self._lock:
            self.decoded += 1
            if nbytes > self.max_bytes or key in self._items:
                return
            self._items[key] = (value, nbytes)
            self.nbytes += nbytes
            while self.nbytes > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self.nbytes -= size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


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

    The file stays open until :meth:`close` or until every image using it
    is dropped.  ``bytes_read`` counts every byte read from the file (header
    included); ``cache`` holds decoded chunks.
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
        self.cache = _ChunkCache(CACHE_BYTES if cache_bytes is None else cache_bytes)
        self._finalizer = weakref.finalize(self, _close_tiff, self.tif, self._file)

    @property
    def bytes_read(self) -> int:
        return self._file.bytes_read

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

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
            self, series: tifffile.TiffPageSeries, level: int, cache: _ChunkCache
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
                return hit[0]
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
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            rest = [k for k in key[at + 1 :] if k is not Ellipsis]
            key = (*key[:at], *[slice(None)] * (5 - at - len(rest)), *rest)
        if len(key) > 5:
            raise IndexError(f"too many indices for a 5D (t, c, z, y, x) image: {key}")
        key = (*key, *[slice(None)] * (5 - len(key)))
        out: list[int | slice] = []
        for axis, (k, n) in enumerate(zip(key, self.shape, strict=True)):
            if isinstance(k, slice):
                out.append(k)
            elif isinstance(k, numbers.Integral) and not isinstance(k, bool):
                i = int(k) + n if k < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(
                        f"index {k} is out of bounds for axis {'tczyx'[axis]} "
                        f"with size {n}"
                    )
                out.append(i)
            else:
                raise TypeError(
                    f"a lazily decoded TIFF takes integers and slices as "
                    f"indices, got {k!r}; copy it (napari_diskimage.copy) "
                    "for fancy indexing"
                )
        return out

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
    PermissionError (copy the image to edit it).
    """

    def __init__(
        self,
        handle: TiffHandle,
        series: tifffile.TiffPageSeries,
        *,
        level: int = 0,
        owns_handle: bool = True,
        description: str | None = None,
    ) -> None:
        level_series = series.levels[level]
        import zarr

        store = _cached_store_class()(series, level, handle.cache)
        source = zarr.open_array(store, mode="r", zarr_format=2)
        view = TczyxView(source, level_series.axes, repr(str(handle.path)))
        self.handle = handle
        self.owns_handle = owns_handle
        self.path = handle.path
        self._array: TczyxView | None = view
        self.shape = view.shape
        self.file_dtype = np.dtype(view.dtype).newbyteorder(handle.tif.byteorder)
        self._description = description or compression_name(level_series)
        # what a pickled reference reopens (see reference)
        self.series_index = next(
            (i for i, s in enumerate(handle.tif.series) if s is series), None
        )
        self.level = level
        self.rgb = is_rgb(level_series.axes, level_series.shape, level_series.dtype)

    @property
    def bytes_read(self) -> int:  # type: ignore[override]
        """Bytes read from the file so far (header included)."""
        return self.handle.bytes_read

    @property
    def chunks_decoded(self) -> int:
        """Strips or tiles decoded so far (cache misses), all levels."""
        return self.handle.cache.decoded

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
        return self._array is None or self.handle.closed

    @property
    def array(self) -> TczyxView:
        """Lazy ``(t, c, z, y, x)`` view: slicing it decodes what is sliced."""
        if self._array is None or self.handle.closed:
            raise closed_error(self.path)
        return self._array

    def close(self) -> None:
        """Release the file (if this level owns it)."""
        self._array = None
        if self.owns_handle:
            self.handle.close()

    def reference(self, image: DiskImage) -> tuple[Callable[..., Any], tuple]:
        """A reference (path, series, level): never the pixels."""
        if self.series_index is None:  # pragma: no cover - tifffile contract
            raise TypeError(f"cannot pickle {image!r}: its series is unknown")
        return (reopen_lazy, (str(self.path), self.series_index, self.level))

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


def reopen_lazy(path: str, series: int, level: int) -> DiskImage:
    """Open a lazily decoded TIFF again from a pickled reference."""
    from .._tiff import open_tiff

    image = open_tiff(path, series=series)
    if level == 0:
        return image
    return image.display_levels[level]


def open_levels(
    handle: TiffHandle,
    sources: list[tuple[tifffile.TiffPageSeries, int]],
    base_shape: tuple[int, ...],
    spacing: tuple[float, float, float],
    unit: str | None,
) -> tuple[DiskImage, ...]:
    """Images of the coarser stored levels ``(series, level)``, for display.

    Levels with other t, c, z sizes, or not smaller in y and x than the
    previous one, are skipped.  Each level's spacing is scaled to its size.
    The levels share ``handle`` and do not close it.
    """
    from .._diskimage import DiskImage

    levels: list[DiskImage] = []
    previous = tuple(base_shape)
    for series, level in sources:
        stored = series.levels[level]
        shape = tczyx_shape(stored.axes, stored.shape)
        if shape[:3] != previous[:3] or not (
            shape[3] <= previous[3] and shape[4] <= previous[4] and shape != previous
        ):
            continue
        storage = LazyTiffStorage(handle, series, level=level, owns_handle=False)
        z, y, x = spacing
        scaled = (z, y * base_shape[3] / shape[3], x * base_shape[4] / shape[4])
        levels.append(
            DiskImage(
                handle.path,
                storage,
                kind="tiff",
                spacing=scaled,
                unit=unit,
                rgb=storage.rgb,
            )
        )
        previous = shape
    return tuple(levels)
