"""Layers and disk images, without Qt: what the widgets and the writers share.

Functions of napari layers (duck-typed: ``metadata``, ``data``,
``multiscale``, ``axis_labels``, ``world_to_data``...) and of disk images
that need no widget: which disk image a layer shows, which voxel a
coordinate names, what a layer's image is, what saving or copying it
takes.  Nothing here imports Qt; most of it not even napari.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._diskimage import DiskImage
from .._errors import error_message
from .._files import mount_fstype, nearest_existing
from .._scratch import format_bytes

if TYPE_CHECKING:
    from napari.layers import Layer
    from napari.viewer import Viewer

__all__ = [
    "EXTRACT_TARGET",
    "copy_source",
    "data_voxel",
    "default_stride",
    "describe_layer",
    "disk_image_of",
    "file_view",
    "folder_warnings",
    "image_sizes",
    "layer_axes",
    "layer_source",
    "level0",
    "open_disk_images",
    "parse_value",
    "view_region",
    "world_voxel",
]

#: Largest side, in pixels, of a plane extracted with the default stride.
EXTRACT_TARGET = 1024
_AXES = "tczyx"


def disk_image_of(layer: Layer | None) -> DiskImage | None:
    """The :class:`DiskImage` behind ``layer``, or None for in-memory layers."""
    if layer is None:
        return None
    img = layer.metadata.get("disk_image")
    return img if isinstance(img, DiskImage) else None


def file_view(
    labels: DiskImage, y: slice = slice(None), x: slice = slice(None)
) -> np.ndarray:
    """The layer data of ``labels``: a numpy view of the mapped file with the
    axes of :func:`display_axes` (t and z only if longer than 1)."""
    t, _, z, _, _ = labels.shape
    index: tuple[Any, ...] = (
        slice(None) if t > 1 else 0,
        0,
        slice(None) if z > 1 else 0,
        y,
        x,
    )
    return labels.array[index]


def level0(layer: Layer) -> Any:
    """The full-resolution data of ``layer``."""
    return layer.data[0] if layer.multiscale else layer.data


def layer_axes(layer: Layer) -> tuple[str, ...]:
    """Which of t, c, z, y, x each data axis of ``layer`` is.

    Taken from the layer's axis labels when they are axis letters (the
    reader sets them), else from the disk image's sizes: channel layers
    (``metadata["channel"]``) have no c axis, and axes of size 1 may have
    been left out; plain layers are right-aligned to (t, c, z, y, x).
    """
    ndim = layer.ndim
    labels = tuple(str(a).lower() for a in getattr(layer, "axis_labels", ()))
    if len(labels) == ndim and len(set(labels)) == ndim and set(labels) <= set(_AXES):
        return labels
    img = disk_image_of(layer)
    candidates = _AXES
    if img is not None and layer.metadata.get("channel") is not None:
        candidates = "tzyx"
    if img is not None and len(candidates) > ndim:
        sizes = dict(zip(_AXES, img.shape, strict=True))
        kept = tuple(a for a in candidates if sizes[a] > 1 or a in "yx")
        if len(kept) == ndim:
            return kept
    if ndim > len(candidates):
        return (("?",) * (ndim - len(candidates))) + tuple(candidates)
    return tuple(candidates[-ndim:])


def data_voxel(layer: Layer, data_coords: Any) -> dict[str, int]:
    """Voxel (x, y, z, c, t) of ``layer`` at data coordinates (pixel centres)."""
    voxel = dict.fromkeys(_AXES, 0)
    for axis, v in zip(layer_axes(layer), data_coords, strict=False):
        if axis in voxel:
            voxel[axis] = math.floor(float(v) + 0.5)
    channel = layer.metadata.get("channel")
    if channel is not None:
        voxel["c"] = int(channel)
    return voxel


def world_voxel(layer: Layer, world: Any) -> dict[str, int]:
    """Voxel of ``layer`` at world coordinates (e.g. a click, ``dims.point``)."""
    return data_voxel(layer, layer.world_to_data(np.asarray(world, dtype=float)))


def view_region(viewer: Viewer, layer: Layer) -> dict[str, tuple[float, float]]:
    """The y and x ranges of ``layer``'s full-resolution pixels in the 2D view.

    From the camera (centre and zoom) and the canvas size, in the layer's
    data coordinates (pixel edges: ``(-0.5, 99.5)`` is pixels 0..99); not
    clipped to the image.  In 3D, the canvas-sized square around the camera
    centre as seen from above.
    """
    h, w = viewer.canvas.size
    zoom = float(viewer.scene.camera.zoom) or 1.0
    displayed = list(viewer.dims.displayed)[-2:]
    center = np.asarray(viewer.scene.camera.center, dtype=float)[-2:]
    point = np.asarray(viewer.dims.point, dtype=float)
    corners = []
    for dy, dx in ((-1, -1), (1, 1)):
        world = point.copy()
        world[displayed[0]] = center[0] + dy * h / (2 * zoom)
        world[displayed[1]] = center[1] + dx * w / (2 * zoom)
        corners.append(layer.world_to_data(world))
    axes = layer_axes(layer)
    region = {}
    for name in "yx":
        if name in axes:
            i = axes.index(name)
            lo, hi = sorted(float(c[i]) for c in corners)
            region[name] = (lo + 0.5, hi + 0.5)
    return region


def image_sizes(layer: Layer) -> dict[str, int]:
    """Sizes x, y, z, c, t of the image behind ``layer``."""
    img = disk_image_of(layer)
    if img is not None:
        return dict(zip(_AXES, img.shape, strict=True))
    sizes = dict.fromkeys(_AXES, 1)
    for axis, n in zip(layer_axes(layer), level0(layer).shape, strict=False):
        if axis in sizes:
            sizes[axis] = int(n)
    return sizes


def copy_source(layer: Layer) -> Any:
    """What copying ``layer`` copies: its whole disk image, or its data."""
    if layer.rgb:
        raise ValueError(
            f"layer {layer.name!r} is RGB: disk images hold one value per "
            "pixel; split the colours into channels first"
        )
    img = disk_image_of(layer)
    if img is not None:
        if img.closed:
            raise ValueError(
                f"the disk image of layer {layer.name!r} ({str(img.path)!r}) "
                "is closed; reopen the file"
            )
        return img
    return level0(layer)


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


def parse_value(text: str) -> int | float:
    """``"12"`` -> 12, ``"1.5"`` -> 1.5; ValueError naming the text otherwise."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"pixel value {text!r} is not a number; type e.g. 255 or 0.5"
        ) from None


def default_stride(size_x: int, size_y: int, target: int = EXTRACT_TARGET) -> int:
    """Smallest stride keeping both sides of a plane at most ``target`` px."""
    return max(1, -(-max(size_x, size_y) // target))


def open_disk_images(viewer: Viewer) -> list[DiskImage]:
    seen: dict[int, DiskImage] = {}
    for lay in viewer.layers:
        img = disk_image_of(lay)
        if img is not None and not img.closed:
            seen[id(img)] = img
    return list(seen.values())


def folder_warnings(folder: Path, viewer: Viewer) -> list[str]:
    """Why ``folder`` is a poor disk-image directory (RAM, too little space)."""
    out = []
    if mount_fstype(folder) in ("tmpfs", "ramfs"):
        out.append(
            f"{str(folder)!r} is in RAM (tmpfs): disk images there use memory, "
            "not disk. Choose a folder on a disk."
        )
    images = open_disk_images(viewer)
    if images:
        largest = max(images, key=lambda i: i.nbytes)
        try:
            free = shutil.disk_usage(nearest_existing(folder)).free
        except OSError:
            free = None
        if free is not None and free < largest.nbytes:
            out.append(
                f"{str(folder)!r} has {format_bytes(free)} free, less than the "
                f"largest open image ({format_bytes(largest.nbytes)}, "
                f"{largest.path.name}): a copy of it would not fit. Free some "
                "space or choose another folder."
            )
    return out


def _access(img: DiskImage) -> str:
    """Whether the plugin writes into ``img``'s file, and if not, why not:
    opened read-only (the file could be edited in place) or a read-only
    file (permissions, compressed pixels, a folder of slices)."""
    if img.writable:
        return "opened for editing in place (r+)"
    from .in_place import can_edit_in_place

    if not can_edit_in_place(img):
        return "opened read-only (Write pixel can edit it in place)"
    if img.is_mapped and not os.access(img.path, os.W_OK):
        return "read-only file (its permissions)"
    return "read-only file (copy it to edit)"


def describe_layer(layer: Layer | None) -> str:
    """What a user wants to know about the image behind ``layer``."""
    if layer is None:
        return "no layer selected"
    img = disk_image_of(layer)
    if img is None:
        data = level0(layer)
        nbytes = math.prod(data.shape) * np.dtype(data.dtype).itemsize
        return "\n".join(
            [
                f"layer: {layer.name}",
                "disk image: no (pixels in memory)",
                f"type: {type(data).__name__}",
                f"shape: {tuple(data.shape)}",
                f"dtype: {np.dtype(data.dtype)}",
                f"size in memory: {format_bytes(nbytes)}",
            ]
        )
    if img.closed:
        return f"layer: {layer.name}\ndisk image: closed ({img.path})"
    try:
        on_disk = format_bytes(sum(f.stat().st_size for f in img.files))
    except OSError as exc:
        on_disk = f"unknown ({error_message(exc)})"
    if img.is_scratch:
        owner = "scratch (made by this plugin; deleted when closed)"
    else:
        owner = f"your {img.kind.upper()} file, {_access(img)}"
    lines = [
        f"layer: {layer.name}",
        f"file: {img.path}",
        "disk image: yes",
        f"kind: {owner}",
        f"geometry: {img.geometry}",
        f"dtype: {img.dtype} ({'big' if img.byte_order == '>' else 'little'}-endian"
        " in the file)",
        f"pixels: {format_bytes(img.nbytes)}, size on disk: {on_disk}",
        f"storage: {img.storage.describe()}",
    ]
    if layer.metadata.get("channel") is not None and img.shape[1] > 1:
        lines.append(f"channel: {layer.metadata['channel']} of {img.shape[1]}")
    return "\n".join(lines)
