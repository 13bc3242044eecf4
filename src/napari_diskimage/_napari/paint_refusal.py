"""Say why a labels layer cannot be painted when a paint tool is chosen.

napari quietly keeps a labels layer that is not editable (multiscale,
3D-only, hidden) in pan/zoom when the brush, eraser, fill or polygon is
chosen: the user clicks and nothing happens.  :func:`refuse_mode` is
called by the plugin's labels layers with the mode asked for and the one
napari kept, and shows a notification with the reason and what to do.
"""

from __future__ import annotations

from typing import Any

from napari.layers import Labels

__all__ = ["ReadOnlyLabels", "read_only_labels", "refuse_mode", "why_not_paintable"]

#: napari's labels modes (its ``Mode`` string enum) that do not paint.
_VIEWING = ("pan_zoom", "transform", "pick")


def why_not_paintable(layer: Labels, viewer_ndisplay: int | None = None) -> str:
    """Why ``layer`` cannot be painted now, in the user's words ("" if it can)."""
    name = repr(layer.name)
    reason = getattr(layer, "read_only_reason", "")
    if reason:
        return reason
    if not layer.visible:
        return f"{name} is hidden: show it (the eye in the layer list) to paint"
    if getattr(layer, "disk_labels", None) is not None and not layer.editable:
        return (
            f"{name} is read-only in 3D: its labels live on disk and the 3D "
            "view shows a reduced overview; switch to 2D to paint"
        )
    if layer.multiscale:
        return (
            f"{name} is a multiscale labels layer, which napari cannot paint; "
            "open its file with the Labels tool (Open labels file) to paint it"
        )
    if not layer.editable:
        return f"{name} is not editable"
    return ""


def refuse_mode(layer: Labels, asked: Any, kept: Any) -> None:
    """A notification when napari kept ``layer`` out of paint mode ``asked``."""
    asked_mode, kept_mode = str(asked), str(kept)  # napari's modes: str enums
    if asked_mode in _VIEWING or kept_mode == asked_mode:
        return
    reason = why_not_paintable(layer)
    if reason:
        from .notify import show_warning

        show_warning(f"cannot {asked_mode.replace('_', ' ')}: {reason}")


class ReadOnlyLabels(Labels):
    """A napari Labels layer that says why when a paint tool is chosen.

    ``read_only_reason`` is the message (e.g. the overview of a large labels
    plane: "paint on the layer above").  It overrides napari's private
    ``_mode_setter_helper`` (checked by :mod:`._compat`); where that changed,
    :func:`read_only_labels` makes a plain ``Labels`` layer instead.
    """

    read_only_reason: str = ""

    def __init__(self, data: Any, *, read_only_reason: str = "", **kwargs: Any):
        self.read_only_reason = read_only_reason
        super().__init__(data, **kwargs)

    @property
    def _type_string(self) -> str:
        return "labels"

    def _mode_setter_helper(self, mode: Any) -> Any:
        kept = super()._mode_setter_helper(mode)
        refuse_mode(self, mode, kept)
        return kept


def read_only_labels(data: Any, *, read_only_reason: str = "", **kwargs: Any) -> Labels:
    """A read-only labels layer: a :class:`ReadOnlyLabels`, or a plain
    napari ``Labels`` layer (not editable) where napari's private surface
    changed (:data:`._compat.OK` False)."""
    from . import _compat

    if _compat.OK:
        return ReadOnlyLabels(data, read_only_reason=read_only_reason, **kwargs)
    layer = Labels(data, **kwargs)
    layer.editable = False
    return layer
