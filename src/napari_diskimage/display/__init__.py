"""What napari is shown: display levels, their plane cache, value samples and
full-resolution 3D boxes.

- :mod:`.levels`: :class:`DisplayLevel`, :func:`display_levels` (the
  pyramid of one channel, with the bounded 3D overview);
- :mod:`.cache`: whole planes of strided levels, :func:`clear_cache`;
- :mod:`.sampling`: :func:`sample_contrast_limits`, :func:`sample_values`;
- :mod:`.box`: full-resolution 3D boxes (:func:`fit_box`).
"""

from .box import BOX_VOXELS, Box, fit_box, iter_read_box
from .cache import CACHE_BYTES, CACHE_SECONDS, clear_cache
from .levels import (
    COARSEST_SIZE,
    OVERVIEW_BYTES,
    OVERVIEW_SIDE,
    OVERVIEW_VOXELS,
    DisplayLevel,
    display_axes,
    display_levels,
    overview_strides,
)
from .sampling import SAMPLE_BYTES, sample_contrast_limits, sample_values

__all__ = [
    "BOX_VOXELS",
    "CACHE_BYTES",
    "CACHE_SECONDS",
    "COARSEST_SIZE",
    "OVERVIEW_BYTES",
    "OVERVIEW_SIDE",
    "OVERVIEW_VOXELS",
    "SAMPLE_BYTES",
    "Box",
    "DisplayLevel",
    "clear_cache",
    "display_axes",
    "display_levels",
    "fit_box",
    "iter_read_box",
    "overview_strides",
    "sample_contrast_limits",
    "sample_values",
]
