"""TIFF metadata, read in one place: axes, pixel size, how pixels are stored.

Every storage kind that reads TIFF files (``storage.mapped`` for
uncompressed files, ``storage.lazy_tiff``, ``storage.sequence``) and
:func:`napari_diskimage.open_tiff` use these helpers; none of them parses
tifffile's metadata itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import tifffile

__all__ = [
    "WIDEN",
    "axis_targets",
    "compression_name",
    "is_parse_error",
    "is_rgb",
    "lazy_reason",
    "spacing_of",
    "tczyx_shape",
    "to_tczyx",
]

# tifffile axis letters -> position in (t, c, z, y, x).  S (samples, RGB)
# is a channel; Q/I (unknown or generic page sequence) are planes.
_TARGET = {"T": 0, "C": 1, "S": 1, "Z": 2, "Q": 2, "I": 2, "Y": 3, "X": 4}

# Pixel types a disk image cannot hold, and what they are shown as.
WIDEN: dict[np.dtype, np.dtype] = {
    np.dtype(bool): np.dtype(np.uint8),
    np.dtype(np.float16): np.dtype("f4"),
}


def axis_targets(axes: str) -> list[int]:
    """Position in (t, c, z, y, x) of each tifffile axis letter in ``axes``.

    Other letters (e.g. ``"E"``, ``"H"``, ``"R"``) become planes (z), frames
    (t) or channels (c), whichever is free first; several letters may share
    a position (they are then merged, the first one slowest).
    """
    targets = [_TARGET.get(letter, -1) for letter in axes.upper()]
    for i, tgt in enumerate(targets):
        if tgt == -1:
            free = [p for p in (2, 0, 1) if p not in targets]
            targets[i] = free[0] if free else 2
    return targets


def tczyx_shape(axes: str, shape: tuple[int, ...]) -> tuple[int, int, int, int, int]:
    """The (t, c, z, y, x) shape of data with tifffile ``axes`` and ``shape``."""
    full = [1] * 5
    for tgt, size in zip(axis_targets(axes), shape, strict=True):
        full[tgt] *= size
    return (full[0], full[1], full[2], full[3], full[4])


def is_rgb(axes: str, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """True if the channels are the 3 or 4 samples of an RGB(A) image."""
    targets = axis_targets(axes)
    channel_axes = [i for i, tgt in enumerate(targets) if tgt == 1]
    return (
        len(channel_axes) == 1
        and axes.upper()[channel_axes[0]] == "S"
        and shape[channel_axes[0]] in (3, 4)
        and np.dtype(dtype) in (np.dtype(np.uint8), np.dtype(np.uint16))
    )


def compression_name(series: tifffile.TiffPageSeries) -> str:
    """How the series' pixels are stored, in words (for messages)."""
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


def lazy_reason(s: tifffile.TiffPageSeries) -> str | None:
    """Why pixels are decoded rather than mapped, if not for their storage."""
    dtype = np.dtype(s.dtype)
    extra = ""
    if dtype == np.dtype(bool):
        extra = "1 bit per pixel (shown as uint8 0 and 1)"
    elif dtype == np.dtype(np.float16):
        extra = "16-bit floats (shown as float32)"
    if s.dataoffset is None:  # compressed, tiled ...
        storage = compression_name(s)
        if extra and storage.startswith("stored in pieces"):
            return extra  # 1-bit pixels are never "contiguous" to tifffile
        return f"{storage}, {extra}" if extra else storage
    return extra or f"laid out as {s.axes!r}, which has no (t, c, z, y, x) view"


def to_tczyx(array: np.ndarray, axes: str) -> np.ndarray:
    """A (t, c, z, y, x) *view* of ``array`` whose axes are ``axes``.

    Axes that map to the same position (e.g. ``"QZYX"``) are merged when
    they are adjacent; other letters become planes (z), frames (t) or
    channels (c), whichever is free.  Raises ValueError if no view exists.
    """
    targets = axis_targets(axes)
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


# --- physical pixel size ------------------------------------------------
# metres per unit, for converting OME sizes given in different units
_METRES = {
    "m": 1.0,
    "cm": 1e-2,
    "mm": 1e-3,
    "um": 1e-6,
    "nm": 1e-9,
    "pm": 1e-12,
    "Å": 1e-10,
    "angstrom": 1e-10,
}


def _unit(name: Any) -> str | None:
    """A unit name as napari-diskimage spells it (``"um"`` for microns)."""
    if not isinstance(name, str) or not name.strip():
        return None
    name = name.strip()
    if name in ("micron", "microns", "µm", "μm", "\\u00B5m", "um"):
        return "um"
    if name.lower() in ("pixel", "pixels", "px"):
        return None
    return name


def _positive(value: Any, default: float = 1.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if v > 0 and math.isfinite(v) else default


def _ome_spacing(
    tif: tifffile.TiffFile, index: int, series: tifffile.TiffPageSeries
) -> tuple[tuple[float, float, float], str | None] | None:
    """Physical size (z, y, x) and unit from the OME-XML of series ``index``."""
    try:
        root = ET.fromstring(tif.ome_metadata or "")
    except ET.ParseError:
        return None
    images = [el for el in root if el.tag.endswith("Image")]
    if len(images) != len(tif.series):  # tifffile skipped some: match by name
        images = [el for el in images if el.attrib.get("Name") == series.name]
        index = 0
    if index >= len(images):
        return None
    pixels = next((el for el in images[index] if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    attr = pixels.attrib
    sizes, units = [], []
    for axis in "ZYX":
        sizes.append(_positive(attr.get(f"PhysicalSize{axis}")))
        units.append(_unit(attr.get(f"PhysicalSize{axis}Unit", "µm")))
    if not any(f"PhysicalSize{a}" in attr for a in "ZYX"):
        return None
    unit = units[2]
    if unit is not None and unit in _METRES:  # y and z in the unit of x
        for i in (0, 1):
            other = units[i]
            if (
                other is not None
                and other in _METRES
                and f"PhysicalSize{'ZYX'[i]}" in attr
            ):
                sizes[i] *= _METRES[other] / _METRES[unit]
    return (sizes[0], sizes[1], sizes[2]), unit


def spacing_of(
    tif: tifffile.TiffFile, index: int, series: tifffile.TiffPageSeries
) -> tuple[tuple[float, float, float], str | None]:
    """Physical pixel size (z, y, x) and unit: OME, ImageJ, tifffile, tags."""
    page = series.keyframe
    try:
        if tif.is_ome:
            found = _ome_spacing(tif, index, series)
            if found is not None:
                return found
        z = y = x = 1.0
        unit = None
        res = page.tags.get("XResolution"), page.tags.get("YResolution")
        if res[0] is not None and res[1] is not None:
            rx = res[0].value[0] / res[0].value[1]
            ry = res[1].value[0] / res[1].value[1]
            if rx > 0 and ry > 0 and math.isfinite(rx) and math.isfinite(ry):
                x, y = 1.0 / rx, 1.0 / ry
        ij = tif.imagej_metadata if tif.is_imagej else None
        shaped = None
        if series.kind == "shaped" and page.description.startswith("{"):
            with contextlib.suppress(ValueError):
                shaped = json.loads(page.description)
            if not isinstance(shaped, dict):
                shaped = None
        meta = ij or shaped
        if meta and ("spacing" in meta or "unit" in meta):
            z = _positive(meta.get("spacing", 1.0))
            unit = _unit(meta.get("unit"))
        elif ij:
            unit = _unit(ij.get("unit"))
        elif res[0] is not None:
            ru = page.tags.get("ResolutionUnit")
            if ru is not None and ru.value == 3:  # centimeter
                x, y, unit = x * 1e4, y * 1e4, "um"
            elif ru is not None and ru.value == 2 and (x, y) != (1.0, 1.0):
                x, y, unit = x * 25400, y * 25400, "um"
    except (TypeError, ValueError, ZeroDivisionError, IndexError, AttributeError):
        return (1.0, 1.0, 1.0), None
    return (z, y, x), unit


# --- opening ------------------------------------------------------------
#: Packages whose exceptions, raised while parsing a file, mean the file
#: is bad (tifffile raises ValueError, KeyError, RuntimeError ... on
#: corrupt headers).  An exception raised in this package's own code is a
#: bug and is not disguised as a bad file.
_PARSERS = ("tifffile", "imagecodecs", "zarr", "numcodecs", "struct")


def is_parse_error(exc: BaseException) -> bool:
    """True if ``exc`` was raised while a parser read the file."""
    if isinstance(exc, (tifffile.TiffFileError, struct.error)):
        return True
    if not isinstance(exc, Exception) or isinstance(exc, (OSError, MemoryError)):
        return False
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_globals.get("__name__", "")
        tb = tb.tb_next
    return bool(last) and str(last).split(".")[0] in _PARSERS
