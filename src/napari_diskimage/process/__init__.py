"""Process disk images out of core: each operation writes a new disk image.

IPSDK has disk images so that large images can be processed: each step
writes its result into a new disk image instead of memory.  Here every
operation reads its input block by block, computes each block with the
halo its filter needs, and writes the result into a new scratch disk image
in the disk-image directory, which is returned.  Memory holds a few blocks
(tens of MiB each) whatever the size of the image; results equal the same
scipy / scikit-image call on the whole array in memory.

Sizes and per-axis parameters are given as x, y, z (a number applies to
all three); 2D images ignore z.  3D operations work on (z, y, x) for each
channel c and frame t: c and t are never mixed.

The work is scheduled by dask: its threaded scheduler on this machine, or
the cluster of an active ``distributed.Client`` (dask's convention: create
one and every call here runs on it).  On a cluster, every worker must see
the input files and the disk-image directory at the same paths (a shared
file system): a :class:`~napari_diskimage.DiskImage` travels as a
reference, workers read their blocks from the input file and write them
into the output file themselves.

Every function takes ``progress(done_bytes, total_bytes)`` (raise from it
to cancel) and ``block_shape=(x, y, z)`` to override the block size.  A
failed or cancelled run removes its output file; inputs are never changed.

>>> import napari_diskimage as ndi
>>> from napari_diskimage import process
>>> img = ndi.copy(np.arange(64, dtype=np.uint8).reshape(8, 8))
>>> mask = process.threshold(img, 32)
>>> int(np.asarray(mask).sum())
32
>>> process.otsu(img) > 0
True
"""

from __future__ import annotations

from ._distance import distance, local_thickness
from ._engine import Run, stats
from ._filters import gaussian, mean, median
from ._generic import apply
from ._geometry import bin, crop
from ._label import label
from ._morphology import closing, dilate, erode, opening
from ._registry import OPERATIONS
from ._registry import Operation as Operation  # the Process tool's entries
from ._registry import Parameter as Parameter
from ._values import arithmetic, convert, otsu, threshold
from ._watershed import watershed_split

__all__ = [
    "OPERATIONS",
    "Run",
    "apply",
    "arithmetic",
    "bin",
    "closing",
    "convert",
    "crop",
    "dilate",
    "distance",
    "erode",
    "gaussian",
    "label",
    "local_thickness",
    "mean",
    "median",
    "opening",
    "otsu",
    "stats",
    "threshold",
    "watershed_split",
]
