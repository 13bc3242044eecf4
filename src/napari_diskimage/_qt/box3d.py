"""The "3D box (full resolution)" tool.

napari shows a large volume in 3D through its bounded overview (strided in
z, y and x; see :mod:`napari_diskimage.display`).  This tool reads the
region in view, and a range of planes around the current slice (prefilled
within the box budget), at full resolution into memory, and adds it as an
image layer placed exactly over the volume in world coordinates; then it
switches the viewer to 3D.  "Show region in 3D" again, or "Follow the 2D
view", moves the box: only the new box is read.
"""

from __future__ import annotations

from typing import Any

import napari.viewer
import numpy as np
from magicgui.widgets import CheckBox, SpinBox
from napari.layers import Image, Layer

from .._napari.layers import disk_image_of, image_sizes, view_region, world_voxel
from .._napari.notify import notify_error, show_info, show_warning
from .._scratch import format_bytes
from ..display.box import BOX_VOXELS, Box, fit_box, iter_read_box
from ._common import LayerChoice, apply_saved_settings, unwrap
from ._job import JobTool, StepsJob

__all__ = ["Box3D"]

#: Metadata key of a box layer: the :class:`Box` it shows.
BOX_KEY = "disk_image_box"
#: Milliseconds of stillness before a following box is moved.
FOLLOW_DELAY_MS = 400


class Box3D(JobTool):
    """Show the region in view at full resolution in 3D."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(viewer, disk_images_only=True)
        self.z_first = SpinBox(label="z from", min=0, max=0)
        self.z_last = SpinBox(label="z to", min=0, max=0)
        self.follow = CheckBox(text="Follow the 2D view", value=False)
        self.follow.tooltip = (
            "move the box with the view and the slice while browsing in 2D"
        )
        self.box_layer: Image | None = None
        self._timer: Any = None
        super().__init__(
            "Show region in 3D",
            [self.layer, self.z_first, self.z_last, self.follow],
        )
        self.layer.changed.connect(self.prefill)
        viewer.layers.selection.events.active.connect(self.fit_layer)
        viewer.dims.events.current_step.connect(self._view_moved)
        viewer.scene.camera.events.center.connect(self._view_moved)
        viewer.scene.camera.events.zoom.connect(self._view_moved)
        viewer.layers.events.removed.connect(self._layer_removed)
        self.prefill()

    # --- fields --------------------------------------------------------
    def unavailable_reason(self) -> str:
        layer = self.layer.value
        if layer is None:
            active = self.viewer.layers.selection.active
            if active is not None and disk_image_of(active) is None:
                return (
                    f"{active.name!r} is in memory: napari shows it in 3D "
                    "at full resolution already"
                )
            return "no disk image: open a volume with this plugin"
        if image_sizes(layer)["z"] < 2:
            return f"{layer.name!r} has a single z plane: no 3D view"
        return ""

    def prefill(self, _value: Any = None) -> None:
        """z range around the current slice that keeps the box in budget."""
        if self.unavailable_reason():
            return
        box = self._fit(quiet=True)
        if box is None:
            return
        nz = image_sizes(self.layer.value)["z"]
        for w in (self.z_first, self.z_last):
            w.max = nz - 1
        self.z_first.value, self.z_last.value = box.z[0], box.z[1] - 1
        self.status.value = f"box: {box}"

    def _fit(self, quiet: bool = False, explicit_z: bool = False) -> Box | None:
        layer = self.layer.value
        img = disk_image_of(layer)
        if layer is None or img is None:
            return None
        region = view_region(self.viewer, layer)
        voxel = world_voxel(layer, self.viewer.dims.point)
        z: int | tuple[int, int] = voxel["z"]
        if explicit_z:
            z = (self.z_first.value, self.z_last.value)
        try:
            box, messages = fit_box(
                img,
                y=region.get("y", (0, img.shape[3])),
                x=region.get("x", (0, img.shape[4])),
                z=z,
                t=voxel["t"],
                c=voxel["c"],
            )
        except ValueError as exc:
            if not quiet:
                notify_error("show a 3D box", exc)
            else:
                self.status.value = str(exc)
            return None
        if messages and not quiet:
            show_info("3D box: " + "; ".join(messages))
        return box

    # --- the job -------------------------------------------------------
    def make_job(self) -> StepsJob | None:
        layer = self.layer.value
        img = disk_image_of(layer)
        if layer is None or img is None:
            show_warning("3D box: choose a layer opened with this plugin first.")
            return None
        explicit = self.viewer.dims.ndisplay == 2 and not self.follow.value
        box = self._fit(explicit_z=explicit)
        if box is None:
            return None
        what = f"read a 3D box of {layer.name!r}"
        return StepsJob(
            lambda: iter_read_box(img, box),
            what,
            lambda data: self._show(layer, box, data),
            self.job_ended,
            cancelled_message="the box is unchanged",
        ).start()

    def _show(self, layer: Layer, box: Box, data: np.ndarray) -> Image:
        """Add (or update) the box layer, placed over ``layer``, and go 3D."""
        ndim = 3
        scale = np.asarray(layer.scale[-ndim:], dtype=float)
        translate = np.asarray(layer.translate[-ndim:], dtype=float)
        world = translate + np.asarray(box.offset, dtype=float) * scale
        box_layer = self.box_layer
        if box_layer is None or box_layer not in self.viewer.layers:
            box_layer = self.viewer.add_image(
                data,
                name=f"{layer.name} [3D box]",
                scale=tuple(scale),
                translate=tuple(world),
                colormap=layer.colormap,
                contrast_limits=layer.contrast_limits,
                blending="translucent",
                metadata={BOX_KEY: box},
            )
            self.box_layer = box_layer
        else:
            box_layer.data = data
            box_layer.translate = tuple(world)
            box_layer.metadata[BOX_KEY] = box
        self.status.value = f"box: {box} ({format_bytes(data.nbytes)}), full resolution"
        if not self.follow.value:
            self.viewer.dims.ndisplay = 3
        return box_layer

    def show_region(self) -> StepsJob | None:
        """Read the box for the region in view and show it (as the button)."""
        return self.start()

    # --- following the view --------------------------------------------
    def _view_moved(self, _event: Any = None) -> None:
        if self.layer.value is None:
            return
        if not self.follow.value or self.viewer.dims.ndisplay != 2:
            if self.viewer.dims.ndisplay == 2 and not (
                self.job is not None and self.job.running
            ):
                self.prefill()
            return
        from qtpy.QtCore import QTimer

        if self._timer is None:
            self._timer = QTimer()
            self._timer.setSingleShot(True)
            self._timer.timeout.connect(self._follow_now)
        self._timer.start(FOLLOW_DELAY_MS)

    def _follow_now(self) -> None:
        if self.job is not None and self.job.running:
            self._timer.start(FOLLOW_DELAY_MS)  # try again once it has ended
            return
        box = self._fit(quiet=True)
        shown = self.box_layer
        current = None if shown is None else shown.metadata.get(BOX_KEY)
        if box is not None and box != current:
            self.start()

    def _layer_removed(self, event: Any) -> None:
        if event.value is self.box_layer:
            self.box_layer = None


__all__ += ["BOX_KEY", "BOX_VOXELS"]
