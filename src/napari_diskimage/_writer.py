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

__all__ = ["write_raw", "write_tiff"]


def _source(data: Any, attributes: dict[str, Any]) -> Any:
    # npe2 passes the layer's data and its attributes (name, metadata, ...)
    # without importing the widgets' Qt machinery.
    from ._diskimage import DiskImage

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
    return [str(ndi.save_tiff(_source(data, attributes), Path(path)))]


def write_raw(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save one image layer to a RAW file (little-endian, t, c, z, y, x)."""
    return [str(ndi.save_raw(_source(data, attributes), Path(path)))]
