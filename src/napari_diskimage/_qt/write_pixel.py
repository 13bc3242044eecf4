"""The "Write pixel" tool (IPSDK writePixel): typed or clicked.

Writes one value into the file at (x, y, z, c, t), following the cursor
and the current slice; the canvas shows it at once.  A read-only file or
an in-memory layer gets a notification offering "Copy and write" (the
user's file is never changed); a file opened read-only also "Edit this
file in place", after a confirmation naming it (opened again "r+").
"""

from __future__ import annotations

import weakref
from typing import Any

import napari.viewer
import numpy as np
from magicgui.widgets import CheckBox, Container, LineEdit, PushButton, SpinBox
from napari.layers import Layer
from napari.utils.notifications import (
    Notification,
    NotificationSeverity,
    notification_manager,
)
from napari.viewer import Viewer

from .._diskimage import DiskImage
from .._napari.in_place import (
    can_edit_in_place,
    confirm_text,
    open_in_place,
    swap_in_place,
)
from .._napari.layers import (
    data_voxel,
    disk_image_of,
    image_sizes,
    parse_value,
    world_voxel,
)
from .._napari.notify import notify_error, show_info, show_warning
from ._common import (
    MAX_INT,
    LayerChoice,
    apply_saved_settings,
    ask,
    refresh_layer,
    show_axes_of,
    status_label,
    unwrap,
)
from ._job import StepsJob
from .copy import start_copy

__all__ = ["WritePixel"]


class WritePixel(Container):
    """Write one value into a disk image (IPSDK writePixel), typed or clicked."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(viewer)
        self.value = LineEdit(label="value", value="0")
        self.coords = {
            a: SpinBox(label=a, min=0, max=MAX_INT, value=0) for a in "xyzct"
        }
        self.follow = CheckBox(text="follow the cursor", value=True)
        self.write_button = PushButton(text="Write pixel")
        self.click = CheckBox(text="click to write", value=False)
        self.hint = status_label()
        super().__init__(
            widgets=[
                self.layer,
                self.hint,
                self.value,
                *self.coords.values(),
                self.follow,
                self.write_button,
                self.click,
            ]
        )
        self.write_button.changed.connect(self.write)
        self.click.changed.connect(self._toggle_click)
        self.layer.changed.connect(self._fit_layer)
        self.layer.changed.connect(self._from_slice)
        viewer.cursor.events.position.connect(self._from_cursor)
        viewer.dims.events.current_step.connect(self._from_slice)
        self._fit_layer()
        self._from_slice()

    def _fit_layer(self, _value: Any = None) -> None:
        """Fields for the axes the layer has; one line on what a write does."""
        layer = self.layer.value
        show_axes_of(layer, self.coords)
        img = disk_image_of(layer)
        if layer is None:
            self.hint.value = "choose an image layer"
        elif img is None:
            self.hint.value = (
                "in memory, not a disk image: writing offers to copy it to a "
                "disk image first"
            )
        elif not img.writable:
            self.hint.value = (
                "opened read-only: writing offers to edit this file in place "
                "(after a confirmation) or to copy it first"
                if not can_edit_in_place(img)
                else "read-only: writing offers to copy it first (your file "
                "is not changed)"
            )
        else:
            self.hint.value = f"writes into {img.path.name}"

    # prefilling
    def _set_voxel(self, voxel: dict[str, int], axes: str) -> None:
        layer = self.layer.value
        sizes = image_sizes(layer)
        for a in axes:
            if 0 <= voxel[a] < sizes[a]:
                self.coords[a].value = voxel[a]

    def _from_cursor(self, _event: Any = None) -> None:
        layer = self.layer.value
        if layer is None or not self.follow.value:
            return
        self._set_voxel(world_voxel(layer, self.viewer.cursor.position), "xyzct")

    def _from_slice(self, _event: Any = None) -> None:
        layer = self.layer.value
        if layer is None:
            return
        self._set_voxel(world_voxel(layer, self.viewer.dims.point), "zct")

    # writing
    def write(self, _value: Any = None) -> bool:
        """Write the typed value at the typed voxel; True if written."""
        voxel = {a: w.value for a, w in self.coords.items()}
        return self.write_at(voxel)

    def write_at(self, voxel: dict[str, int], value: Any = None) -> bool:
        layer = self.layer.value
        if layer is None:
            show_warning("Write pixel: choose an image layer first.")
            return False
        try:
            if value is None:
                value = parse_value(self.value.value)
        except ValueError as exc:
            notify_error("write pixel", exc)
            return False
        img = disk_image_of(layer)
        if img is None or not img.writable:
            self._offer_copy(layer, img, value, voxel)
            return False
        try:
            img.write_pixel(
                value, voxel["x"], voxel["y"], voxel["z"], voxel["c"], voxel["t"]
            )
        except (OSError, ValueError, IndexError, TypeError) as exc:
            notify_error(f"write pixel into {str(img.path)!r}", exc)
            return False
        self._refresh(img)
        return True

    def _refresh(self, img: DiskImage) -> None:
        for lay in self.viewer.layers:
            if disk_image_of(lay) is img:
                refresh_layer(lay)

    def _offer_copy(
        self, layer: Layer, img: DiskImage | None, value: Any, voxel: dict[str, int]
    ) -> None:
        if img is None:
            why = f"layer {layer.name!r} is in memory, not a disk image"
        else:
            why = f"{str(img.path)!r} is open read-only"
        message = (
            f"Cannot write a pixel: {why}. Copy it to a new disk image and "
            "write there? (Your file is not changed.)"
        )

        # napari keeps every notification: hold the layer weakly, so an
        # offer nobody answered does not keep a removed layer's data alive.
        layer_ref = weakref.ref(layer)

        def accept(_toast: Any = None) -> None:
            source = layer_ref()
            if source is None or source not in self.viewer.layers:
                show_warning("Copy and write: the layer was removed meanwhile.")
                return
            self.copy_and_write(source, value, voxel)

        def in_place(_toast: Any = None) -> None:
            source = layer_ref()
            if source is None or source not in self.viewer.layers:
                show_warning("Edit in place: the layer was removed meanwhile.")
                return
            self.edit_in_place(source, value, voxel)

        actions = [("Copy and write", accept)]
        if img is not None and not can_edit_in_place(img):
            actions.append(("Edit this file in place", in_place))
            message = (
                f"Cannot write a pixel: {why}. Copy it to a new disk image and "
                "write there (your file is not changed), or edit this file in "
                "place?"
            )
        notification_manager.dispatch(
            Notification(
                message, severity=NotificationSeverity.WARNING, actions=actions
            )
        )

    def confirm(self, text: str) -> bool:
        """Ask before editing a file in place (tests replace it)."""
        return ask(text, "Edit in place")

    def edit_in_place(self, layer: Layer, value: Any, voxel: dict[str, int]) -> bool:
        """Open ``layer``'s file again with mode "r+" (after :meth:`confirm`
        names it) and write there; True if written."""
        img = disk_image_of(layer)
        if img is None:
            return False
        if not self.confirm(confirm_text(img)):
            show_info(f"Edit in place: {str(img.path)!r} was left unchanged.")
            return False
        try:
            new = open_in_place(img)
        except (OSError, ValueError) as exc:
            notify_error(f"edit {str(img.path)!r} in place", exc)
            return False
        swap_in_place(self.viewer, img, new)
        self.layer.value = layer
        self._fit_layer()
        return self.write_at(voxel, value)

    def copy_and_write(
        self, layer: Layer, value: Any, voxel: dict[str, int]
    ) -> StepsJob | None:
        """Copy ``layer`` to a scratch disk image, then write into the copy."""

        def done(image: DiskImage, new_layers: list[Layer]) -> None:
            target = next(
                (
                    lay
                    for lay in new_layers
                    if lay.metadata.get("channel", 0) == voxel["c"]
                ),
                new_layers[0],
            )
            self.layer.reset_choices()
            self.layer.value = target
            self.viewer.layers.selection.active = target
            image.write_pixel(
                value, voxel["x"], voxel["y"], voxel["z"], voxel["c"], voxel["t"]
            )
            self._refresh(image)

        try:
            self.job = start_copy(self.viewer, layer, on_done=done)
        except (OSError, ValueError) as exc:
            notify_error(f"copy {layer.name!r}", exc)
            return None
        return self.job

    # click to write
    def _toggle_click(self, on: bool) -> None:
        callbacks = self.viewer.mouse_drag_callbacks
        if on and self._on_click not in callbacks:
            callbacks.append(self._on_click)
        elif not on and self._on_click in callbacks:
            callbacks.remove(self._on_click)

    def _on_click(self, viewer: Viewer, event: Any) -> None:
        if event.type != "mouse_press" or getattr(event, "button", 1) != 1:
            return
        try:
            layer = self.layer.value
        except RuntimeError:  # the widget was closed: stop listening
            viewer.mouse_drag_callbacks.remove(self._on_click)
            return
        if layer is None:
            show_warning("Click to write: choose an image layer first.")
            return
        if viewer.dims.ndisplay != 2:
            show_warning(
                "Click to write works in the 2D view, where a click names one "
                "voxel: switch to 2D (the 2D/3D button) or type the coordinates."
            )
            return
        data = layer.world_to_data(np.asarray(event.position, dtype=float))
        voxel = data_voxel(layer, data)
        sizes = image_sizes(layer)
        if not all(0 <= voxel[a] < sizes[a] for a in "xy"):
            return  # a click beside the image: nothing to write
        for a, w in self.coords.items():
            w.value = voxel[a]
        self.write_at(voxel)
