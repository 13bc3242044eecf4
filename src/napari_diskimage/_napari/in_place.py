"""Edit a user's file in place, on purpose (no Qt).

A file opened read-only (napari's reader opens every file so) is never
changed behind the user's back: Write pixel and Labels offer "Copy and
write".  A 100 GiB scan cannot afford a copy, so they also offer "Edit
this file in place", after a confirmation that names the file; then the
file is opened again with mode ``"r+"`` and the layer shows that image.
"""

from __future__ import annotations

import os
from typing import Any

from .._diskimage import DiskImage

__all__ = ["can_edit_in_place", "confirm_text", "open_in_place", "swap_in_place"]


def can_edit_in_place(img: DiskImage | None) -> str:
    """Why ``img``'s file cannot be edited in place ("" when it can)."""
    if img is None:
        return "it is in memory, not a file"
    if img.closed:
        return "it is closed"
    if img.is_scratch:
        return "it is a scratch file of this plugin"
    if not img.is_mapped or img.kind not in ("tiff", "raw"):
        return (
            f"its pixels are {img.storage.describe()}: only an uncompressed, "
            "contiguous TIFF or a RAW file can be edited in place; copy it"
        )
    if not os.access(img.path, os.W_OK):
        return "the file itself is read-only (its permissions); copy it"
    return ""


def confirm_text(img: DiskImage) -> str:
    """The question asked before editing ``img``'s file in place."""
    return (
        f"Edit {str(img.path)!r} in place? The pixels you write or paint go "
        "straight into this file, at once, with no copy to go back to (undo "
        "covers only this session's paint strokes)."
    )


def open_in_place(img: DiskImage) -> DiskImage:
    """The same file opened again with mode ``"r+"``."""
    import napari_diskimage as ndi

    reason = can_edit_in_place(img)
    if reason:
        raise PermissionError(f"cannot edit {str(img.path)!r} in place: {reason}")
    if img.kind == "tiff":
        return ndi.open_tiff(img.path, "r+")
    layout = img.storage.file_layout()
    offset = 0 if layout is None else layout.offset
    return ndi.open_raw(img.path, img.geometry, offset, img.byte_order, mode="r+")


def swap_in_place(viewer: Any, old: DiskImage, new: DiskImage) -> list[Any]:
    """Every image layer of ``old`` shows ``new`` instead; returns them."""
    from napari.layers import Image

    from ..display import display_levels

    changed = []
    for layer in list(viewer.layers):
        if layer.metadata.get("disk_image") is not old:
            continue
        channel = layer.metadata.get("channel")
        if isinstance(layer, Image) and layer.multiscale and channel is not None:
            layer.metadata["disk_image"] = new
            layer.data = display_levels(new, channel)
            changed.append(layer)
    return changed
