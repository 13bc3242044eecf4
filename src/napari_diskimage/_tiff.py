"""Opening TIFF files as disk images, and the TIFF layout used to save them."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import tifffile

from ._diskimage import DiskImage
from ._files import check_mode, check_readable, check_writable_file
from ._geometry import as_dtype

__all__ = ["open_tiff"]

# tifffile axis letters -> position in (t, c, z, y, x).  S (samples, RGB)
# is a channel; Q/I (unknown or generic page sequence) are planes.
_TARGET = {"T": 0, "C": 1, "S": 1, "Z": 2, "Q": 2, "I": 2, "Y": 3, "X": 4}


def _unmappable_reason(series: tifffile.TiffPageSeries) -> str:
    page = series.keyframe
    reasons = []
    if page.compression != 1:
        reasons.append(f"compressed ({tifffile.COMPRESSION(page.compression).name})")
    if page.is_tiled:
        reasons.append("tiled")
    if page.predictor != 1:
        reasons.append("stored with a predictor")
    if page.planarconfig == 2 and page.samplesperpixel > 1:
        reasons.append("stored in separate colour planes")
    if not reasons:
        reasons.append("stored in pieces scattered through the file")
    return " and ".join(reasons)


def to_tczyx(array: np.ndarray, axes: str) -> np.ndarray:
    """A (t, c, z, y, x) *view* of ``array`` whose axes are ``axes``.

    Axes that map to the same position (e.g. ``"QZYX"``) are merged when
    they are adjacent; other letters become planes (z), frames (t) or
    channels (c), whichever is free.  Raises ValueError if no view exists.
    """
    axes = axes.upper()
    targets: list[int] = []
    for letter in axes:
        targets.append(_TARGET.get(letter, -1))
    for i, tgt in enumerate(targets):
        if tgt == -1:  # unknown letter: first free of z, t, c
            free = [p for p in (2, 0, 1) if p not in targets]
            targets[i] = free[0] if free else 2
    # merge adjacent axes with the same target
    shape: list[int] = []
    merged: list[int] = []
    for size, tgt in zip(array.shape, targets, strict=True):
        if merged and merged[-1] == tgt:
            shape[-1] *= size
        else:
            shape.append(size)
            merged.append(tgt)
    if len(set(merged)) != len(merged) or 3 not in merged or 4 not in merged:
        raise ValueError(f"cannot map TIFF axes {axes!r} to (t, c, z, y, x)")
    view = array.view()
    try:
        view.shape = tuple(shape)  # raises rather than copy
    except AttributeError as exc:
        raise ValueError(f"cannot map TIFF axes {axes!r} without a copy") from exc
    order = sorted(range(len(merged)), key=lambda i: merged[i])
    view = view.transpose(order)
    present = sorted(merged)
    full = [1] * 5
    for size, tgt in zip(view.shape, present, strict=True):
        full[tgt] = size
    strides = [0] * 5
    for stride, tgt in zip(view.strides, present, strict=True):
        strides[tgt] = stride
    return np.lib.stride_tricks.as_strided(
        view, shape=tuple(full), strides=tuple(strides), writeable=view.flags.writeable
    )


def _spacing(tif: tifffile.TiffFile, page: Any) -> tuple[tuple[float, float, float], str | None]:
    """Physical pixel size (z, y, x) and unit from ImageJ or TIFF tags."""
    z = y = x = 1.0
    unit = None
    ij = tif.imagej_metadata or {}
    try:
        res = page.tags.get("XResolution"), page.tags.get("YResolution")
        if res[0] is not None and res[1] is not None:
            rx = res[0].value[0] / res[0].value[1]
            ry = res[1].value[0] / res[1].value[1]
            if rx > 0 and ry > 0 and math.isfinite(rx) and math.isfinite(ry):
                x, y = 1.0 / rx, 1.0 / ry
        if ij:
            z = float(ij.get("spacing", 1.0)) or 1.0
            unit = ij.get("unit")
            if unit in ("micron", "\\u00B5m", "µm"):
                unit = "um"
        elif res[0] is not None:
            ru = page.tags.get("ResolutionUnit")
            if ru is not None and ru.value == 3:  # centimeter
                x, y, unit = x * 1e4, y * 1e4, "um"
            elif ru is not None and ru.value == 2 and (x, y) != (1.0, 1.0):
                x, y, unit = x * 25400, y * 25400, "um"
    except (TypeError, ValueError, ZeroDivisionError):
        return (1.0, 1.0, 1.0), None
    return (z, y, x), unit


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
        elif tif.is_shaped and s.kind.lower() != "shaped":
            meta = tif.shaped_metadata or ()
            if index < len(meta):
                declared = math.prod(int(n) for n in meta[index].get("shape", ()))
    except (TypeError, ValueError, AttributeError):
        declared = 1 << 128  # unreadable header metadata: corrupt
    if declared > math.prod(s.shape):
        raise ValueError(
            f"{str(p)!r} is truncated or corrupt: its header declares more "
            f"pixels than the file holds (only {s.shape} readable); restore "
            "the file or re-save it"
        )


def open_tiff(
    path: str | os.PathLike[str], mode: str = "r", *, series: int = 0
) -> DiskImage:
    """Open a TIFF file as a disk image without reading its pixels.

    IPSDK: ``PyIPSDK.openTiffImageFile``.  Only the header is parsed; the
    pixel data are memory-mapped, so the time does not depend on the file
    size.  Single and multi-page files, BigTIFF and ImageJ hyperstacks
    (also past 4 GiB) are supported; axes come from the file (ImageJ,
    OME, tifffile's own) and are arranged as (t, c, z, y, x).

    Parameters
    ----------
    path : str or path-like
        The TIFF file.
    mode : {"r", "r+"}
        ``"r"`` (default): read-only.  ``"r+"``: :meth:`DiskImage.write_pixel`
        edits the user's file in place; use it only when that is intended.
    series : int
        Which image series of the file to open (default the first).

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The path is missing, a folder, or unreadable.
    ValueError
        The file is not a valid TIFF, is truncated, or its pixels cannot be
        memory-mapped (compressed, tiled, ...); the message says which.
    IndexError
        ``series`` does not exist.
    """
    p = check_readable(path, "TIFF file")
    mode = check_mode(mode)
    if mode == "r+":
        check_writable_file(p)
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"cannot open {str(p)!r}: the file is empty (0 bytes)")
    try:
        tif = tifffile.TiffFile(p)
    except (tifffile.TiffFileError, ValueError, struct_error(), EOFError) as exc:
        raise ValueError(f"{str(p)!r} is not a valid TIFF file: {exc}") from None
    with tif:
        try:
            all_series = tif.series
        except Exception as exc:  # tifffile raises many types on corrupt IFDs
            raise ValueError(f"{str(p)!r} has a corrupt TIFF structure: {exc}") from None
        if not all_series:
            raise ValueError(f"{str(p)!r} contains no image data")
        if isinstance(series, bool) or not isinstance(series, int):
            raise TypeError(f"series must be an integer, got {series!r}")
        if not 0 <= series < len(all_series):
            raise IndexError(
                f"series {series} does not exist in {str(p)!r}: it has "
                f"{len(all_series)} series (0..{len(all_series) - 1})"
            )
        s = all_series[series]
        _check_declared_size(tif, s, series, p)
        if s.dtype is None:
            raise ValueError(f"{str(p)!r}: unsupported pixel format")
        as_dtype(s.dtype)  # raises for complex, bool, float16 ...
        offset = s.dataoffset
        if offset is None:
            raise ValueError(
                f"cannot memory-map {str(p)!r}: its pixels are "
                f"{_unmappable_reason(s)}. Convert it to an uncompressed TIFF "
                "(e.g. tifffile.imwrite(out, tifffile.imread(path))) or "
                "open it with tifffile."
            )
        dtype = np.dtype(tif.byteorder + s.dtype.char)
        nbytes = math.prod(s.shape) * dtype.itemsize
        if offset + nbytes > size:
            raise ValueError(
                f"{str(p)!r} is truncated: its header declares {s.shape} "
                f"{s.dtype} pixels ({nbytes} bytes from byte {offset}) but the "
                f"file has {size} bytes"
            )
        axes = s.axes
        spacing, unit = _spacing(tif, s.keyframe)
    base = np.memmap(p, dtype=dtype, mode=mode, offset=offset, shape=tuple(s.shape))
    view = to_tczyx(base, axes)
    return DiskImage(
        p, view, base=base, mode=mode, kind="tiff", spacing=spacing, unit=unit
    )


def struct_error() -> type[Exception]:
    import struct

    return struct.error
