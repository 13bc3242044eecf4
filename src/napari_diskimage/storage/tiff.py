"""TIFF files as storage: mapped when possible, else decoded lazily.

:func:`open_tiff` parses the header, chooses the storage kind
(:class:`~.mapped.MappedStorage` for uncompressed contiguous pixels,
:class:`~.lazy_tiff.LazyTiffStorage` otherwise) and finds the coarser levels
a pyramidal TIFF stores.  It returns an :class:`~._base.Opened`; the
facade (``napari_diskimage.open_tiff``) makes the disk image.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .._errors import CorruptFileError
from .._files import check_mode, check_readable, check_writable_file
from .._geometry import Geometry, as_dtype
from .._meta import ImageMeta
from .._tiff_meta import (
    compression_name,
    is_parse_error,
    is_rgb,
    lazy_reason,
    spacing_of,
    tczyx_shape,
    to_tczyx,
)
from ._base import Opened, Storage
from .lazy_tiff import LazyTiffStorage, TiffHandle
from .mapped import MappedStorage

__all__ = ["is_reduced", "level_sources", "list_series", "open_handle", "open_tiff"]


def open_handle(p: Path, cache_bytes: int | None = None) -> TiffHandle:
    """The open TIFF ``p`` (its decoded-chunk cache: ``cache_bytes``, default
    :data:`.lazy_tiff.CACHE_BYTES`); CorruptFileError for a bad header."""
    try:
        return TiffHandle(p, cache_bytes)
    except Exception as exc:  # tifffile raises many types on corrupt headers
        if not is_parse_error(exc):
            raise
        raise CorruptFileError(
            f"{str(p)!r} is not a valid TIFF file ({type(exc).__name__}: {exc}); "
            "check that it is a TIFF, or open it as RAW with its geometry",
            p,
        ) from exc


def list_series(handle: TiffHandle, p: Path) -> list[tifffile.TiffPageSeries]:
    try:
        all_series = handle.tif.series
    except Exception as exc:  # tifffile raises many types on corrupt IFDs
        if not is_parse_error(exc):
            raise
        raise CorruptFileError(
            f"{str(p)!r} has a corrupt TIFF structure ({type(exc).__name__}: "
            f"{exc}); restore the file or save it again",
            p,
        ) from exc
    if not all_series:
        raise CorruptFileError(f"{str(p)!r} contains no image data", p)
    return all_series


def _check_pixel_type(s: tifffile.TiffPageSeries, p: Path) -> None:
    if s.dtype is None:
        raise ValueError(f"{str(p)!r}: unsupported pixel format")
    dtype = np.dtype(s.dtype)
    if dtype not in (np.dtype(bool), np.dtype(np.float16)):
        as_dtype(dtype)  # raises for complex ...


def _check_complete(s: tifffile.TiffPageSeries, p: Path, size: int) -> None:
    """Raise ValueError if the first or last page's pixels lie past the end."""
    pages: list[Any] = [s.keyframe]
    with contextlib.suppress(Exception):
        last = s.pages[len(s.pages) - 1] if len(s.pages) > 1 else None
        if last is not None:
            pages.append(last)
    for page in pages:
        # a corrupt size tag (10^9 rows) with the strips of a small image:
        # refuse it here rather than allocate the declared plane on reading
        chunks = math.prod(getattr(page, "chunked", s.keyframe.chunked))
        if len(page.dataoffsets) < chunks:
            raise CorruptFileError(
                f"{str(p)!r} is truncated or corrupt: its header declares "
                f"{s.keyframe.shape} pixels in {chunks} strips or tiles but "
                f"lists {len(page.dataoffsets)}",
                p,
            )
        ends = [
            o + n
            for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)
            if o and n
        ]
        if ends and max(ends) > size:
            raise CorruptFileError(
                f"{str(p)!r} is truncated: its pixels reach byte {max(ends)} "
                f"but the file has {size} bytes",
                p,
            )


def _open_mapped(
    p: Path, handle: TiffHandle, s: tifffile.TiffPageSeries, mode: str, size: int
) -> Storage | None:
    """The memory-mapped storage of ``s``, or None if it cannot be mapped."""
    offset = s.dataoffset
    if offset is None or np.dtype(s.dtype) in (np.dtype(bool), np.dtype("f2")):
        return None
    dtype = np.dtype(handle.tif.byteorder + s.dtype.char)
    nbytes = math.prod(s.shape) * dtype.itemsize
    if offset + nbytes > size:
        raise CorruptFileError(
            f"{str(p)!r} is truncated: its header declares {s.shape} "
            f"{s.dtype} pixels ({nbytes} bytes from byte {offset}) but the "
            f"file has {size} bytes",
            p,
        )
    base = np.memmap(
        p,
        dtype=dtype,
        mode=mode,  # type: ignore[call-overload]
        offset=offset,
        shape=tuple(s.shape),
    )
    try:
        view = to_tczyx(base, s.axes)
    except ValueError:
        return None  # e.g. channels and samples apart ("CYXS"): decode lazily
    return MappedStorage.of_array(p, view, base, writable=mode == "r+")


def _check_series_type(series: Any) -> None:
    if isinstance(series, bool) or not isinstance(series, (int, np.integer)):
        raise TypeError(f"series must be an integer, got {series!r}")


def _select(
    all_series: list[tifffile.TiffPageSeries], series: Any, p: Path
) -> tifffile.TiffPageSeries:
    if not 0 <= series < len(all_series):
        raise IndexError(
            f"series {series} does not exist in {str(p)!r}: it has "
            f"{len(all_series)} series (0..{len(all_series) - 1}); list them "
            "with napari_diskimage.tiff_series(path)"
        )
    return all_series[int(series)]


def _check_declared_size(tif: Any, s: Any, index: int, p: Any) -> None:
    """Refuse a file whose ImageJ or tifffile header declares more pixels
    than the series tifffile could read.

    tifffile falls back to the pages it can read when the header describes
    more than the file holds (a truncated or corrupt file); opening that
    part silently would hide the loss.
    """
    try:
        declared = 0
        if tif.is_imagej and s.kind.lower() != "imagej":
            images = int((tif.imagej_metadata or {}).get("images", 1))
            declared = images * math.prod(s.keyframe.shape)
        elif tif.is_shaped:  # tifffile keeps kind "shaped" on a mismatch
            meta = tif.shaped_metadata or ()
            if index < len(meta):
                declared = math.prod(int(n) for n in meta[index].get("shape", ()))
    except (TypeError, ValueError, AttributeError):
        declared = 1 << 128  # unreadable header metadata: corrupt
    if declared > math.prod(s.shape):
        raise CorruptFileError(
            f"{str(p)!r} is truncated or corrupt: its header declares "
            f"{declared} pixels but only {s.shape} can be read; restore the "
            "file or save it again",
            p,
        )


def _corrupt(p: Path, exc: BaseException) -> CorruptFileError:
    return CorruptFileError(
        f"cannot open {str(p)!r}: its TIFF header is corrupt or unsupported "
        f"({type(exc).__name__}: {exc}); check the file with another program",
        p,
    )


def is_reduced(s: tifffile.TiffPageSeries) -> bool:
    """True for a series of reduced-resolution pages (NewSubfileType bit 0)."""
    return bool(getattr(s.keyframe, "subfiletype", 0) & 1)


def level_sources(
    all_series: list[tifffile.TiffPageSeries], index: int
) -> list[tuple[tifffile.TiffPageSeries, int]]:
    """The stored coarser levels of series ``index``, as (series, level).

    tifffile lists SubIFD, OME and SVS levels in ``series.levels``; for
    some files (e.g. a z stack with SubIFDs) it lists each level as a
    series of its own, flagged reduced-resolution, right after the base.
    """
    s = all_series[index]
    if len(s.levels) > 1:
        return [(s, level) for level in range(1, len(s.levels))]
    sources = []
    planes = tczyx_shape(s.axes, s.shape)[:3]
    for following in all_series[index + 1 :]:
        # such levels lose their axes names (QYX for ZYX): compare t, c, z
        same_planes = tczyx_shape(following.axes, following.shape)[:3] == planes
        if not (is_reduced(following) and same_planes):
            break
        sources.append((following, 0))
    return sources


def open_tiff(
    path: str | os.PathLike[str],
    mode: str = "r",
    *,
    series: int = 0,
    cache_bytes: int | None = None,
) -> Opened:
    """Open series ``series`` of a TIFF file without reading its pixels
    (see :func:`napari_diskimage.open_tiff` for the parameters and errors)."""
    p = check_readable(path, "TIFF file")
    mode = check_mode(mode)
    _check_series_type(series)
    if cache_bytes is not None and cache_bytes < 0:
        raise ValueError(
            f"cannot open {str(p)!r} with cache_bytes={cache_bytes}: give 0 or "
            "more bytes for its decoded chunks (None: the default)"
        )
    if mode == "r+":
        check_writable_file(p)
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"cannot open {str(p)!r}: the file is empty (0 bytes)")
    handle = open_handle(p, cache_bytes)
    try:
        all_series = list_series(handle, p)
        s = _select(all_series, series, p)
        _check_declared_size(handle.tif, s, int(series), p)
        _check_pixel_type(s, p)
        spacing, unit = spacing_of(handle.tif, int(series), s)
        storage = _open_mapped(p, handle, s, mode, size)
        if storage is None:
            if mode == "r+":
                raise PermissionError(
                    errno.EACCES,
                    f"cannot edit {str(p)!r} in place (mode='r+'): its pixels "
                    f"are {compression_name(s)}. Open it read-only and copy "
                    "it (napari_diskimage.copy) to edit a copy",
                    str(p),
                )
            _check_complete(s, p, size)
            storage = LazyTiffStorage(handle, s, description=lazy_reason(s))
        # sizes of 0 (a damaged header) are refused here, naming the file
        Geometry.from_shape(storage.shape, storage.dtype)
        sources = level_sources(all_series, int(series))
        levels = open_levels(handle, sources, storage.shape)
        meta = ImageMeta(
            spacing=spacing,
            unit=unit,
            rgb=is_rgb(s.axes, s.shape, s.dtype),
            kind="tiff",
            # the series a viewer shows as layers (not pyramid levels or
            # thumbnails), read by the napari reader without parsing again
            shown_series=tuple(
                i for i, s in enumerate(all_series) if i == 0 or not is_reduced(s)
            ),
        )
    except OSError:  # mode 'r+' refused, no memory
        handle.close()
        raise
    except ValueError as exc:
        handle.close()
        if str(p) in str(exc):
            raise
        raise _corrupt(p, exc) from exc
    except Exception as exc:  # tifffile and zarr raise many types on bad headers
        handle.close()
        if not is_parse_error(exc):
            raise
        raise _corrupt(p, exc) from exc
    except BaseException:
        handle.close()
        raise
    if handle.users == 0:
        handle.close()  # a map needs no file handle (its levels took a share)
    return Opened(storage, meta, levels)


def open_levels(
    handle: TiffHandle,
    sources: list[tuple[tifffile.TiffPageSeries, int]],
    base_shape: tuple[int, ...],
) -> tuple[Storage, ...]:
    """The storages of the coarser stored levels ``(series, level)``.

    Levels with other t, c, z sizes, or not smaller in y and x than the
    previous one, are skipped.  The levels share ``handle``.
    """
    levels: list[Storage] = []
    previous = tuple(base_shape)
    for series, level in sources:
        stored = series.levels[level]
        shape = tczyx_shape(stored.axes, stored.shape)
        if shape[:3] != previous[:3] or not (
            shape[3] <= previous[3] and shape[4] <= previous[4] and shape != previous
        ):
            continue
        levels.append(LazyTiffStorage(handle, series, level=level))
        previous = shape
    return tuple(levels)
