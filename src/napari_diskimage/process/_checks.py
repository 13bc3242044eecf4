"""Checks of inputs and parameters, shared by every operation.

Each operation checks its parameters before it makes anything (a bad
call leaves no file); the messages name the image, the value and what to
do instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._diskimage import DiskImage
from .._errors import closed_error
from .._geometry import Geometry, as_dtype

__all__ = [
    "check_image",
    "check_mask",
    "dtype_of",
    "mask_values",
    "name_of",
    "number",
    "per_axis",
    "same_shape",
    "shape_of",
]


def shape_of(image: Any) -> tuple[int, int, int, int, int]:
    """(t, c, z, y, x) shape of a disk image or array-like of 1 to 5 axes."""
    if isinstance(image, DiskImage):
        return image.shape
    if not (hasattr(image, "shape") and hasattr(image, "dtype")):
        raise TypeError(f"expected a DiskImage or an array, got {type(image).__name__}")
    return Geometry.from_shape(tuple(image.shape), image.dtype).shape


def name_of(image: Any) -> str:
    """The image in a message: its file, or what kind of array it is."""
    if isinstance(image, DiskImage):
        return repr(str(image.path))
    return f"an in-memory {type(image).__name__}"


def dtype_of(image: Any) -> np.dtype:
    """The pixel type an operation sees (a numpy bool mask as uint8)."""
    dtype = np.dtype(image.dtype)
    if dtype == np.dtype(bool):  # a numpy mask
        return np.dtype(np.uint8)
    return as_dtype(dtype)


def check_image(image: Any, what: str) -> None:
    """An open disk image or an array of 1 to 5 axes of a known type."""
    if isinstance(image, DiskImage) and image.closed:
        raise closed_error(image.path)
    shape_of(image)
    dtype_of(image)


def check_mask(image: Any, what: str) -> None:
    """A mask is an integer image: floats are refused before any work (its
    values are checked block by block, :func:`mask_values`)."""
    dtype = dtype_of(image)
    if dtype.kind == "f":
        raise TypeError(
            f"{what} expects a mask (an integer image, 0 = background, "
            f"nonzero = foreground) but {name_of(image)} holds {dtype} values; "
            "make a mask first, e.g. with threshold(image, low)"
        )


def mask_values(
    values: np.ndarray, box: Sequence[tuple[int, int]], name: str, what: str
) -> np.ndarray:
    """A block of a 0/1 mask as uint8, or a ValueError naming the image
    ``name``, the value found and where (``box`` over t, c, z, y, x)."""
    if values.dtype == np.bool_:
        return values.view(np.uint8)
    if values.size and (values.max() > 1 or values.min() < 0):
        bad = values[(values > 1) | (values < 0)].flat[0]
        raise ValueError(
            f"{what} expects a mask of 0 (background) and 1 (foreground), "
            f"found the value {bad} in {name} (in the block from x={box[4][0]}, "
            f"y={box[3][0]}, z={box[2][0]}); make a mask first with "
            "Threshold (process.threshold(image, low))"
        )
    return values.astype(np.uint8, copy=False)


def same_shape(a: Any, b: Any, what: str) -> None:
    """Images of the same size, or a ValueError giving both sizes."""
    sa, sb = shape_of(a), shape_of(b)
    if sa != sb:
        ga = Geometry.from_shape(sa, "uint8")
        gb = Geometry.from_shape(sb, "uint8")
        raise ValueError(
            f"{what}: the images differ in size: {name_of(a)} is "
            f"{' x '.join(map(str, ga.sizes))} and {name_of(b)} is "
            f"{' x '.join(map(str, gb.sizes))} (x, y, z, c, t); crop or bin "
            "one of them first"
        )


def number(value: Any, name: str) -> float:
    """A real number (not bool, not NaN) as a float."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if math.isnan(float(value)):
        raise ValueError(f"{name} must be a number, got NaN")
    return float(value)


def per_axis(
    value: Any, name: str, image: Any, *, integer: bool, minimum: float
) -> tuple[Any, Any, Any]:
    """A scalar or (x, y, z) parameter as (z, y, x); z is unused for 2D."""
    values: list[Any]
    if isinstance(value, (numbers.Real, np.number)) and not isinstance(value, bool):
        values = [value] * 3
    elif (
        isinstance(value, Sequence)
        and len(value) in (2, 3)
        and not isinstance(value, str)
    ):
        values = [*value, 0 if len(value) == 2 else value[2]]
        if len(value) == 2:
            values[2] = minimum  # (x, y) for a 2D image
    else:
        raise TypeError(f"{name} must be a number or (x, y, z) numbers, got {value!r}")
    out: list[Any] = []
    for axis, item in zip("xyz", values, strict=True):
        if isinstance(item, bool) or not isinstance(item, (numbers.Real, np.number)):
            raise TypeError(f"{name} for {axis} must be a number, got {item!r}")
        v = float(item)
        if integer and math.isfinite(v) and v != int(v):
            raise ValueError(f"{name} for {axis} must be a whole number, got {v!r}")
        if not math.isfinite(v) or v < minimum:
            raise ValueError(
                f"{name} must be at least {minimum:g} (got {item!r} for {axis})"
            )
        out.append(int(v) if integer else v)
    x, y, z = out
    if shape_of(image)[2] == 1:  # a 2D image: nothing along z
        z = 0 if not integer else (1 if minimum >= 1 else 0)
    return (z, y, x)
