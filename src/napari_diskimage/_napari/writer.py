"""napari writers (npe2): File > Save Selected Layers for image layers.

For a layer backed by a disk image (``metadata["disk_image"]``) the pixels
are streamed from its file into the new one, with bounded memory and the
kernel's copy when the layout allows; other layers save their data.  Both
formats are written atomically (temporary file, then rename) by the core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari_diskimage as ndi

from .layers import layer_source

__all__ = ["layer_source", "write_raw", "write_tiff"]


def write_tiff(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer to an uncompressed TIFF (ImageJ hyperstack)."""
    return [str(ndi.save_tiff(layer_source(data, attributes), Path(path)))]


def write_raw(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer to a RAW file (little-endian, t, c, z, y, x)."""
    return [str(ndi.save_raw(layer_source(data, attributes), Path(path)))]
