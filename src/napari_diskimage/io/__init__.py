"""Copying and saving disk images: streamed, bounded in memory, atomic.

- :mod:`.stream`: reading blocks of an image (:func:`~.stream.read_box`),
  the kernel copy, :func:`~.stream.copy` into a scratch disk image;
- :mod:`.atomic`: files written under a temporary name and renamed when
  complete;
- :mod:`.save`: uncompressed TIFF and RAW files;
- :mod:`.ome_zarr`: chunked, compressed multiscale OME-Zarr stores.
"""

from .._diskimage import register_operations
from .ome_zarr import iter_save_ome_zarr, save_ome_zarr
from .save import iter_save, iter_save_raw, iter_save_tiff, save_raw, save_tiff
from .stream import copy, iter_copy

register_operations(
    copy=copy, save_tiff=save_tiff, save_raw=save_raw, save_ome_zarr=save_ome_zarr
)

__all__ = [
    "copy",
    "iter_copy",
    "iter_save",
    "iter_save_ome_zarr",
    "iter_save_raw",
    "iter_save_tiff",
    "save_ome_zarr",
    "save_raw",
    "save_tiff",
]
