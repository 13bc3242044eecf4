"""Storage kinds: how the pixels of a disk image are kept (one layer).

Everything above (:class:`~napari_diskimage.DiskImage`, the display
pyramid, copy and save, processing, the napari reader) uses only the
:class:`Storage` contract: ``shape``, ``dtype``, ``read_region``,
``read_box``, ``read_cost``, ``array``, ``state`` / ``from_state``
(pickling; reopened lazily), and the capabilities ``file_layout``,
``byte_runs`` (kernel copies), ``advise_random``, ``prefetch_rows``.  Each
kind is one module with its opener, which returns an :class:`Opened` and
never builds a ``DiskImage``:

- :mod:`.mapped`: one uncompressed file, memory-mapped (RAW, contiguous
  TIFF, scratch files); writable (opener ``open_raw``);
- :mod:`.lazy_tiff`: one TIFF decoded a strip or tile at a time;
- :mod:`.tiff`: the TIFF opener, which chooses between those two;
- :mod:`.sequence`: a folder of 2D TIFF slices, one plane per file
  (opener ``open_sequence``);
- :mod:`.zarr`: an OME-Zarr (NGFF 0.4, 0.5) or plain Zarr array, chunks
  decoded on demand; writable with ``mode="r+"`` (opener
  ``open_zarr_storage``).
"""

from ._base import FileLayout, Opened, PlaneView, Storage
from .lazy_tiff import LazyTiffStorage
from .mapped import MappedStorage
from .sequence import SequenceStorage
from .zarr import ZarrStorage

__all__ = [
    "FileLayout",
    "LazyTiffStorage",
    "MappedStorage",
    "Opened",
    "PlaneView",
    "SequenceStorage",
    "Storage",
    "ZarrStorage",
]
