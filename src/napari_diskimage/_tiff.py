"""Opening TIFF files as disk images: mapped when possible, else lazily decoded."""

from __future__ import annotations

import contextlib
import errno
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ._diskimage import DiskImage
from ._errors import CorruptFileError
from ._files import check_mode, check_readable, check_writable_file
from ._geometry import as_dtype
from ._quiet import quieted
from ._tiff_meta import (
    compression_name,
    is_parse_error,
    is_rgb,
    lazy_reason,
    spacing_of,
    tczyx_shape,
    to_tczyx,
)
from .storage.lazy_tiff import LazyTiffStorage, TiffHandle, open_levels
from .storage.mapped import MappedStorage

__all__ = ["TiffSeriesInfo", "open_tiff", "tiff_series", "to_tczyx"]


def _open_handle(p: Path) -> TiffHandle:
    try:
        return TiffHandle(p)
    except Exception as exc:  # tifffile raises many types on corrupt headers
        if not is_parse_error(exc):
            raise
        raise CorruptFileError(
            f"{str(p)!r} is not a valid TIFF file ({type(exc).__name__}: {exc}); "
            "check that it is a TIFF, or open it as RAW with its geometry",
            p,
        ) from exc


def _all_series(handle: TiffHandle, p: Path) -> list[tifffile.TiffPageSeries]:
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
) -> MappedStorage | None:
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
    return MappedStorage(p, view, base=base, writable=mode == "r+")


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


def _is_reduced(s: tifffile.TiffPageSeries) -> bool:
    """True for a series of reduced-resolution pages (NewSubfileType bit 0)."""
    return bool(getattr(s.keyframe, "subfiletype", 0) & 1)


def _level_sources(
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
        if not (_is_reduced(following) and same_planes):
            break
        sources.append((following, 0))
    return sources


@quieted
def open_tiff(
    path: str | os.PathLike[str], mode: str = "r", *, series: int = 0
) -> DiskImage:
    """Open a TIFF file as a disk image without reading its pixels.

    IPSDK: ``PyIPSDK.openTiffImageFile``.  Only the header is parsed, so the
    time does not depend on the file size.  Axes come from the file
    (ImageJ hyperstacks, OME-TIFF dimension order, tifffile's shaped
    metadata; plain multi-page files are z stacks; RGB(A) samples are
    channels, with ``rgb`` true) and are arranged as (t, c, z, y, x).  The
    physical pixel size (ImageJ, OME, resolution tags) becomes ``spacing``
    (z, y, x) and ``unit``.

    Uncompressed contiguous pixels (single and multi-page files, BigTIFF,
    ImageJ hyperstacks past 4 GiB) are memory-mapped (``is_mapped``).
    Other pixels (LZW, Deflate, Zstd, JPEG ... compression, tiles, scattered
    strips, predictors, separate colour planes) are decoded lazily, a strip
    or tile at a time when read, with a bounded cache: the result is a
    read-only disk image (:mod:`napari_diskimage.storage.lazy_tiff`); copy it
    (:func:`copy`) to edit it.

    A pyramidal TIFF (SubIFDs, OME or SVS levels) lists its stored levels in
    ``display_levels``, finest first.

    Parameters
    ----------
    path : str or path-like
        The TIFF file.
    mode : {"r", "r+"}
        ``"r"`` (default): read-only.  ``"r+"``: :meth:`DiskImage.write_pixel`
        edits the user's file in place; use it only when that is intended.
        Only memory-mappable files can be opened ``"r+"``.
    series : int
        Which image series of the file to open (default the first); see
        :func:`tiff_series` for the list.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The path is missing, a folder, or unreadable; or ``mode="r+"`` for a
        file that is compressed or tiled (PermissionError: copy it instead).
    ValueError
        The file is not a valid TIFF, is truncated, or has an unsupported
        pixel type (complex ...); the message says which.
    IndexError
        ``series`` does not exist.
    """
    p = check_readable(path, "TIFF file")
    mode = check_mode(mode)
    _check_series_type(series)
    if mode == "r+":
        check_writable_file(p)
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"cannot open {str(p)!r}: the file is empty (0 bytes)")
    handle = _open_handle(p)
    try:
        all_series = _all_series(handle, p)
        s = _select(all_series, series, p)
        _check_declared_size(handle.tif, s, int(series), p)
        _check_pixel_type(s, p)
        spacing, unit = spacing_of(handle.tif, int(series), s)
        storage: MappedStorage | LazyTiffStorage | None
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
        sources = _level_sources(all_series, int(series))
        levels = open_levels(handle, sources, storage.shape, spacing, unit)
        image = DiskImage(
            p,
            storage,
            mode=mode,
            kind="tiff",
            spacing=spacing,
            unit=unit,
            rgb=is_rgb(s.axes, s.shape, s.dtype),
            levels=levels,
            # the series a viewer shows as layers (not pyramid levels or
            # thumbnails), read by the napari reader without parsing again
            shown_series=tuple(
                i for i, s in enumerate(all_series) if i == 0 or not _is_reduced(s)
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
    if image.is_mapped and not levels:
        handle.close()  # the map does not need the file handle
    elif image.is_mapped:
        level_storage = levels[0].storage
        assert isinstance(level_storage, LazyTiffStorage)
        level_storage.owns_handle = True  # closed with the mapped image
    return image


@dataclass(frozen=True)
class TiffSeriesInfo:
    """One image series of a TIFF file, as listed by :func:`tiff_series`.

    ``shape`` is (t, c, z, y, x) as :func:`open_tiff` will give it;
    ``axes`` are the file's own tifffile axes (e.g. ``"TZCYXS"``);
    ``levels`` counts stored resolution levels (1: not pyramidal);
    ``storage`` says how the pixels are stored; ``mapped`` is True if
    they can be memory-mapped (else they are decoded lazily); ``rgb`` as
    :attr:`DiskImage.rgb`; ``reduced`` is True for a reduced-resolution
    image (a pyramid level of an earlier series, or a thumbnail): a reader
    showing one layer per series should skip those.
    """

    index: int
    name: str
    axes: str
    shape: tuple[int, int, int, int, int]
    dtype: np.dtype
    levels: int
    storage: str
    mapped: bool
    rgb: bool
    reduced: bool = False

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


@quieted
def tiff_series(path: str | os.PathLike[str]) -> list[TiffSeriesInfo]:
    """List the image series of a TIFF file without reading pixels.

    Most files have one; some hold several (e.g. an image and its
    thumbnail, or several positions).  Open one with
    ``open_tiff(path, series=info.index)``.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError, ValueError
        As :func:`open_tiff`.
    """
    p = check_readable(path, "TIFF file")
    if p.stat().st_size == 0:
        raise ValueError(f"cannot open {str(p)!r}: the file is empty (0 bytes)")
    handle = _open_handle(p)
    try:
        infos = []
        all_series = _all_series(handle, p)
        for i, s in enumerate(all_series):
            dtype = np.dtype(s.dtype) if s.dtype is not None else np.dtype("V1")
            mappable = s.dataoffset is not None and dtype.kind in "iuf"
            infos.append(
                TiffSeriesInfo(
                    index=i,
                    name=s.name or f"series {i}",
                    axes=s.axes,
                    shape=tczyx_shape(s.axes, s.shape),
                    dtype=dtype,
                    levels=1 + len(_level_sources(all_series, i)),
                    storage=(
                        "uncompressed, contiguous" if mappable else compression_name(s)
                    ),
                    mapped=mappable,
                    rgb=is_rgb(s.axes, s.shape, dtype),
                    reduced=i > 0 and _is_reduced(s),
                )
            )
        return infos
    finally:
        handle.close()
