"""The "Image info" tool: what the selected layer's image is."""

from __future__ import annotations

import math
from typing import Any

import napari.viewer
from magicgui.widgets import Container
from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QTextOption
from qtpy.QtWidgets import QFrame, QSizePolicy, QTextEdit

from .._napari.layers import describe_layer
from ._common import apply_saved_settings, unwrap
from .view_cache import ViewCacheActions

__all__ = ["ImageInfo", "WrappedText"]


class ImageInfo(Container):
    """File, kind, geometry and size of the selected layer's image."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        super().__init__(widgets=[])
        self.info = WrappedText()
        self.native.layout().addWidget(self.info.native)
        # the view cache of the selected image: build (size shown) / clear
        self.view_cache = ViewCacheActions(viewer)
        self.native.layout().addWidget(self.view_cache.native)
        viewer.layers.selection.events.active.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def refresh(self, _event: Any = None) -> str:
        self.info.value = describe_layer(self.viewer.layers.selection.active)
        self.view_cache.refresh()
        return self.info.value


class _TextBox(QTextEdit):
    """Read-only text as tall as its lines at its width (height for width,
    as a word-wrapped label), wrapped at spaces or, in a word too long for
    a line, anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.setReadOnly(True)
        self.setLineWrapMode(QTextEdit.LineWrapMode.WidgetWidth)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setFrameShape(QFrame.Shape.NoFrame)
        viewport = self.viewport()
        if viewport is not None:
            viewport.setAutoFillBackground(False)
        self.setStyleSheet("QTextEdit { background: transparent; }")
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.textChanged.connect(self.updateGeometry)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        source = self.document()
        document = source.clone() if source is not None else None
        if document is None:  # pragma: no cover - a QTextEdit has one
            return 0
        margins = self.contentsMargins()
        # a layout also asks at its narrowest (0 with an "ignored" width):
        # count at least ten characters a line there, not one
        narrowest = 10 * self.fontMetrics().averageCharWidth()
        width = max(width - margins.left() - margins.right(), narrowest)
        document.setTextWidth(width)
        return math.ceil(document.size().height()) + margins.top() + margins.bottom()

    def sizeHint(self) -> QSize:
        width = max(1, self.width())
        return QSize(width, self.heightForWidth(width))

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        if self.height() < self.heightForWidth(self.width()):
            self.updateGeometry()  # the new width needs more lines


class WrappedText:
    """Text a user reads and copies whole: a long file path with no spaces
    wraps instead of being cut at the panel's edge.

    A word-wrapped label breaks lines at spaces only, so it cut such a path;
    invisible break characters in it would go into what the user copies.
    ``value`` is the text, ``native`` the Qt widget."""

    def __init__(self) -> None:
        self.native = _TextBox()

    @property
    def value(self) -> str:
        return str(self.native.toPlainText())

    @value.setter
    def value(self, text: str) -> None:
        self.native.setPlainText(text)
