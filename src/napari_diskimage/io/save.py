"""Saving an image to an uncompressed TIFF or a RAW file, streamed and atomic.

:func:`iter_save_tiff`, :func:`iter_save_raw` and :func:`iter_save` (by
suffix) are generators of ``(done_bytes, total_bytes)`` steps whose return
value is the saved path; :func:`save_tiff` and :func:`save_raw` drive them
with an optional ``progress(done, total)`` callback.  The pixels are
streamed (:func:`.stream.write_pixels`: by the kernel when they already lie
in a file) into a file written atomically (:func:`.atomic.atomic_write`).
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .._diskimage import DiskImage
from .._geometry import Geometry
from .._steps import ProgressCallback, Steps, run_steps
from .atomic import atomic_write, reserve
from .stream import Source, block_size, write_pixels

__all__ = [
    "iter_save",
    "iter_save_raw",
    "iter_save_tiff",
    "save_raw",
    "save_tiff",
    "tiff_layout",
]

_IMAGEJ_DTYPES = {np.dtype("uint8"), np.dtype("uint16"), np.dtype("float32")}


def check_target(path: str | os.PathLike[str], source: Source) -> Path:
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, f"cannot save to {str(target)!r}: it is a folder", str(target)
        )
    if not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot save to {str(target)!r}: folder {str(target.parent)!r} "
            "does not exist",
            str(target),
        )
    img = source.disk_image
    if img is not None and target.exists() and os.path.samefile(target, img.path):
        raise ValueError(
            f"cannot save {str(img.path)!r} onto itself: save to another name"
        )
    return target


def tiff_layout(geometry: Geometry) -> tuple[tuple[int, ...], dict[str, Any]]:
    """Axis order and tifffile arguments used to save ``geometry``.

    ImageJ hyperstacks (TZCYX, readable by Fiji) for the types ImageJ knows
    (uint8, uint16, float32), else tifffile's shaped TIFF with an axes
    string.  Axes of size 1 other than y and x are left out.
    """
    if geometry.dtype in _IMAGEJ_DTYPES:
        order = (0, 2, 1, 3, 4)  # T Z C Y X
        kwargs: dict[str, Any] = {"imagej": True}
    else:
        order = (0, 1, 2, 3, 4)
        kwargs = {"bigtiff": geometry.nbytes > 2**32 - 2**25}
    shape = geometry.shape
    kept = [a for a in order if shape[a] > 1 or a >= 3]
    axes = "".join("TCZYX"[a] for a in kept)
    kwargs["metadata"] = {"axes": axes}
    kwargs["photometric"] = "minisblack"  # never guess RGB from a size of 3
    kwargs["shape"] = tuple(shape[a] for a in kept)
    return order, kwargs


def iter_save_tiff(
    image: Any, path: str | os.PathLike[str], *, block_bytes: int | None = None
) -> Steps:
    """Steps of :func:`save_tiff`; returns the saved path."""
    block_bytes = block_size(block_bytes)
    geometry = Geometry.from_shape(*shape_dtype(image))
    order, kwargs = tiff_layout(geometry)
    source = Source(image, order)
    target = check_target(path, source)
    img = source.disk_image
    if img is not None and (img.spacing != (1.0, 1.0, 1.0) or img.unit):
        z, y, x = img.spacing
        kwargs["resolution"] = (1.0 / x, 1.0 / y)
        # ImageJ and tifffile's shaped metadata both keep z spacing and unit
        kwargs["metadata"].update(spacing=z, unit=img.unit or "pixel")
    dtype = geometry.dtype.newbyteorder("<")

    def write(fh: Any) -> Steps:
        with warnings.catch_warnings():
            # ImageJ hyperstacks past 4 GiB keep one IFD and the image count
            # (ImageJ's own layout); tifffile warns, open_tiff reads them.
            warnings.filterwarnings("ignore", ".*truncating ImageJ file", UserWarning)
            result = tifffile.imwrite(
                fh, shape=kwargs.pop("shape"), dtype=dtype, returnoffset=True, **kwargs
            )
        if result is None:  # pragma: no cover - tifffile contract
            raise OSError(f"tifffile did not write contiguous data to {target}")
        offset = result[0]
        fh.flush()
        end = max(os.fstat(fh.fileno()).st_size, offset + geometry.nbytes)
        reserve(fh.fileno(), end, target)
        return (
            yield from write_pixels(source, fh.fileno(), offset, dtype, block_bytes)
        )

    return (yield from atomic_write(target, geometry.nbytes + (1 << 20), write))


def iter_save_raw(
    image: Any,
    path: str | os.PathLike[str],
    byte_order: str = "<",
    *,
    block_bytes: int | None = None,
) -> Steps:
    """Steps of :func:`save_raw`; returns the saved path."""
    from .._files import check_byte_order

    block_bytes = block_size(block_bytes)

    byte_order = check_byte_order(byte_order)
    source = Source(image)
    target = check_target(path, source)
    dtype = source.geometry.dtype.newbyteorder(byte_order)  # type: ignore[arg-type]
    nbytes = source.geometry.nbytes

    def write(fh: Any) -> Steps:
        reserve(fh.fileno(), nbytes, target)
        return (yield from write_pixels(source, fh.fileno(), 0, dtype, block_bytes))

    return (yield from atomic_write(target, nbytes, write))


def shape_dtype(image: Any) -> tuple[tuple[int, ...], Any]:
    if isinstance(image, DiskImage):
        return image.shape, image.dtype
    if not (hasattr(image, "shape") and hasattr(image, "dtype")):
        image = np.asarray(image)
    return tuple(image.shape), image.dtype


def iter_save(
    image: Any,
    path: str | os.PathLike[str],
    byte_order: str = "<",
    *,
    block_bytes: int | None = None,
) -> Steps:
    """Steps of saving ``image`` as TIFF or RAW, chosen by ``path``'s suffix
    (``block_bytes``: see :func:`save_tiff`).

    Raises ValueError (before any work) for another suffix.
    """
    from .._files import format_of

    if format_of(path) == "tiff":
        return iter_save_tiff(image, path, block_bytes=block_bytes)
    return iter_save_raw(image, path, byte_order, block_bytes=block_bytes)


def save_tiff(
    image: Any,
    path: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    block_bytes: int | None = None,
) -> Path:
    """Save an image to an uncompressed TIFF, streaming with bounded memory.

    Types ImageJ knows (uint8, uint16, float32) are written as ImageJ
    hyperstacks, others as tifffile "shaped" TIFFs (BigTIFF past 4 GiB);
    both record the axes, and the physical pixel size when known, and reopen
    with :func:`open_tiff` and ``tifffile`` to the same pixels and axes.
    The file is written under a temporary name beside ``path`` and renamed
    when complete: a failed or cancelled save leaves no partial file and any
    previous file at ``path`` unchanged.

    ``block_bytes`` bounds the pixels held in memory at once (one block, one
    progress step); default :func:`~.stream.block_size`: the environment
    variable ``NAPARI_DISKIMAGE_BLOCK_BYTES`` or 32 MiB.

    Raises
    ------
    OSError
        Not enough space (checked first, with the numbers), or a write error.
    FileNotFoundError
        The target folder does not exist.
    ValueError
        ``path`` is the file the image is read from; ``block_bytes`` < 1.
    """
    return run_steps(iter_save_tiff(image, path, block_bytes=block_bytes), progress)


def save_raw(
    image: Any,
    path: str | os.PathLike[str],
    byte_order: str = "<",
    *,
    progress: ProgressCallback | None = None,
    block_bytes: int | None = None,
) -> Path:
    """Save the pixels to a RAW file: no header, (t, c, z, y, x), x fastest.

    Name the file after its geometry (``Geometry.filename``) so that
    :func:`open_raw` can reopen it by name.  Atomic and streaming as
    :func:`save_tiff`.
    """
    return run_steps(
        iter_save_raw(image, path, byte_order, block_bytes=block_bytes), progress
    )
