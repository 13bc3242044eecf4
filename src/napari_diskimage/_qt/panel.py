"""The "Disk images" panel: every tool of the plugin in one dock widget.

One collapsible section per tool (superqt's ``QCollapsible``), titled with
the tool's full name (the one of the Plugins menu), in a vertical scroll
area that never scrolls sideways: the panel fits napari's default window
(1280 x 800) whatever is open.  Which sections are open is remembered
across napari restarts (the plugin's settings file).  The tools stay
available one by one in the Plugins menu.
"""

from __future__ import annotations

from typing import Any

import napari.viewer
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea, QSizePolicy, QVBoxLayout, QWidget
from superqt import QCollapsible

from .. import _settings
from ._common import apply_saved_settings, fit_labels, unwrap

__all__ = ["OPEN_BY_DEFAULT", "PANEL_WIDTH", "DiskImagesPanel"]

#: The panel's width in pixels: the longest operation name ("Label connected
#: components") whole in napari's font beside the section's indent.
PANEL_WIDTH = 330
#: Sections open the first time the panel is shown.
OPEN_BY_DEFAULT = ("Image info",)
_KEY = "panel_open_sections"


class _Section(QCollapsible):
    """A section whose open content takes the height it needs.

    ``QCollapsible`` caps an open section's height at its content's size
    hint when it opens (and on a child's resize); a word-wrapped label's
    hint is a guess that ignores the width, so a tool whose text grew (Image
    info of another layer, a status line) was cut after a few lines."""

    def _expand_collapse(
        self, direction: Any, animate: bool = True, emit: bool = True
    ) -> None:
        super()._expand_collapse(direction, animate=False, emit=emit)
        if self.isExpanded():
            self._content.setMaximumHeight(_NO_LIMIT)


_NO_LIMIT = 16777215  # QWIDGETSIZE_MAX


class DiskImagesPanel(QWidget):
    """All the plugin's tools, each in a section named after it.

    ``tools`` maps each full name to its widget (the same classes as the
    single widgets of the Plugins menu); ``sections`` to its
    ``QCollapsible``.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from . import TOOLS

        apply_saved_settings()
        self.viewer = unwrap(viewer)
        self.tools: dict[str, Any] = {}
        self.sections: dict[str, QCollapsible] = {}
        saved = _settings.load_settings().get(_KEY)
        opened = set(saved) if isinstance(saved, list) else set(OPEN_BY_DEFAULT)

        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(4, 4, 4, 4)
        column.setSpacing(2)
        for name, cls in TOOLS:
            tool = cls(self.viewer)
            section = _Section(name)
            section.setDuration(0)  # no animation: docking stays quick
            section.addWidget(tool.native)
            tool.native.setSizePolicy(
                QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred
            )
            if name in opened:
                section.expand(animate=False)
            else:
                section.collapse(animate=False)
            section.toggled.connect(self._remember)
            column.addWidget(section)
            self.tools[name] = tool
            self.sections[name] = section
        column.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        self.setMinimumWidth(PANEL_WIDTH)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        fit_labels(self)  # the style sheet's font is known once shown

    def open_sections(self) -> list[str]:
        """Names of the sections that are open, in panel order."""
        return [name for name, s in self.sections.items() if s.isExpanded()]

    def show_tool(self, name: str) -> Any:
        """Open the section of tool ``name`` and return the tool's widget."""
        self.sections[name].expand(animate=False)
        self._remember()
        return self.tools[name]

    def _remember(self, *_args: Any) -> None:
        # a failure to save the choice must not disturb the user's work
        _settings.save_setting(_KEY, self.open_sections(), quiet=True)
