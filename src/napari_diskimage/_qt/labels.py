"""The "Labels" tool: paint labels into disk-backed volumes of any size.

New labels for the selected image layer (uint8, uint16 or uint32: a
scratch disk image of zeros with the image's sizes), or a saved labels
file opened for it (checked: same sizes, an integer type); the layer is a
napari Labels layer aligned with the image whose brush, eraser, fill,
polygon and undo write straight into the file (see
:mod:`napari_diskimage._napari.labels`).  Save streams the labels to TIFF
or RAW (atomic, progress, Cancel).  The buttons call :meth:`new_labels`,
:meth:`open_labels`, :meth:`save` and :meth:`move_window`, which scripts
and tests call too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import napari.viewer
from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, PushButton
from napari.layers import Labels

import napari_diskimage as ndi

from .._diskimage import DiskImage
from .._napari.labels import KEY, DiskLabels
from .._napari.layers import disk_image_of, image_sizes
from .._napari.notify import notify_error, show_info, show_warning
from .._scratch import format_bytes
from ._common import (
    LayerChoice,
    apply_saved_settings,
    ask,
    chosen_path,
    status_label,
    unwrap,
)
from ._job import StepsJob, start_save

__all__ = ["LabelsTool"]

DTYPES = [("uint8 (up to 255 labels)", "uint8"),
          ("uint16 (up to 65,535)", "uint16"),
          ("uint32 (up to 4 billion)", "uint32")]  # fmt: skip


class LabelsTool(Container):
    """New, open and save disk-image labels for an image layer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(viewer, label="image")
        self.hint = status_label()
        self.dtype = ComboBox(label="pixel type", choices=DTYPES, value="uint32")
        self.new_button = PushButton(text="New labels")
        self.path = FileEdit(
            label="labels file",
            mode=FileDialogMode.EXISTING_FILE,
            filter="Images (*.tif *.tiff *.raw)",
        )
        self.open_button = PushButton(text="Open labels file")
        self.save_path = FileEdit(
            label="save as",
            mode=FileDialogMode.OPTIONAL_FILE,
            filter="Images (*.tif *.tiff *.raw)",
        )
        self.save_button = PushButton(text="Save labels")
        self.window_button = PushButton(text="Move paint window to view")
        self.status = status_label()
        super().__init__(
            widgets=[
                self.layer, self.hint, self.dtype, self.new_button, self.path,
                self.open_button, self.save_path, self.save_button,
                self.window_button, self.status,
            ]
        )  # fmt: skip
        self.labels_layer: Labels | None = None
        self.job: StepsJob | None = None
        self.new_button.changed.connect(lambda *_: self.new_labels())
        self.open_button.changed.connect(lambda *_: self.open_labels())
        self.save_button.changed.connect(lambda *_: self.save())
        self.window_button.changed.connect(lambda *_: self.move_window())
        self.layer.changed.connect(self._fit_layer)
        viewer.layers.selection.events.active.connect(self._follow_labels)
        viewer.layers.events.removed.connect(self._layer_removed)
        self._fit_layer()

    def _layer_removed(self, event: Any) -> None:
        if event.value is self.labels_layer:  # let its scratch file go
            self.labels_layer = None
            self._show_labels()
            self.status.value = ""

    # --- state -----------------------------------------------------------
    def _fit_layer(self, _value: Any = None) -> None:
        reason = ""
        if self.layer.value is None:
            reason = "no image layer: open an image, then make or open its labels"
        self.hint.value = reason
        self.hint.visible = bool(reason)
        self.new_button.enabled = self.open_button.enabled = not reason
        self._show_labels()

    def _follow_labels(self, _event: Any = None) -> None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Labels) and KEY in active.metadata:
            self.labels_layer = active
            self._show_labels()

    def _show_labels(self) -> None:
        layer = self.labels_layer
        if layer is None or layer not in self.viewer.layers:
            self.labels_layer = None
            self.save_button.enabled = self.window_button.enabled = False
            return
        labels: DiskImage = layer.metadata["disk_image"]
        where = (
            "scratch file (deleted when removed; save to keep)"
            if (labels.is_scratch)
            else "your file, painted in place"
        )
        self.status.value = (
            f"{layer.name!r} lives in {str(labels.path)!r}: {where}, "
            f"{labels.dtype}, {format_bytes(labels.nbytes)}"
        )
        self.save_button.enabled = True
        self.window_button.enabled = layer.metadata[KEY].windowed

    # --- actions ---------------------------------------------------------
    def new_labels(self) -> Labels | None:
        """A new labels layer of zeros for the chosen image layer."""
        image_layer = self.layer.value
        if image_layer is None:
            show_warning("Labels: choose an image layer first.")
            return None
        source: Any = disk_image_of(image_layer)
        if source is None:
            sizes = image_sizes(image_layer)
            source = _Shape(sizes)
        try:
            labels = ndi.new_labels(source, self.dtype.value)
        except (OSError, ValueError) as exc:
            notify_error(f"new labels for {image_layer.name!r}", exc)
            return None
        return self._add(labels, f"{image_layer.name} labels", image_layer)

    def confirm(self, text: str) -> bool:
        """Ask before painting a file in place (tests replace it): True to
        edit the file in place, False to paint a copy."""
        return ask(text, "Edit this file in place", "Copy and paint")

    def open_labels(
        self, path: str | Path | None = None, in_place: bool | None = None
    ) -> Labels | None:
        """Open a saved labels file for the chosen image layer (checked).

        ``in_place`` True paints into the file itself (mode "r+"), False
        into a copy in the disk-image directory; None asks
        (:meth:`confirm`, naming the file) when the file can be written."""
        image_layer = self.layer.value
        p = (Path(path) if path is not None else chosen_path(self.path)).expanduser()
        if str(p) in ("", "."):
            show_warning("Labels: choose the labels file to open.")
            return None
        image: Any = None
        if image_layer is not None:
            image = disk_image_of(image_layer) or _Shape(image_sizes(image_layer))
        if in_place is None and p.is_file() and os.access(p, os.W_OK):
            in_place = self.confirm(
                f"Paint into {str(p)!r} in place? Every stroke goes straight "
                "into this file (undo covers this session's strokes only); "
                "or paint a copy in the disk-image directory and save it."
            )
        try:
            if in_place is False:
                raise PermissionError(f"{str(p)!r}: painting a copy, as chosen")
            labels = ndi.open_labels(p, image, mode="r+")
        except PermissionError:
            try:  # read-only: offer to paint into a copy, as Write pixel does
                original = ndi.open_labels(p, image, mode="r")
            except (OSError, ValueError) as exc:
                notify_error(f"open labels {str(p)!r}", exc)
                return None
            if in_place is False:
                show_info(
                    f"painting into a copy of {str(p)!r} in the disk-image "
                    "directory (save it to keep it); the file is unchanged"
                )
            else:
                show_warning(
                    f"{str(p)!r} is read-only: painting into a copy in the "
                    "disk-image directory (save it to keep it)"
                )
            labels = ndi.copy(original)
            original.close()
        except (OSError, ValueError) as exc:
            notify_error(f"open labels {str(p)!r}", exc)
            return None
        return self._add(labels, p.stem, image_layer)

    def _add(self, labels: DiskImage, name: str, like: Any) -> Labels:
        layer = DiskLabels.attach(self.viewer, labels, name=name, like=like)
        self.labels_layer = layer
        self.viewer.layers.selection.active = layer
        self._show_labels()
        return layer

    def save(self, path: str | Path | None = None) -> StepsJob | None:
        """Save the labels (streamed, atomic); returns the running job."""
        layer = self.labels_layer
        if layer is None:
            show_warning("Labels: make or open labels first.")
            return None
        p = (
            Path(path) if path is not None else chosen_path(self.save_path)
        ).expanduser()
        if str(p) in ("", "."):
            show_warning("Labels: choose a file name ending in .tif or .raw.")
            return None
        labels: DiskImage = layer.metadata["disk_image"]
        labels.flush()
        what = f"save labels {layer.name!r} to {str(p)!r}"

        def done(saved: Path) -> None:
            show_info(f"saved labels {layer.name!r} to {str(saved)!r}")
            self.status.value = f"saved {saved.name}"
            self.saved_path = saved

        def ended() -> None:
            self.job = None  # the finished job must not keep the labels alive

        self.job = start_save(labels, p, what, done, ended)
        return self.job

    def move_window(self) -> Any:
        """Move the paint window of a large plane to the region in view."""
        layer = self.labels_layer
        if layer is None:
            return None
        return layer.metadata[KEY].move_window()


class _Shape:
    """The (t, c, z, y, x) shape of an in-memory image layer."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.shape = tuple(sizes[a] for a in "tczyx")
