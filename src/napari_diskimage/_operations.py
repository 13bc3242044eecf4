"""The long operations of a disk image, which live outside the facade.

:mod:`napari_diskimage.io` (copy and the saves) and the view cache import
the facade, so the facade does not import them back: they register here
(:func:`register_operations`, when the package is imported) and
:class:`LongOperations` gives :class:`~napari_diskimage.DiskImage` its
methods that call them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._steps import ProgressCallback

if TYPE_CHECKING:
    from ._diskimage import DiskImage

__all__ = ["LongOperations", "register_operations"]

#: The registered operations, by name (``copy``, ``save_tiff``, ...).
_OPERATIONS: dict[str, Callable[..., Any]] = {}


def register_operations(**operations: Callable[..., Any]) -> None:
    """Give the facade its long operations (``copy``, ``save_tiff``,
    ``save_raw``, ``save_ome_zarr``; the ``pixel_written`` hook); called by
    :mod:`napari_diskimage.io` and the view cache."""
    _OPERATIONS.update(operations)


class LongOperations:
    """The methods of :class:`~napari_diskimage.DiskImage` that run a
    registered long operation on it."""

    def copy(self, *, progress: ProgressCallback | None = None) -> DiskImage:
        """A new scratch disk image with the same pixels (see :func:`copy`)."""
        return _OPERATIONS["copy"](self, progress=progress)

    def save_tiff(
        self, path: str | os.PathLike[str], *, progress: ProgressCallback | None = None
    ) -> Path:
        """Save to an uncompressed TIFF (see :func:`save_tiff`)."""
        return _OPERATIONS["save_tiff"](self, path, progress=progress)

    def save_raw(
        self,
        path: str | os.PathLike[str],
        byte_order: str = "<",
        *,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Save the pixels to a RAW file (see :func:`save_raw`)."""
        return _OPERATIONS["save_raw"](
            self, path, byte_order=byte_order, progress=progress
        )

    def save_ome_zarr(
        self,
        path: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
        **options: Any,
    ) -> Path:
        """Save as a multiscale OME-Zarr store (see :func:`save_ome_zarr`;
        ``options`` are its keywords: labels, chunks, levels, downsample,
        compressor, version)."""
        return _OPERATIONS["save_ome_zarr"](self, path, progress=progress, **options)
