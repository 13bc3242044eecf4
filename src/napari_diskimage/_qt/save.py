"""The "Save as TIFF / RAW / OME-Zarr" tool: streams a layer's disk image.

In a worker thread with progress and Cancel; atomic (a temporary file
renamed when complete), so a cancelled or failed save leaves nothing and
an existing file at the target is unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari.layers
import napari.viewer
from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, FileEdit

from .._napari.layers import disk_image_of, layer_source
from .._napari.notify import notify_error, show_info, show_warning
from ._common import LayerChoice, apply_saved_settings, chosen_path, unwrap
from ._job import JobTool, StepsJob, start_save

__all__ = ["SaveImage"]

BYTE_ORDERS = [("little-endian (<)", "<"), ("big-endian (>)", ">")]


class SaveImage(JobTool):
    """Save a layer to an uncompressed TIFF or a RAW file, streaming."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(viewer, labels=True)
        self.path = FileEdit(
            label="save as",
            mode=FileDialogMode.OPTIONAL_FILE,
            filter="Images (*.tif *.tiff *.raw *.zarr)",
        )
        self.byte_order = ComboBox(label="RAW byte order", choices=BYTE_ORDERS)
        super().__init__("Save", [self.layer, self.path, self.byte_order])
        self.save_button = self.start_button
        self.layer.changed.connect(self._suggest_name)

    def unavailable_reason(self) -> str:
        reason = super().unavailable_reason()
        layer = self.layer.value
        if reason or layer is None:
            return reason
        if getattr(layer, "rgb", False) and disk_image_of(layer) is None:
            return (
                f"{layer.name!r} is an in-memory RGB layer: save it with "
                "napari's File > Save Selected Layers"
            )
        return ""

    def _suggest_name(self, _value: Any = None) -> None:
        layer = self.layer.value
        img = disk_image_of(layer)
        if img is not None and not img.is_scratch and str(self.path.value) in ("", "."):
            self.path.value = img.path.with_name(img.path.stem + "-copy.tif")

    def make_job(self) -> StepsJob | None:
        layer = self.layer.value
        if layer is None:
            show_warning("Save: choose an image layer first.")
            return None
        path = chosen_path(self.path).expanduser()
        if str(self.path.value) in ("", "."):
            show_warning(
                "Save: choose a file name ending in .tif, .tiff, .raw or .ome.zarr."
            )
            return None
        attributes = {
            "name": layer.name,
            "metadata": layer.metadata,
            "rgb": getattr(layer, "rgb", False),
            "multiscale": layer.multiscale,
        }
        try:
            source = layer_source(layer.data, attributes)
        except ValueError as exc:
            notify_error(f"save {layer.name!r}", exc)
            return None
        what = f"save {layer.name!r} to {str(path)!r}"

        def done(saved: Path) -> None:
            show_info(f"saved {layer.name!r} to {str(saved)!r}")
            self.status.value = f"saved {saved.name}"

        if path.name.lower().endswith(".zarr"):  # OME-Zarr, with its pyramid
            from ..io.ome_zarr import iter_save_ome_zarr

            labels = isinstance(layer, napari.layers.Labels)
            method = "mode" if labels else "mean"
            return StepsJob(
                lambda: iter_save_ome_zarr(source, path, downsample=method),
                what,
                done,
                self.job_ended,
            ).start()
        return start_save(
            source, path, what, done, self.job_ended, self.byte_order.value
        )
