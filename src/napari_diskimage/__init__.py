"""napari-diskimage: image volumes larger than memory, opened not loaded.

IPSDK-style *disk images* for Python and napari.  A TIFF or RAW file is
memory-mapped, not loaded; images are copied into scratch files in a
disk-image directory; single pixels are written straight into the file;
strided planes are read into memory for display.

This package is GUI-free: importing it does not import napari, Qt or
magicgui.  The napari reader, writers and widgets live in private modules
that napari loads through ``napari.yaml``.

>>> import napari_diskimage as ndi
>>> out = ndi.copy(np.arange(12, dtype=np.uint8).reshape(3, 4))
>>> out.write_pixel(255, 0, 0, 0, 0, 0)
>>> out.load_plane(stride_x=2)
array([[255,   2],
       [  4,   6],
       [  8,  10]], dtype=uint8)
"""

from typing import Any

from ._diskimage import DiskImage, is_disk_image, new_disk_image
from ._errors import ClosedImageError, CorruptFileError, DiskImageError
from ._geometry import Geometry
from ._labels import check_labels, new_labels
from ._meta import ImageMeta
from ._open import (
    open_any,
    open_labels,
    open_raw,
    open_tiff,
    open_tiff_sequence,
    open_zarr,
)
from ._scratch import get_disk_image_dir, set_disk_image_dir, sweep_orphans
from ._sequence import SequenceGapWarning
from ._tiff import TiffSeriesInfo, tiff_series
from .display.view_cache import (
    clear_view_caches,
    iter_view_cache,
    view_cache,
    view_cache_size,
)
from .io import (
    copy,
    iter_copy,
    iter_save,
    iter_save_raw,
    iter_save_tiff,
    save_raw,
    save_tiff,
)
from .io.ome_zarr import iter_save_ome_zarr, save_ome_zarr


def apply(func: Any, image: Any, *images: Any, **kwargs: Any) -> DiskImage:
    """Run ``func`` on blocks of images into a new disk image.

    See :func:`napari_diskimage.process.apply` (imported on first use: dask
    is loaded only when processing).
    """
    from .process import apply as _apply

    return _apply(func, image, *images, **kwargs)


__version__ = "0.1.0"

__all__ = [
    "ClosedImageError",
    "CorruptFileError",
    "DiskImage",
    "DiskImageError",
    "Geometry",
    "ImageMeta",
    "SequenceGapWarning",
    "TiffSeriesInfo",
    "apply",
    "check_labels",
    "clear_view_caches",
    "copy",
    "get_disk_image_dir",
    "is_disk_image",
    "iter_copy",
    "iter_save",
    "iter_save_ome_zarr",
    "iter_save_raw",
    "iter_save_tiff",
    "iter_view_cache",
    "new_disk_image",
    "new_labels",
    "open_any",
    "open_labels",
    "open_raw",
    "open_tiff",
    "open_tiff_sequence",
    "open_zarr",
    "save_ome_zarr",
    "save_raw",
    "save_tiff",
    "set_disk_image_dir",
    "sweep_orphans",
    "tiff_series",
    "view_cache",
    "view_cache_size",
]
