"""Parts every tool uses: the layer drop-down, labels, layer updates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, FileEdit, Label
from napari.layers import Image, Labels, Layer
from napari.viewer import Viewer

from .. import _settings
from .._diskimage import DiskImage
from .._napari.layers import disk_image_of, image_sizes
from .._napari.notify import show_warning
from .._scratch import sweep_orphans

__all__ = [
    "MAX_INT",
    "NO_IMAGE_LAYER",
    "LayerChoice",
    "add_disk_image",
    "apply_saved_settings",
    "ask",
    "chosen_path",
    "elide_middle",
    "fit_labels",
    "refresh_layer",
    "show_axes_of",
    "status_label",
    "unwrap",
]

MAX_INT = 2**31 - 1  # Qt spin boxes hold 32-bit ints
#: Why a tool that takes an image layer cannot act when there is none.
NO_IMAGE_LAYER = "no image layer: open an image (File > Open) or choose one above"


def unwrap(viewer: Any) -> Viewer:
    """The viewer itself, not the proxy napari hands to dock widgets.

    napari passes plugin widgets a proxy that refuses private attributes;
    the core works on the real layers and disk images.
    """
    return getattr(viewer, "__wrapped__", viewer)


def chosen_path(edit: FileEdit) -> Path:
    """The path in a file field that holds one (modes r, w and d; ``Path(".")``
    when empty)."""
    value = edit.value
    if isinstance(value, tuple):  # mode "rm" only: several files
        value = value[0] if value else None
    return Path(value if value is not None else "")


def status_label() -> Label:
    """A label for long messages and paths that wraps instead of widening the
    dock (a long file path would otherwise squeeze napari's canvas)."""
    from qtpy.QtWidgets import QSizePolicy

    label = Label(value="")
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.native.setTextInteractionFlags(
        label.native.textInteractionFlags() | _selectable()
    )
    _grow_with_text(label.native)
    label.changed.connect(lambda *_: _fit_height(label.native))
    return label


def _fit_height(native: Any) -> None:
    """At least the height the wrapped text needs at the label's width."""
    width = native.width()
    if width > 0 and native.isVisible():
        native.setMinimumHeight(max(0, native.heightForWidth(width)))


def _grow_with_text(native: Any) -> None:
    """Keep a word-wrapped label as tall as its text at its width.

    magicgui wraps each labelled widget in a container whose layout does not
    pass on a label's height-for-width: the label kept the height of a guess
    and its last lines were cut ("Image info" stopped after the geometry
    line, a status line after "done in 18.3 s,")."""
    from qtpy.QtCore import QEvent, QObject

    class _Filter(QObject):
        def eventFilter(self, obj: Any, event: Any) -> bool:
            if event.type() in (QEvent.Type.Resize, QEvent.Type.Show):
                _fit_height(native)
            return False

    native._height_filter = _Filter(native)  # kept alive with the label
    native.installEventFilter(native._height_filter)


def _selectable() -> Any:
    from qtpy.QtCore import Qt

    return Qt.TextInteractionFlag.TextSelectableByMouse


def apply_saved_settings() -> None:
    """Use the saved disk-image directory (unless $NAPARI_DISKIMAGE_DIR is set),
    and remove scratch files left there by napari sessions that were killed."""
    problem = _settings.apply_saved_disk_image_dir()
    if problem:
        show_warning(problem)
    sweep_orphans()  # never raises; spares files of running processes


def refresh_layer(layer: Layer) -> None:
    """Re-read what ``layer`` shows from its file, at every pyramid level.

    napari (0.7+) keeps the coarsest level of a 2D multiscale layer in
    memory (``_level_materializer``, an ``lru_cache``) and ``refresh()``
    does not clear it, so a written pixel would not show when zoomed out
    nor in the thumbnail.
    """
    from .._napari._compat import clear_level_cache

    clear_level_cache(layer)
    layer.refresh()


def add_disk_image(viewer: Viewer, image: DiskImage, name: str) -> list[Layer]:
    """Add the layers of ``image`` (one per channel) to ``viewer``; their 3D
    rendering is chosen as for a file opened with the reader."""
    from .._napari.reader import disk_image_layers
    from .._napari.render3d import watch

    watch(viewer)  # once per viewer: a porous volume's 3D rendering
    return [
        viewer.add_image(data, **kwargs)
        for data, kwargs, _ in disk_image_layers(image, name=name)
    ]


def elide_middle(combo: Any) -> None:
    """Show a Qt combo box's text elided in the middle, whole in a tooltip.

    Qt cuts a long item at the right ("pores_2048x20"): two layers whose
    names start alike look the same.  Elided in the middle the start and
    the end both show ("pores_20...x512 median"); the list that drops down
    is as wide as the longest name.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import (
        QComboBox,
        QStyle,
        QStyleOptionComboBox,
        QStylePainter,
    )

    combo.setSizeAdjustPolicy(
        QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
    )
    combo.setMinimumContentsLength(8)
    combo.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)

    def paint_event(_event: Any) -> None:
        painter = QStylePainter(combo)
        option = QStyleOptionComboBox()
        combo.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        field = combo.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox,
            option,
            QStyle.SubControl.SC_ComboBoxEditField,
            combo,
        )
        option.currentText = combo.fontMetrics().elidedText(
            option.currentText, Qt.TextElideMode.ElideMiddle, field.width()
        )
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)

    def update_tooltip(*_args: Any) -> None:
        combo.setToolTip(combo.currentText())
        texts = [combo.itemText(i) for i in range(combo.count())]
        widest = max(
            (combo.fontMetrics().horizontalAdvance(t) for t in texts), default=0
        )
        combo.view().setMinimumWidth(widest + 32)

    combo.paintEvent = paint_event
    combo.currentTextChanged.connect(update_tooltip)
    combo.model().rowsInserted.connect(update_tooltip)
    update_tooltip()


def ask(text: str, yes: str, no: str = "Cancel") -> bool:
    """A modal question with two buttons; True when ``yes`` was chosen.

    Tools call it through their ``confirm`` attribute, which tests (and
    scripts) replace by a function that answers."""
    from qtpy.QtWidgets import QApplication, QMessageBox

    box = QMessageBox(QApplication.activeWindow())
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("napari-diskimage")
    box.setText(text)
    accept = box.addButton(yes, QMessageBox.ButtonRole.AcceptRole)
    box.addButton(no, QMessageBox.ButtonRole.RejectRole)
    box.exec()
    return box.clickedButton() is accept


def fit_labels(widget: Any) -> None:
    """Widen the one-line labels under ``widget`` to their whole text.

    magicgui sizes a container's label column from the application's font,
    not the one napari's style sheet gives the panel, so "connectivity"
    showed as "connectivit"; measured here with the label's own, polished
    font."""
    from qtpy.QtWidgets import QLabel

    for label in widget.findChildren(QLabel):
        if label.wordWrap() or not label.text():
            continue
        label.ensurePolished()
        label.setMinimumWidth(0)  # magicgui's guess must not cap the hint
        need = max(
            label.sizeHint().width(),
            label.fontMetrics().horizontalAdvance(label.text()) + 8,
        )
        if label.minimumWidth() < need:
            label.setMinimumWidth(need)


class LayerChoice(ComboBox):
    """A drop-down of the viewer's layers of some kinds.

    ``kinds`` are the layer classes listed (image layers by default);
    ``labels`` adds labels layers (never the read-only overview of another
    labels layer's file); ``disk_images_only`` lists only layers backed by
    a disk image.  ``follow_selection`` makes it choose the layer the user
    selects in the layer list (when it lists it); ``nullable`` False keeps
    a layer chosen (the last one) whenever there is one.  Long names are
    elided in the middle, whole in the tooltip (:func:`elide_middle`).
    """

    def __init__(
        self,
        viewer: Viewer,
        label: str = "layer",
        disk_images_only: bool = False,
        labels: bool = False,
        *,
        kinds: tuple[type[Layer], ...] = (Image,),
        nullable: bool = True,
        follow_selection: bool = True,
    ) -> None:
        self._viewer = viewer
        self._disk_images_only = disk_images_only
        self._kinds = (*kinds, Labels) if labels else kinds
        self._keep_one = not nullable
        self._follows = follow_selection
        super().__init__(label=label, choices=self._choices, nullable=nullable)
        elide_middle(self.native)
        events = viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self._refresh)
        if follow_selection:
            viewer.layers.selection.events.active.connect(self._follow_selection)
            self._follow_selection()
        else:
            self._refresh()

    def _accepts(self, layer: Any) -> bool:
        if not isinstance(layer, self._kinds):
            return False
        if isinstance(layer, Labels) and layer.metadata.get("labels_overview"):
            return False  # a view of another labels layer's file
        return not self._disk_images_only or disk_image_of(layer) is not None

    def _choices(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return [(lay.name, lay) for lay in self._viewer.layers if self._accepts(lay)]

    def _refresh(self, _event: Any = None) -> None:
        self.reset_choices()
        if self.value is not None:
            return
        if self._follows:
            self._follow_selection()
        elif self._keep_one:
            choices = self._choices()
            if choices:
                self.value = choices[-1][1]

    def _follow_selection(self, _event: Any = None) -> None:
        active = self._viewer.layers.selection.active
        if self._accepts(active) and active in self._viewer.layers:
            self.reset_choices()
            self.value = active


def show_axes_of(layer: Layer | None, fields: dict[str, Any]) -> None:
    """Show the fields of the axes ``layer``'s image has (x, y always; z, c,
    t only when longer than 1), so a 2D image shows no z, c, t fields."""
    sizes = image_sizes(layer) if layer is not None else None
    for axis, widget in fields.items():
        has = sizes is None or axis in "xy" or sizes.get(axis, 1) > 1
        if widget.visible != has:
            widget.visible = has
            if not has:
                widget.value = 0
