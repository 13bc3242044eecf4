"""The "Image info" tool: what the selected layer's image is."""

from __future__ import annotations

from typing import Any

import napari.viewer
from magicgui.widgets import Container

from .._napari.layers import describe_layer
from ._common import apply_saved_settings, status_label, unwrap
from .view_cache import ViewCacheActions

__all__ = ["ImageInfo"]


class ImageInfo(Container):
    """File, kind, geometry and size of the selected layer's image."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.info = status_label()
        # the view cache of the selected image: build (size shown) / clear
        self.view_cache = ViewCacheActions(viewer)
        super().__init__(widgets=[self.info, self.view_cache])
        viewer.layers.selection.events.active.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def refresh(self, _event: Any = None) -> str:
        self.info.value = describe_layer(self.viewer.layers.selection.active)
        self.view_cache.refresh()
        return self.info.value
