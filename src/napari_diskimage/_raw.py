"""Opening RAW files: pixels only, (t, c, z, y, x) order, x fastest."""

from __future__ import annotations

import numbers
import os

import numpy as np

from ._diskimage import DiskImage
from ._files import check_byte_order, check_mode, check_readable, check_writable_file
from ._geometry import Geometry
from .storage.mapped import MappedStorage

__all__ = ["open_raw"]


def open_raw(
    path: str | os.PathLike[str],
    geometry: Geometry | None = None,
    offset: int = 0,
    byte_order: str = "<",
    mode: str = "r",
) -> DiskImage:
    """Open a RAW file as a disk image without reading it (IPSDK openRawImageFile).

    Parameters
    ----------
    path : str or path-like
        The file.  Pixels are stored without compression in (t, c, z, y, x)
        order, x fastest, after ``offset`` bytes of header.
    geometry : Geometry, optional
        Pixel type and sizes.  By default parsed from the file name, e.g.
        ``Lena_510x509_UInt8.raw`` (see :meth:`Geometry.from_filename`).
    offset : int
        Header size in bytes before the first pixel.
    byte_order : {"<", ">"}
        Byte order of multi-byte pixels: little-endian (the default) or
        big-endian.
    mode : {"r", "r+"}
        ``"r"`` (default): read-only.  ``"r+"``: :meth:`DiskImage.write_pixel`
        edits the file in place.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The file is missing, a folder, or cannot be read (or written, for
        ``mode="r+"``).
    ValueError
        No geometry was given and the name does not carry one; or the file is
        smaller than ``offset`` + the geometry's size (both sizes are given).

    >>> img = open_raw("Lena_510x509_UInt8.raw")      # doctest: +SKIP
    >>> img.shape                                      # doctest: +SKIP
    (1, 1, 1, 509, 510)
    """
    p = check_readable(path, "RAW file")
    mode = check_mode(mode)
    byte_order = check_byte_order(byte_order)
    if geometry is None:
        try:
            geometry = Geometry.from_filename(p.name)
        except ValueError as exc:
            raise ValueError(
                f"{exc}; or pass the geometry, e.g. "
                "open_raw(path, Geometry('uint16', size_x, size_y, size_z))"
            ) from None
    elif not isinstance(geometry, Geometry):
        raise TypeError(f"geometry must be a Geometry, got {geometry!r}")
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral):
        raise TypeError(f"offset must be an integer number of bytes, got {offset!r}")
    offset = int(offset)
    if offset < 0:
        raise ValueError(f"offset must be 0 or more bytes, got {offset}")
    if mode == "r+":
        check_writable_file(p)
    size = p.stat().st_size
    needed = offset + geometry.nbytes
    if size < needed:
        raise ValueError(
            f"{str(p)!r} is too small for its geometry: it has {size} bytes but "
            f"offset {offset} + {geometry} ({geometry.nbytes} bytes) needs "
            f"{needed} bytes; check the sizes, pixel type and header offset"
        )
    dtype = geometry.dtype.newbyteorder(byte_order)
    base = np.memmap(p, dtype=dtype, mode=mode, offset=offset, shape=geometry.shape)
    storage = MappedStorage(p, base, base=base, writable=mode == "r+")
    return DiskImage(p, storage, mode=mode, kind="raw")
