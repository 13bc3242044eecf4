"""Image geometry: a pixel type and the sizes x, y, z, c, t.

Sizes are always given in the IPSDK order x, y, z, c, t; numpy arrays of a
geometry are indexed the other way round, ``(t, c, z, y, x)``, with x
fastest in memory and on disk.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AXES", "IPSDK_TYPES", "Geometry", "as_dtype"]

#: numpy axis order of every disk image array.
AXES = "TCZYX"

#: IPSDK pixel type names (eIBT_...) and their numpy types, matched without
#: regard to case.  Real32/Real64 are IPSDK's names, Float32/Float64 are
#: common in RAW file names written by other tools.
IPSDK_TYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("uint8"),
    "int8": np.dtype("int8"),
    "uint16": np.dtype("uint16"),
    "int16": np.dtype("int16"),
    "uint32": np.dtype("uint32"),
    "int32": np.dtype("int32"),
    "uint64": np.dtype("uint64"),
    "int64": np.dtype("int64"),
    "real32": np.dtype("float32"),
    "float32": np.dtype("float32"),
    "real64": np.dtype("float64"),
    "float64": np.dtype("float64"),
}

_TYPE_NAMES = {
    np.dtype("uint8"): "UInt8",
    np.dtype("int8"): "Int8",
    np.dtype("uint16"): "UInt16",
    np.dtype("int16"): "Int16",
    np.dtype("uint32"): "UInt32",
    np.dtype("int32"): "Int32",
    np.dtype("uint64"): "UInt64",
    np.dtype("int64"): "Int64",
    np.dtype("float32"): "Real32",
    np.dtype("float64"): "Real64",
}

# <name>_<X>x<Y>[x<Z>[x<C>[x<T>]]]_<Type>.raw ; the name part may itself
# contain underscores, so the sizes and the type are anchored at the end.
_RAW_NAME = re.compile(
    r"^(?P<name>.*)_(?P<sizes>\d+(?:x\d+){1,4})_(?P<type>[A-Za-z]+\d+)\.raw\Z",
    # DOTALL: file names may contain newlines; \Z: '$' would accept a
    # trailing newline; ASCII: only 0-9 are digits.
    re.IGNORECASE | re.DOTALL | re.ASCII,
)
_SIZES_HINT = (
    "expected '<name>_<X>x<Y>[x<Z>[x<C>[x<T>]]]_<Type>.raw', "
    "e.g. 'Lena_510x509_UInt8.raw' or 'porosity_125x97x47_UInt16.raw', "
    "with <Type> one of UInt8, Int8, UInt16, Int16, UInt32, Int32, UInt64, "
    "Int64, Real32 (Float32), Real64 (Float64)"
)


def as_dtype(dtype: Any) -> np.dtype:
    """Return the numpy dtype for a numpy-compatible type or an IPSDK name.

    Parameters
    ----------
    dtype : str, type or numpy.dtype
        ``"uint16"``, ``np.float32``, ``"UInt16"``, ``"Real32"``, ...

    Raises
    ------
    ValueError
        The type is unknown, or is not a supported pixel type (integers of
        8 to 64 bits and 32 or 64 bit floats; byte order is ignored here).

    >>> as_dtype("Real32")
    dtype('float32')
    """
    if isinstance(dtype, str) and dtype.lower() in IPSDK_TYPES:
        return IPSDK_TYPES[dtype.lower()]
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(
            f"unknown pixel type {dtype!r}: use a numpy type such as 'uint16' "
            f"or an IPSDK name such as 'UInt16' or 'Real32'"
        ) from exc
    if dt.kind in "iuf" and np.dtype(dt.name) in _TYPE_NAMES:
        return np.dtype(dt.name)  # the name drops the byte order
    raise ValueError(
        f"unsupported pixel type {dtype!r} ({dt}): disk images hold "
        f"{', '.join(sorted(set(_TYPE_NAMES.values())))} "
        "(numpy uint8 ... int64, float32, float64)"
    )


def _check_size(axis: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"size_{axis} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"size_{axis} must be at least 1, got {value}")
    return int(value)


@dataclass(frozen=True)
class Geometry:
    """The pixel type and sizes of an image (IPSDK ``geometry2d/3d/...``).

    Parameters
    ----------
    dtype : str, type or numpy.dtype
        Pixel type: anything numpy accepts (``"uint8"``, ``np.uint16``) or an
        IPSDK name (``"UInt8"``, ``"Real32"``).  Stored as a native numpy
        dtype; the byte order of a file is a property of the file, not of
        the geometry.
    size_x, size_y, size_z, size_c, size_t : int
        Sizes along x (columns), y (rows), z (planes), c (channels) and
        t (frames), each at least 1.

    Examples
    --------
    >>> g = Geometry("UInt16", 125, 97, 47)
    >>> g.shape            # numpy order (t, c, z, y, x)
    (1, 1, 47, 97, 125)
    >>> g.nbytes
    1139750
    """

    dtype: np.dtype
    size_x: int
    size_y: int
    size_z: int = 1
    size_c: int = 1
    size_t: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", as_dtype(self.dtype))
        for axis in "xyzct":
            name = f"size_{axis}"
            object.__setattr__(self, name, _check_size(axis, getattr(self, name)))

    @classmethod
    def from_shape(cls, shape: tuple[int, ...], dtype: Any) -> Geometry:
        """Geometry of a numpy shape in (t, c, z, y, x) order.

        Shorter shapes are right-aligned: ``(y, x)``, ``(z, y, x)``, ...
        """
        shape = tuple(int(s) for s in shape)
        if not 1 <= len(shape) <= 5:
            raise ValueError(
                f"cannot make a disk image of a {len(shape)}-dimensional "
                f"array (shape {shape}): at most 5 axes (t, c, z, y, x)"
            )
        full = (1,) * (5 - len(shape)) + shape
        t, c, z, y, x = full
        return cls(dtype, x, y, z, c, t)

    @classmethod
    def from_filename(cls, name: str | os.PathLike[str]) -> Geometry:
        """Parse a geometry from a RAW file name.

        The convention is ``<name>_<X>x<Y>[x<Z>[x<C>[x<T>]]]_<Type>.raw``,
        e.g. ``Lena_510x509_UInt8.raw`` or ``porosity_125x97x47_UInt16.raw``;
        the type is matched without regard to case.

        Raises
        ------
        ValueError
            The name does not follow the convention or names an unknown type;
            the message says what was expected.
        """
        base = os.path.basename(os.fspath(name))
        match = _RAW_NAME.match(base)
        if match is None:
            raise ValueError(f"cannot read a geometry from {base!r}: {_SIZES_HINT}")
        type_name = match["type"]
        if type_name.lower() not in IPSDK_TYPES:
            raise ValueError(
                f"unknown pixel type {type_name!r} in {base!r}: {_SIZES_HINT}"
            )
        sizes = [int(s) for s in match["sizes"].lower().split("x")]
        if any(s < 1 for s in sizes):
            raise ValueError(f"sizes must be at least 1 in {base!r}: {_SIZES_HINT}")
        return cls(IPSDK_TYPES[type_name.lower()], *sizes)

    # --- derived properties -------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """numpy shape ``(t, c, z, y, x)``."""
        return (self.size_t, self.size_c, self.size_z, self.size_y, self.size_x)

    @property
    def sizes(self) -> tuple[int, int, int, int, int]:
        """IPSDK sizes ``(x, y, z, c, t)``."""
        return (self.size_x, self.size_y, self.size_z, self.size_c, self.size_t)

    @property
    def size(self) -> int:
        """Number of pixels."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the pixel data in bytes."""
        return self.size * self.dtype.itemsize

    @property
    def type_name(self) -> str:
        """IPSDK name of the pixel type, e.g. ``"UInt16"``."""
        return _TYPE_NAMES[self.dtype]

    def filename(self, name: str) -> str:
        """RAW file name that carries this geometry (inverse of from_filename).

        Trailing sizes of 1 are left out: ``Lena_510x509_UInt8.raw``.
        """
        sizes = list(self.sizes)
        while len(sizes) > 2 and sizes[-1] == 1:
            sizes.pop()
        return f"{name}_{'x'.join(map(str, sizes))}_{self.type_name}.raw"

    def __str__(self) -> str:
        sizes = " x ".join(map(str, self.sizes))
        return f"{sizes} (x, y, z, c, t) {self.type_name}"


def _as_float(value: Any, dtype: np.dtype) -> float:
    try:
        return float(value)
    except OverflowError:  # e.g. 2**2000: beyond any float
        raise ValueError(
            f"value {value!r} does not fit in a {dtype} image (too large)"
        ) from None


def check_value(value: Any, dtype: np.dtype) -> np.generic:
    """Return ``value`` as ``dtype`` if it is held exactly, else raise.

    Integer types take integers (and integral floats such as ``2.0``) within
    their range; float types take any real number, rounded to the type.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if not isinstance(value, numbers.Real):
        raise TypeError(
            f"pixel value must be a real number, got {value!r} ({type(value).__name__})"
        )
    if dtype.kind in "iu":
        if not isinstance(value, numbers.Integral):
            fvalue = _as_float(value, dtype)
            if not math.isfinite(fvalue) or not fvalue.is_integer():
                raise ValueError(
                    f"value {value!r} cannot be stored exactly in a {dtype} "
                    "image (integers only); round it first or copy the image "
                    "to a float type"
                )
            value = int(fvalue)
        info = np.iinfo(dtype)
        if not info.min <= int(value) <= info.max:
            raise ValueError(
                f"value {value!r} does not fit in a {dtype} image: it holds "
                f"{info.min}..{info.max}"
            )
        return dtype.type(int(value))
    fvalue = _as_float(value, dtype)
    with np.errstate(over="ignore"):
        result = dtype.type(fvalue)
    if math.isfinite(fvalue) and not np.isfinite(result):
        raise ValueError(
            f"value {value!r} overflows a {dtype} image (largest "
            f"{np.finfo(dtype).max:g})"
        )
    return result
