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

__all__ = [
    "layer_source",
    "write_labels_ome_zarr",
    "write_ome_zarr",
    "write_raw",
    "write_tiff",
]


def write_tiff(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer to an uncompressed TIFF (ImageJ hyperstack)."""
    return [str(ndi.save_tiff(layer_source(data, attributes), Path(path)))]


def write_raw(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer to a RAW file (little-endian, t, c, z, y, x)."""
    return [str(ndi.save_raw(layer_source(data, attributes), Path(path)))]


def write_ome_zarr(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer to an OME-Zarr store (NGFF 0.5) with a pyramid
    of block means."""
    source = layer_source(data, attributes)
    return [str(ndi.save_ome_zarr(source, Path(path)))]


def write_labels_ome_zarr(
    path: str, data: Any, attributes: dict[str, Any]
) -> list[str]:
    """Save one labels layer to an OME-Zarr store with a pyramid of block
    modes (a label is never averaged with its neighbours)."""
    source = layer_source(data, attributes)
    return [str(ndi.save_ome_zarr(source, Path(path), downsample="mode"))]
