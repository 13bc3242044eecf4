"""Storage kinds: how the pixels of a disk image are kept (one layer).

Everything above (:class:`~napari_diskimage.DiskImage`, the display
pyramid, copy and save, processing, the napari reader) uses only the
:class:`Storage` contract: ``shape``, ``dtype``, ``read_region``,
``array``, ``reference`` (pickling by reference), ``byte_runs`` (kernel
copies).  Each kind is one module:

- :mod:`.mapped`: one uncompressed file, memory-mapped (RAW, contiguous
  TIFF, scratch files); the only writable kind;
- :mod:`.lazy_tiff`: one TIFF decoded a strip or tile at a time;
- :mod:`.sequence`: a folder of 2D TIFF slices, one plane per file.
"""

from ._base import FileLayout, PlaneView, Storage
from .lazy_tiff import LazyTiffStorage
from .mapped import MappedStorage
from .sequence import SequenceStorage

__all__ = [
    "FileLayout",
    "LazyTiffStorage",
    "MappedStorage",
    "PlaneView",
    "SequenceStorage",
    "Storage",
]
