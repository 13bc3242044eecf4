"""The "Image info" tool: what the selected layer's image is."""

from __future__ import annotations

from typing import Any

import napari.viewer
from magicgui.widgets import Container

from .._napari.layers import describe_layer
from ._common import apply_saved_settings, status_label, unwrap

__all__ = ["ImageInfo"]


class ImageInfo(Container):
    """File, kind, geometry and size of the selected layer's image."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.info = status_label()
        super().__init__(widgets=[self.info])
        viewer.layers.selection.events.active.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def refresh(self, _event: Any = None) -> str:
        self.info.value = describe_layer(self.viewer.layers.selection.active)
        return self.info.value
