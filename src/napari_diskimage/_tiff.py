"""Listing the image series of a TIFF file (:func:`tiff_series`).

Opening one is :func:`napari_diskimage.open_tiff`
(:mod:`napari_diskimage.storage.tiff` parses and chooses the storage).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ._files import check_readable
from ._quiet import quieted
from ._tiff_meta import compression_name, is_rgb, tczyx_shape, to_tczyx
from .storage.tiff import is_reduced, level_sources, list_series, open_handle

__all__ = ["TiffSeriesInfo", "tiff_series", "to_tczyx"]


@dataclass(frozen=True)
class TiffSeriesInfo:
    """One image series of a TIFF file, as listed by :func:`tiff_series`.

    ``shape`` is (t, c, z, y, x) as :func:`open_tiff` will give it;
    ``axes`` are the file's own tifffile axes (e.g. ``"TZCYXS"``);
    ``levels`` counts stored resolution levels (1: not pyramidal);
    ``storage`` says how the pixels are stored; ``mapped`` is True if
    they can be memory-mapped (else they are decoded lazily); ``rgb`` as
    ``DiskImage.rgb``; ``reduced`` is True for a reduced-resolution
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
    handle = open_handle(p)
    try:
        infos = []
        all_series = list_series(handle, p)
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
                    levels=1 + len(level_sources(all_series, i)),
                    storage=(
                        "uncompressed, contiguous" if mappable else compression_name(s)
                    ),
                    mapped=mappable,
                    rgb=is_rgb(s.axes, s.shape, dtype),
                    reduced=i > 0 and is_reduced(s),
                )
            )
        return infos
    finally:
        handle.close()
