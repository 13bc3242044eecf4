"""The "Copy to disk image" tool (IPSDK util.copyImg).

Copies any image layer (a disk image or in-memory data) into a scratch
disk image in a worker thread, with progress and Cancel, and adds it as a
new layer; a cancelled or failed copy leaves no file.
"""

from __future__ import annotations

from collections.abc import Callable

import napari.viewer
from napari.layers import Layer
from napari.viewer import Viewer

import napari_diskimage as ndi

from .._diskimage import DiskImage
from .._napari.layers import copy_source
from .._napari.notify import notify_error, show_info, show_warning
from .._scratch import format_bytes
from ._common import LayerChoice, add_disk_image, apply_saved_settings, unwrap
from ._job import JobTool, StepsJob

__all__ = ["CopyToDiskImage", "start_copy"]


def start_copy(
    viewer: Viewer,
    layer: Layer,
    on_done: Callable[[DiskImage, list[Layer]], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> StepsJob:
    """Copy ``layer`` into a scratch disk image in a worker; add its layers."""
    source = copy_source(layer)
    name = f"{layer.name} (disk image)"

    def done(image: DiskImage) -> None:
        new_layers = add_disk_image(viewer, image, name)
        if not isinstance(source, DiskImage):
            for new in new_layers:  # keep the placement of the in-memory layer
                if new.ndim == layer.ndim:
                    new.scale = layer.scale
                    new.translate = layer.translate
                    new.contrast_limits = layer.contrast_limits
        show_info(
            f"copied {layer.name!r} to the disk image {str(image.path)!r} "
            f"({format_bytes(image.nbytes)})"
        )
        if on_done is not None:
            on_done(image, new_layers)

    return StepsJob(
        lambda: ndi.iter_copy(source), f"copy {layer.name!r}", done, on_end
    ).start()


class CopyToDiskImage(JobTool):
    """Copy an image layer into a scratch disk image (IPSDK util.copyImg)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(viewer)
        super().__init__("Copy to disk image", [self.layer])
        self.copy_button = self.start_button

    def make_job(self) -> StepsJob | None:
        layer = self.layer.value
        if layer is None:
            show_warning("Copy to disk image: choose an image layer first.")
            return None
        try:
            return start_copy(self.viewer, layer, on_end=self.job_ended)
        except (OSError, ValueError) as exc:
            notify_error(f"copy {layer.name!r}", exc)
            return None
