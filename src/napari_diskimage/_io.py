"""Old home of :mod:`napari_diskimage.io`."""

# shim until process/ follows (issue 22b)
from .io.stream import Source as _Source
from .io.stream import kernel_copy as _kernel_copy
from .io.stream import read_box as _read_box

__all__ = ["_Source", "_kernel_copy", "_read_box"]
