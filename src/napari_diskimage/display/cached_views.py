"""Views that are not XY, answered from the view cache while it is valid.

napari asks a layer for a YZ or XZ plane when its dims are rolled (what
napari-orthogonal-views' extra viewers do), and for a whole level in 3D.
On a row-major file a YZ plane or a 3D level touches every row it
crosses; the view cache (:mod:`.view_cache`) holds the same pixels in
near-cubic chunks.  The display levels (:mod:`.levels`) ask
:func:`read_cached` first for YZ planes and 3D reads.  XY planes always
come from the file, and so do XZ planes: one row of each plane, read as it
lies, which decoding a row of chunks per plane does not beat (2 GiB,
cold: 0.9 s from the TIFF against 7.5 s for the first XZ view of the
cache; docs/benchmarks.md).

* **Which level of the cache**: the one on the same grid as the display
  level (its z and y/x strides equal the level's cumulative mean factors):
  its pixels are the **means** of the blocks the level's pixels stand for.
  The 3D overview is chosen on such a grid when a cache exists
  (:func:`cache_overview`).  Other levels (the 2D levels strided in y and x
  that keep every z plane, when the cache halves z too) are read from the
  cache's full-resolution level at the same strided positions: the exact
  values of the file, read as chunks.
* **Valid**: before each read, one ``stat`` of the cache's identity file and
  one of each file of the image, compared with what was checked when the
  cache was opened (no hashing, no JSON but when the identity file
  changed).  A write of ours removes the identity file, a changed file no
  longer matches: the read then falls back to the file, never to a stale
  cache.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._diskimage import DiskImage
from ..io.downsample import pyramid_factors
from .slab_prefetch import SlabPrefetch
from .view_cache import (
    CHUNKS,
    IDENTITY_FILE,
    _identity,
    _read_identity,
    view_cache_path,
)

__all__ = [
    "cache_levels",
    "cache_overview",
    "chunk_cache_bytes",
    "on_uncached_yz_read",
    "prefetch_xz",
    "read_cached",
    "uncached_yz_read",
    "valid_view_cache",
]

#: Called with the image when a YZ plane is read from the file for want of
#: a valid view cache (the napari side offers to build one: any viewer's
#: rolled dims, napari-orthogonal-views' side viewers included).
_uncached_listeners: list[Callable[[Any], None]] = []


def on_uncached_yz_read(listener: Callable[[Any], None]) -> None:
    """Call ``listener(image)`` on each YZ plane read from the file because
    ``image`` has no valid view cache (registered once)."""
    if listener not in _uncached_listeners:
        _uncached_listeners.append(listener)


def uncached_yz_read(image: Any) -> None:
    """Tell the listeners; a listener's failure never breaks a read."""
    for listener in list(_uncached_listeners):
        with contextlib.suppress(Exception):
            listener(image)


Factors = tuple[int, int, int]


@dataclass
class _Entry:
    store: Path
    stamp: tuple[int, int, int] | None = None  # the identity file's
    identity: dict[str, Any] | None = None
    cache: DiskImage | None = None
    levels: list[tuple[DiskImage, Factors]] = field(default_factory=list)
    #: the next slab of chunks of a YZ view, decoded ahead of its x-steps
    slabs: SlabPrefetch = field(default_factory=SlabPrefetch)


_entries: weakref.WeakKeyDictionary[Any, _Entry] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _close(entry: _Entry) -> None:
    entry.slabs.close()
    if entry.cache is not None:
        with contextlib.suppress(Exception):
            entry.cache.close()
    entry.cache, entry.identity, entry.levels = None, None, []


def valid_view_cache(image: Any) -> DiskImage | None:
    """The view cache of ``image``, open, if it is valid now; else None.

    Cheap enough to call before every plane (see the module notes).  A
    Zarr image (already chunked) and anything that is not a
    :class:`DiskImage` have none.
    """
    if not isinstance(image, DiskImage) or image.kind == "zarr":
        return None
    with _lock:
        entry = _entries.get(image)
        if entry is None:
            try:
                entry = _entries[image] = _Entry(view_cache_path(image))
            except OSError:
                return None
        try:
            st = os.stat(entry.store / IDENTITY_FILE)
            now = _identity(image)
        except OSError:
            _close(entry)
            entry.stamp = None
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != entry.stamp:  # first use, or the store was rebuilt
            _close(entry)
            entry.stamp = stamp
            entry.identity = _read_identity(entry.store)
            if entry.identity == now:
                _open(entry, image)
        if entry.identity != now:
            _close(entry)
            entry.stamp = None
            return None
        return entry.cache


#: Setting (bytes): the most the chunk cache of an open view cache may hold.
MEMORY_KEY = "view_cache_memory_bytes"
#: Its default.
MEMORY_BYTES = 512 << 20


def chunk_cache_bytes(image: DiskImage) -> int:
    """Bytes of decoded chunks kept for the view cache of ``image``.

    Two 64-pixel-thick YZ slices of chunks (every z and y, 64 columns,
    each channel) and a quarter of one more: the slice a YZ view browses, so
    that the 63 x-steps after a YZ plane decode nothing, and the next one,
    decoded ahead in the direction of the steps
    (:mod:`.slab_prefetch`); at least the store default
    (:data:`~napari_diskimage.storage.zarr_array.CACHE_BYTES`), at most the
    ``view_cache_memory_bytes`` setting (:data:`MEMORY_BYTES`).  A 16 GiB
    volume (407 x 3248 planes) needs 169 MB a slice, 380 MB in all: with
    128 MiB every x-step decoded its whole plane again (LRU order, each
    chunk evicted just before it was needed).  Under a setting that holds
    one slice but not two, the next slice is not decoded ahead.
    """
    from .._settings import number_setting
    from ..storage.zarr_array import CACHE_BYTES

    geo = image.geometry
    slab = geo.size_z * geo.size_y * CHUNKS[2] * geo.size_c * geo.dtype.itemsize
    limit = number_setting(MEMORY_KEY, MEMORY_BYTES)
    return max(CACHE_BYTES, min(2 * slab + slab // 4, limit))


def _open(entry: _Entry, image: DiskImage) -> None:
    from .._open import open_zarr

    try:
        entry.cache = open_zarr(entry.store)
    except (OSError, ValueError):
        entry.identity = None
        return
    handle = getattr(entry.cache.storage, "handle", None)
    if handle is not None:  # shared by the store's levels
        handle.cache.max_bytes = chunk_cache_bytes(image)
    entry.levels = _levels(entry.cache, image)


def _levels(cache: DiskImage, image: DiskImage) -> list[tuple[DiskImage, Factors]]:
    """The cache's levels with their cumulative (z, y, x) mean factors over
    ``image``; only those whose shape agrees with the factors."""
    zyx = image.shape[2:]
    stored = list(cache.display_levels or [cache])
    steps = pyramid_factors(zyx, image.spacing, None)  # as the cache was built
    out: list[tuple[DiskImage, Factors]] = []
    total: Factors = (1, 1, 1)
    for k, level in enumerate(stored):
        if k:
            if k > len(steps):
                break
            f = steps[k - 1]
            total = (total[0] * f[0], total[1] * f[1], total[2] * f[2])
        want = tuple(-(-n // f) for n, f in zip(zyx, total, strict=True))
        if tuple(level.shape[2:]) != want or level.shape[:2] != image.shape[:2]:
            break
        out.append((level, total))
    return out


def cache_levels(image: Any) -> list[tuple[DiskImage, Factors]]:
    """The valid cache's levels of ``image`` and their (z, y, x) factors,
    finest first; empty when no valid cache."""
    if valid_view_cache(image) is None:
        return []
    with _lock:
        entry = _entries.get(image)
        return list(entry.levels) if entry is not None else []


def cache_overview(
    image: Any, factor: int, max_voxels: int, max_side: int, colours: int = 1
) -> tuple[int, int] | None:
    """Strides ``(z, yx)`` of a 3D overview on the grid of one of the valid
    cache's mean levels: the finest whose y/x factor is at least twice
    ``factor`` (the coarsest 2D level's stride) and that holds at most
    ``max_voxels`` voxels with no side over ``max_side``.  None without a
    cache or such a level."""
    for level, (fz, fy, fx) in cache_levels(image)[1:]:
        nz, ny, nx = level.shape[2:]
        if (
            fy == fx
            and fy >= 2 * factor
            and nz * ny * nx * colours <= max_voxels
            and max(nz, ny, nx) <= max_side
        ):
            return fz, fy
    return None


def _on_level(r: range, f: int) -> range:
    """Full-resolution indices ``r`` (ascending) on a level of factor ``f``."""
    step = max(1, r.step // f)
    start = r.start // f
    return range(start, start + len(r) * step, step)


def read_cached(
    image: Any,
    ts: range,
    zs: range,
    rows: range,
    cols: range,
    channels: tuple[int, ...],
    factor: int,
    zfactor: int,
    coarse_xy: bool = False,
) -> np.ndarray | None:
    """The pixels of a display level's view (full-resolution ascending
    indices of ``image``) from its valid view cache, shaped
    (t, z, y, x, channel); None when there is no valid cache.

    The cache level on the level's grid (``zfactor``, ``factor``) gives
    block means; without one, the full-resolution level gives the exact
    strided values.  ``coarse_xy``: an XY plane of a 2D level strided by
    ``factor`` (zoomed out) is read from the finest cache level averaged
    ``factor`` times in y and x: each pixel is the mean of a block of
    ``factor`` x ``factor`` pixels **and of the level's z factor of planes**
    (2^k planes, the cache's levels being 3D means), the block holding the
    plane shown.  None without such a level (the file's strided pixels),
    or when the row of its chunks that holds the view is more than half the
    chunk cache: each z-step would decode it again (64-deep chunks of level
    1 of a 2 GiB volume, 169 MB: p95 1-3 s a step against 31-59 ms for
    the file's strided pixels).
    """
    levels = cache_levels(image)
    if not levels:
        return None
    source, f = levels[0]
    for level, factors in levels[1:]:
        if factors == (zfactor, factor, factor):
            source, f = level, factors
    if coarse_xy:
        matches = [(lv, fs) for lv, fs in levels[1:] if fs[1:] == (factor, factor)]
        if not matches:
            return None
        source, f = matches[0]
    zyx = (_on_level(zs, f[0]), _on_level(rows, f[1]), _on_level(cols, f[2]))
    row = _row_bytes(source, zyx) * len(channels)
    if coarse_xy and row > _cache_bytes(source) // 2:
        return None
    # a YZ plane: its slab of chunks may be on its way (decoded ahead)
    slabs = _slab_prefetch(image) if len(zyx[2]) == 1 < len(zyx[0]) else None
    if slabs is not None:
        slabs.before_read(source.storage, zyx[2][0])
    out = np.empty(
        (len(ts), len(zs), len(rows), len(cols), len(channels)), source.dtype
    )
    for k, c in enumerate(channels):
        out[..., k] = source.storage.read_box([ts, range(c, c + 1), *zyx])[:, 0]
    if slabs is not None:
        slabs.after_read(source.storage, ts, channels, zyx)
    return out


def _slab_prefetch(image: Any) -> SlabPrefetch | None:
    with _lock:
        entry = _entries.get(image)
        return entry.slabs if entry is not None else None


def _row_bytes(level: DiskImage, zyx: tuple[range, range, range]) -> int:
    """Bytes of the chunks of ``level`` that hold the plane part ``zyx``: a
    row of chunks, every plane of their depth."""
    chunks = getattr(level.storage, "zarr_array", None)
    if chunks is None:
        return 0
    cz, cy, cx = (int(c) for c in chunks.chunks[-3:])
    ys, xs = zyx[1], zyx[2]
    ny = (ys[-1] // cy - ys[0] // cy + 1) if len(ys) else 0
    nx = (xs[-1] // cx - xs[0] // cx + 1) if len(xs) else 0
    return ny * nx * min(cz, level.shape[2]) * cy * cx * level.dtype.itemsize


def _cache_bytes(level: DiskImage) -> int:
    handle = getattr(level.storage, "handle", None)
    return handle.cache.max_bytes if handle is not None else 0


def prefetch_xz(
    image: DiskImage, ts: Any, channels: list[int], zs: Any, y: int, cols: range
) -> None:
    """Announce the row ``y`` of every plane ``zs`` of an XZ view at once.

    An XZ plane is one row of each z plane; read one by one from a cold
    page cache it waits for the disk once per plane (2 GiB, 202 planes,
    page cache dropped before each step: p95 0.17-0.23 s a step).
    Announced together (``POSIX_FADV_WILLNEED``) the disk fetches them in
    parallel (docs/benchmarks.md, issue 24).
    Only for a storage that can (a mapped file: uncompressed TIFF, RAW):
    other kinds read their own way.
    """
    announce = getattr(image.storage, "prefetch_planes_row", None)
    if announce is None or len(cols) == 0:
        return
    with contextlib.suppress(OSError, ValueError):
        for t, c in itertools.product(ts, channels):
            announce(t, c, zs, y, cols.start, cols[-1] + 1)
