"""Labels as disk images: a volume of integer labels beside an image.

A labels image has the image's x, y, z and t sizes, one channel and an
unsigned integer type; it is painted in napari (see
``napari_diskimage._napari.labels``) straight into its file.
:func:`new_labels` makes one in the disk-image directory (a scratch file,
deleted when dropped: save it to keep it); :func:`open_labels` opens a
saved labels file for an image, checked against it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._diskimage import DiskImage, new_disk_image
from ._files import format_of
from ._geometry import Geometry
from ._raw import open_raw
from ._tiff import open_tiff

__all__ = ["LABEL_DTYPES", "check_labels", "new_labels", "open_labels"]

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
    labels = new_disk_image(Geometry(d, x, y, z, 1, t), what=what)
    if isinstance(image, DiskImage):
        labels.spacing, labels.unit = image.spacing, image.unit
    return labels


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


def open_labels(
    path: str | os.PathLike[str], image: Any = None, mode: str = "r"
) -> DiskImage:
    """Open a saved labels file (TIFF, or RAW with the geometry in its name),
    checked against ``image`` if given (:func:`check_labels`).  ``mode="r+"``
    paints into the file itself; ``"r"`` opens it read-only (copy it to
    paint, as napari_diskimage.copy does)."""
    p = Path(path)
    labels = open_tiff(p, mode) if format_of(p) == "tiff" else open_raw(p, mode=mode)
    try:
        if image is not None:
            check_labels(image, labels)
        else:
            check_labels(labels, labels)
        if not labels.is_mapped:
            raise ValueError(
                f"{str(p)!r} is stored {labels.storage.describe()}: labels are "
                "painted into a mapped file; save it uncompressed first "
                "(napari-diskimage copy FILE labels.tif)"
            )
    except BaseException:
        labels.close()
        raise
    return labels
