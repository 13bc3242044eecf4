"""The "Extract plane" tool (IPSDK loadPlan).

Reads a strided part of one plane into memory (z, c, t, size, offset,
stride; prefilled: the current slice, the whole plane, a stride keeping the
result at most ~1024 px) and adds it as a layer placed exactly over the
region it came from.
"""

from __future__ import annotations

from typing import Any

import napari.viewer
import numpy as np
from magicgui.widgets import Container, PushButton, SpinBox
from napari.layers import Image

from .._napari.layers import default_stride, disk_image_of, image_sizes, world_voxel
from .._napari.notify import notify_error, show_warning
from ._common import (
    MAX_INT,
    LayerChoice,
    apply_saved_settings,
    show_axes_of,
    status_label,
    unwrap,
)

__all__ = ["ExtractPlane"]


class ExtractPlane(Container):
    """Read a strided part of a plane into memory (IPSDK loadPlan)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(viewer, disk_images_only=True)
        self.fields = {
            name: SpinBox(label=name.replace("_", " "), min=lo, max=MAX_INT)
            for name, lo in (
                ("z", 0), ("c", 0), ("t", 0),
                ("size_x", 1), ("size_y", 1),
                ("offset_x", 0), ("offset_y", 0),
                ("stride_x", 1), ("stride_y", 1),
            )
        }  # fmt: skip
        self.fields["size_x"].tooltip = "width of the region in image pixels"
        self.fields["size_y"].tooltip = "height of the region in image pixels"
        self.reset_button = PushButton(text="Current slice, whole plane")
        self.extract_button = PushButton(text="Extract plane")
        self.status = status_label()
        self.hint = status_label()
        super().__init__(
            widgets=[
                self.layer,
                self.hint,
                *self.fields.values(),
                self.reset_button,
                self.extract_button,
                self.status,
            ]
        )
        self.layer.changed.connect(self._fit_layer)
        viewer.layers.selection.events.active.connect(self._fit_layer)
        self.layer.changed.connect(self.prefill)
        self.reset_button.changed.connect(self.prefill)
        self.extract_button.changed.connect(self.extract)
        viewer.dims.events.current_step.connect(self._slice_changed)
        for name in ("size_x", "size_y", "stride_x", "stride_y"):
            self.fields[name].changed.connect(self._show_result_size)
        self._fit_layer()
        self.prefill()

    def _fit_layer(self, _value: Any = None) -> None:
        """Fields for the axes the layer has; say why it cannot act, if so."""
        layer = self.layer.value
        show_axes_of(layer, {a: self.fields[a] for a in "zct"})
        active = self.viewer.layers.selection.active
        reason = ""
        if layer is None:
            if active is not None and disk_image_of(active) is None:
                reason = (
                    f"{active.name!r} is in memory, not a disk image: its planes "
                    "are there already (copy it to a disk image to extract from "
                    "a file)"
                )
            else:
                reason = (
                    "no disk image: open a file with this plugin, or copy a "
                    "layer to a disk image"
                )
        self.hint.value = reason
        self.extract_button.enabled = not reason

    def _slice_changed(self, _event: Any = None) -> None:
        layer = self.layer.value
        if layer is not None:
            voxel = world_voxel(layer, self.viewer.dims.point)
            sizes = image_sizes(layer)
            for a in "zct":
                if 0 <= voxel[a] < sizes[a]:
                    self.fields[a].value = voxel[a]

    def prefill(self, _value: Any = None) -> None:
        """Current slice, the whole plane, a stride keeping <= ~1024 px."""
        layer = self.layer.value
        if layer is None:
            return
        sizes = image_sizes(layer)
        stride = default_stride(sizes["x"], sizes["y"])
        f = self.fields
        f["size_x"].value, f["size_y"].value = sizes["x"], sizes["y"]
        f["offset_x"].value = f["offset_y"].value = 0
        f["stride_x"].value = f["stride_y"].value = stride
        self._slice_changed()
        self._show_result_size()

    def _out_size(self) -> tuple[int, int]:
        f = {k: w.value for k, w in self.fields.items()}
        return (
            -(-f["size_x"] // f["stride_x"]),
            -(-f["size_y"] // f["stride_y"]),
        )

    def _show_result_size(self, _value: Any = None) -> None:
        nx, ny = self._out_size()
        self.status.value = f"result: {nx} x {ny} pixels"

    def extract(self, _value: Any = None) -> Image | None:
        layer = self.layer.value
        if layer is None:
            show_warning("Extract plane: choose an image layer first.")
            return None
        img = disk_image_of(layer)
        if img is None:
            show_warning(
                f"Extract plane: layer {layer.name!r} is not a disk image, its "
                "pixels are already in memory. Open the file with this plugin "
                "or copy the layer to a disk image first."
            )
            return None
        f = {k: w.value for k, w in self.fields.items()}
        nx, ny = self._out_size()
        try:
            plane = img.load_plane(
                z=f["z"], c=f["c"], t=f["t"], size_x=nx, size_y=ny,
                offset_x=f["offset_x"], offset_y=f["offset_y"],
                stride_x=f["stride_x"], stride_y=f["stride_y"],
            )  # fmt: skip
        except (OSError, ValueError, IndexError, TypeError) as exc:
            notify_error(f"extract a plane of {str(img.path)!r}", exc)
            return None
        scale = np.asarray(layer.scale[-2:], dtype=float)
        translate = np.asarray(layer.translate[-2:], dtype=float)
        offset = np.array([f["offset_y"], f["offset_x"]], dtype=float)
        stride = np.array([f["stride_y"], f["stride_x"]], dtype=float)
        name = (
            f"{layer.name} z={f['z']} c={f['c']} t={f['t']}"
            f" (stride {f['stride_x']}x{f['stride_y']})"
        )
        new = self.viewer.add_image(
            plane,
            name=name,
            scale=tuple(stride * scale),
            translate=tuple(translate + offset * scale),
            colormap=layer.colormap,
            contrast_limits=layer.contrast_limits,
        )
        self.status.value = f"extracted {plane.shape[1]} x {plane.shape[0]} pixels"
        return new
