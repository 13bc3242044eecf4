"""``open_zarr``: a Zarr store (OME-Zarr or a plain array) as a disk image."""

from __future__ import annotations

import os
from typing import Any

from ._diskimage import DiskImage
from .storage.zarr import open_zarr_storage

__all__ = ["open_zarr"]


def open_zarr(
    path: str | os.PathLike[str], mode: str = "r", *, level: int = 0
) -> DiskImage:
    """Open an OME-Zarr (NGFF 0.4, 0.5) or a plain Zarr v2/v3 array lazily.

    Nothing is decoded when it opens: a read decodes the chunks it touches
    (kept in a bounded cache).  The store's resolution levels are the
    display pyramid (``image.display_levels``).

    Parameters
    ----------
    path : str or os.PathLike
        The store's folder (``.zarr``, ``.ome.zarr``).
    mode : {"r", "r+"}
        ``"r+"`` lets :meth:`DiskImage.write_pixel` write into the store;
        the coarser levels covering a written pixel are updated.
    level : int
        The resolution level to open (0: the finest).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    CorruptFileError
        Not a Zarr store, broken metadata, a listed level missing, or a
        codec that is not installed; the message names the store.

    Examples
    --------
    >>> import napari_diskimage as ndi
    >>> image = ndi.open_zarr("scan.ome.zarr")  # doctest: +SKIP
    """
    opened = open_zarr_storage(path, mode, level)
    meta: dict[str, Any] = opened.meta
    storage = opened.storage
    base_z, base_y, base_x = storage.shape[2:]
    sz, sy, sx = meta["spacing"]
    levels = tuple(
        DiskImage(
            level_storage.path,
            level_storage,
            kind="zarr",
            spacing=(
                sz * base_z / level_storage.shape[2],
                sy * base_y / level_storage.shape[3],
                sx * base_x / level_storage.shape[4],
            ),
            unit=meta["unit"],
        )
        for level_storage in opened.levels
    )
    return DiskImage(
        storage.path,
        storage,
        mode=mode,
        kind="zarr",
        spacing=meta["spacing"],
        unit=meta["unit"],
        rgb=meta["rgb"],
        levels=levels,
        shown_series=meta["shown_series"],
    )
