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

from ._diskimage import DiskImage

__all__ = ["layer_source", "write_raw", "write_tiff"]


def layer_source(data: Any, attributes: dict[str, Any]) -> Any:
    """What saving a layer writes: its disk image (streamed) or its data.

    ``attributes`` are the layer's (npe2 passes them to writers): a layer
    backed by a disk image saves from the file -- only its own channel of a
    multi-channel image -- never from its display pyramid.
    """
    metadata = attributes.get("metadata") or {}
    img = metadata.get("disk_image")
    if isinstance(img, DiskImage) and not img.closed:
        c = metadata.get("channel")
        if c is not None and img.shape[1] > 1:
            return img.array[:, c : c + 1]  # the layer's channel, still mapped
        return img
    if attributes.get("rgb"):
        raise ValueError(
            f"cannot save RGB layer {attributes.get('name')!r} as a disk image "
            "file: split the colours into channels first, or save it with "
            "napari's builtin writer"
        )
    return data[0] if attributes.get("multiscale") and isinstance(data, list) else data


def write_tiff(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer to an uncompressed TIFF (ImageJ hyperstack)."""
    return [str(ndi.save_tiff(layer_source(data, attributes), Path(path)))]


def write_raw(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer to a RAW file (little-endian, t, c, z, y, x)."""
    return [str(ndi.save_raw(layer_source(data, attributes), Path(path)))]
