"""Labels as disk images: a volume of integer labels beside an image.

A labels image has the image's x, y, z and t sizes, one channel and an
unsigned integer type; it is painted in napari (see
``napari_diskimage._napari.labels``) straight into its file.
:func:`new_labels` makes one in the disk-image directory (a scratch file,
deleted when dropped: save it to keep it); ``open_labels`` (in ``_open``)
opens a saved labels file for an image, checked with :func:`check_labels`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._diskimage import DiskImage, new_disk_image
from ._geometry import Geometry
from ._meta import ImageMeta

__all__ = ["LABEL_DTYPES", "check_labels", "new_labels"]

#: Pixel types of labels: napari paints unsigned integers.
LABEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32))


def _label_dtype(dtype: Any) -> np.dtype:
    try:
        d = np.dtype(dtype)
    except TypeError:
        d = None
    if d not in LABEL_DTYPES:
        names = ", ".join(str(t) for t in LABEL_DTYPES)
        raise ValueError(f"labels must be {names}; got {dtype!r}")
    return d


def new_labels(image: Any, dtype: Any = "uint32") -> DiskImage:
    """A new scratch disk image of zeros to paint labels of ``image`` into.

    Same x, y, z and t sizes as ``image`` (a :class:`DiskImage` or an array
    with its (t, c, z, y, x) shape), one channel, ``dtype`` uint8, uint16 or
    uint32, the same spacing.  The space is reserved at once (a full disk
    fails here, with ENOSPC); the file is deleted when the labels are
    dropped unless saved (:meth:`DiskImage.save_tiff`).
    """
    d = _label_dtype(dtype)
    if isinstance(image, DiskImage):
        t, _, z, y, x = image.shape
        what = f"the labels of image {str(image.path)!r}"
    else:
        t, _, z, y, x = Geometry.from_shape(tuple(image.shape), np.uint8).shape
        what = "labels"
    meta = (
        ImageMeta(spacing=image.spacing, unit=image.unit)
        if isinstance(image, DiskImage)
        else None
    )
    return new_disk_image(Geometry(d, x, y, z, 1, t), what=what, meta=meta)


def check_labels(image: Any, labels: DiskImage) -> None:
    """ValueError unless ``labels`` can be the labels of ``image``: same x, y,
    z, t sizes, one channel, an unsigned integer type of napari's labels."""
    where = str(labels.path)
    if labels.rgb or labels.shape[1] != 1:
        raise ValueError(
            f"{where!r} has {labels.shape[1]} channels (an RGB or multi-channel "
            "image): labels have one; choose a labels file"
        )
    if labels.dtype not in LABEL_DTYPES:
        raise ValueError(
            f"{where!r} holds {labels.dtype} pixels: labels are uint8, uint16 "
            "or uint32 integers; choose a labels file, or convert it first "
            "(napari_diskimage.process.convert)"
        )
    shape = (
        image.shape
        if isinstance(image, DiskImage)
        else Geometry.from_shape(tuple(image.shape), np.uint8).shape
    )
    t, _, z, y, x = shape
    lt, _, lz, ly, lx = labels.shape
    if (lt, lz, ly, lx) != (t, z, y, x):
        raise ValueError(
            f"{where!r} is {lx} x {ly} x {lz} (x, y, z) with {lt} time points, "
            f"but the image is {x} x {y} x {z} with {t}: labels must have the "
            "image's sizes"
        )
