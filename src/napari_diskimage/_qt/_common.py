"""Parts every tool uses: the layer drop-down, labels, layer updates."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, Label
from napari.layers import Image, Layer
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
    return label


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
    materializer = getattr(layer, "_level_materializer", None)
    if materializer is not None and hasattr(materializer, "cache_clear"):
        materializer.cache_clear()
    layer.refresh()


def add_disk_image(viewer: Viewer, image: DiskImage, name: str) -> list[Layer]:
    """Add the layers of ``image`` (one per channel) to ``viewer``."""
    from .._napari.reader import disk_image_layers

    return [
        viewer.add_image(data, **kwargs)
        for data, kwargs, _ in disk_image_layers(image, name=name)
    ]


class LayerChoice(ComboBox):
    """A drop-down of the viewer's image layers that follows the selection.

    ``disk_images_only`` lists only layers backed by a disk image.
    """

    def __init__(
        self, viewer: Viewer, label: str = "layer", disk_images_only: bool = False
    ) -> None:
        self._viewer = viewer
        self._disk_images_only = disk_images_only
        super().__init__(label=label, choices=self._choices, nullable=True)
        events = viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self._refresh)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        self._follow_selection()

    def _accepts(self, layer: Any) -> bool:
        if not isinstance(layer, Image):
            return False
        return not self._disk_images_only or disk_image_of(layer) is not None

    def _choices(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return [(lay.name, lay) for lay in self._viewer.layers if self._accepts(lay)]

    def _refresh(self, _event: Any = None) -> None:
        self.reset_choices()
        if self.value is None:
            self._follow_selection()

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
