"""Labels layers painted straight into disk images (no Qt).

napari paints only non-multiscale labels, and writes into the layer's data
with ``data[index] = value``: when the data is a numpy view of a mapped
file, a brush stroke, a fill, the eraser and undo/redo all go into the file
(other processes see the pixels at once).  :class:`DiskLabels` keeps that
true at any size:

- a plane of at most :data:`WHOLE_PLANE_PIXELS` is shown whole (a view of
  the file);
- a larger plane is painted through a **window**: a full-resolution view
  of the file of at most :data:`WINDOW_SIDE` pixels a side over the region
  in view (``move_window``), placed exactly by the layer's translate,
  beside a read-only multiscale overview of the whole labels plane;
- in 3D the layer shows the labels' bounded 3D overview (the coarsest level
  of the display pyramid, strided in z, y and x), read-only: the layer is a
  :class:`~.labels_layer.DiskLabelsLayer`, whose 3D slices come from the
  overview, so the volume is never loaded, not even by napari's own
  callbacks; its undo history is kept in file coordinates, so undo works
  after the window moved and after a visit to 3D;
- a 3D fill (``n_edit_dimensions = 3``) would flood the whole volume in
  memory, so it is refused with a notification saying why.

Where napari changed the private names the layer builds on (see
:mod:`._compat`), the labels get a plain napari ``Labels`` layer over the
same file view instead, with a warning: painting still writes into the
file, 3D editing is off and a volume larger than a plane of
:data:`WHOLE_PLANE_PIXELS` is hidden in 3D (napari would load it whole);
moving a large plane's paint window clears napari's undo history (it
holds layer-data indices).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._diskimage import DiskImage
from ..display import display_axes, display_levels
from .layers import file_view, view_region

if TYPE_CHECKING:
    from napari.layers import Labels
    from napari.viewer import Viewer

    from .labels_layer import DiskLabelsLayer

__all__ = ["WHOLE_PLANE_PIXELS", "WINDOW_SIDE", "DiskLabels", "file_view"]

#: Planes up to this many pixels are painted whole (a 8192 x 8192 plane).
WHOLE_PLANE_PIXELS = 8192 * 8192
#: Side of the paint window over larger planes.
WINDOW_SIDE = 4096
#: Metadata key of a labels layer's controller.
KEY = "disk_labels"


class DiskLabels:
    """Keeps a napari Labels layer painting into ``labels``' file.

    Made by :meth:`attach`; found again with ``layer.metadata[KEY]``.
    """

    def __init__(self, viewer: Viewer, layer: Labels, labels: DiskImage) -> None:
        self.viewer = viewer
        self.layer = layer
        self.labels = labels
        _, _, _, ny, nx = labels.shape
        self.windowed = ny * nx > WHOLE_PLANE_PIXELS
        self.window: tuple[slice, slice] = (slice(0, ny), slice(0, nx))
        self.overview: Any = None
        self.base_translate = np.asarray(layer.translate, dtype=float)
        #: A plain napari Labels layer (napari's private surface changed).
        self.plain = not hasattr(layer, "disk_labels")
        self._hidden_in_3d = False
        if self.plain:  # hide a large volume before napari slices it in 3D
            viewer.dims.events.ndisplay.connect(
                self._ndisplay_changed, position="first"
            )
        else:
            viewer.dims.events.ndisplay.connect(self._ndisplay_changed)
            layer.events.history_replayed.connect(self._refresh_overview)
        layer.events.n_edit_dimensions.connect(self._refuse_3d_edits)
        layer.events.paint.connect(self._painted)
        viewer.layers.events.removed.connect(self._layer_removed)

    def _painted(self, event: Any = None) -> None:
        """An edit (paint, fill, undo) went into the file: its view cache, if
        any, no longer shows it."""
        from ..display.view_cache import invalidate_view_cache

        invalidate_view_cache(self.labels)

    def _layer_removed(self, event: Any) -> None:
        """The labels layer is gone: let go of the file (a scratch file is
        deleted once nothing else holds it) and of the overview layer."""
        if event.value is not self.layer:
            return
        with contextlib.suppress(Exception):
            self.viewer.dims.events.ndisplay.disconnect(self._ndisplay_changed)
            self.viewer.layers.events.removed.disconnect(self._layer_removed)
        overview, self.overview = self.overview, None
        if overview is not None and overview in self.viewer.layers:
            self.viewer.layers.remove(overview)

    @classmethod
    def attach(
        cls, viewer: Viewer, labels: DiskImage, *, name: str, like: Any = None
    ) -> Labels:
        """Add a Labels layer painting into ``labels``, aligned with ``like``
        (an image layer: same scale, translate, axis labels)."""
        axes = display_axes(labels)
        kwargs: dict[str, Any] = {"name": name, "axis_labels": tuple(axes)}
        if like is not None and like.ndim == len(axes):
            kwargs.update(scale=like.scale, translate=like.translate)
        else:
            z, y, x = labels.spacing
            scale = {"t": 1.0, "z": z, "y": y, "x": x}
            kwargs["scale"] = tuple(scale[a] for a in axes)
        windowed = labels.shape[3] * labels.shape[4] > WHOLE_PLANE_PIXELS
        window = _first_window(labels) if windowed else ()
        if window:
            # a window reads parts of long rows: no readahead of whole rows
            # into the map, each plane's window rows announced instead
            advise = getattr(labels.storage, "advise_random", None)
            if advise is not None:
                advise()
        metadata = {"disk_image": labels, "channel": 0}
        layer: Labels
        from . import _compat  # checks napari's private names (once)

        if _compat.OK:
            from .labels_layer import DiskLabelsLayer

            layer = DiskLabelsLayer(
                file_view(labels, *window),
                disk_labels=labels,
                file_offset=(window[0].start, window[1].start) if window else (0, 0),
                prefetch_planes=bool(window),
                metadata=metadata,
                **kwargs,
            )
        else:
            from napari.layers import Labels

            from .notify import show_warning

            show_warning(_compat.fallback_warning(name))
            layer = Labels(file_view(labels, *window), metadata=metadata, **kwargs)
        controller = cls(viewer, layer, labels)
        viewer.add_layer(layer)
        controller._ndisplay_changed()
        layer.metadata[KEY] = controller
        if windowed:
            controller._add_overview(kwargs)
            controller.move_window()
        return layer

    # --- large planes: the paint window ------------------------------------
    def _add_overview(self, kwargs: dict[str, Any]) -> None:
        """A read-only multiscale view of the whole labels plane, under the
        paint window."""
        from .paint_refusal import read_only_labels

        overview = read_only_labels(
            display_levels(self.labels, 0, view_cache=False),
            multiscale=True,
            name=f"{self.layer.name} (overview)",
            opacity=0.5,
            scale=kwargs["scale"],
            translate=kwargs.get("translate", (0.0,) * self.layer.ndim),
            metadata={"disk_image": self.labels, "channel": 0, "labels_overview": True},
            read_only_reason=(
                f"{self.layer.name!r} (overview) shows the whole plane read-only; "
                f"paint on {self.layer.name!r}, whose paint window follows the "
                "view (Labels > Move paint window to view)"
            ),
        )
        self.viewer.add_layer(overview)
        self.overview = overview
        layers = self.viewer.layers
        layers.move(layers.index(overview), layers.index(self.layer))
        layers.selection.active = self.layer

    def move_window(self) -> tuple[slice, slice]:
        """Put the paint window over the region in view (a plane larger than
        :data:`WHOLE_PLANE_PIXELS`); returns its (y, x) slices."""
        if not self.windowed or self.viewer.dims.ndisplay == 3:
            return self.window
        _, _, _, ny, nx = self.labels.shape
        region = view_region(self.viewer, self.layer)
        cy = (sum(region.get("y", (0, ny))) / 2) + (
            self.window[0].start if "y" in region else 0
        )
        cx = (sum(region.get("x", (0, nx))) / 2) + (
            self.window[1].start if "x" in region else 0
        )
        side_y, side_x = min(WINDOW_SIDE, ny), min(WINDOW_SIDE, nx)
        y0 = int(min(max(cy - side_y / 2, 0), ny - side_y))
        x0 = int(min(max(cx - side_x / 2, 0), nx - side_x))
        self.window = (slice(y0, y0 + side_y), slice(x0, x0 + side_x))
        scale = np.asarray(self.layer.scale, dtype=float)
        translate = self.base_translate.copy()
        translate[-2] += y0 * scale[-2]
        translate[-1] += x0 * scale[-1]
        if self.plain:  # napari's history holds indices into the old window
            self.layer.data = file_view(self.labels, *self.window)
            self.layer.editable = False  # napari clears the history here
            self.layer.editable = True
        else:  # first: the new data is sliced at once
            cast("DiskLabelsLayer", self.layer).file_offset = (y0, x0)
            self.layer.data = file_view(self.labels, *self.window)
        self.layer.translate = tuple(translate)
        self._refresh_overview()
        return self.window

    def _refresh_overview(self, event: Any = None) -> None:
        if self.overview is not None:
            from ..display import clear_cache

            clear_cache(self.labels)
            with contextlib.suppress(Exception):
                self.overview.refresh()

    # --- 3D ----------------------------------------------------------------
    def _ndisplay_changed(self, event: Any = None) -> None:
        """Read-only in 3D (the layer shows the overview there, see
        :class:`~.labels_layer.DiskLabelsLayer`), editable again in 2D."""
        if self.layer in self.viewer.layers or event is None:
            in_2d = self.viewer.dims.ndisplay == 2
            if self.plain:
                self._hide_large_volume_in_3d(in_2d)
            self.layer.editable = in_2d

    def _hide_large_volume_in_3d(self, in_2d: bool) -> None:
        """A plain Labels layer would load its whole volume in 3D: hide it
        there (napari does not slice a hidden layer), show it again in 2D."""
        _, _, nz, ny, nx = self.labels.shape
        if in_2d:
            if self._hidden_in_3d:
                self._hidden_in_3d = False
                self.layer.visible = True
        elif self.layer.visible and nz * ny * nx > WHOLE_PLANE_PIXELS:
            self._hidden_in_3d = True
            self.layer.visible = False

    def _refuse_3d_edits(self, event: Any = None) -> None:
        if self.layer.n_edit_dimensions > 2:
            self.layer.n_edit_dimensions = 2
            from .notify import show_warning

            show_warning(
                f"3D painting and fill are off for {self.layer.name!r}: its "
                "labels live on disk, and napari's 3D fill floods the whole "
                "volume in memory. Paint and fill plane by plane (2D), or "
                "label a mask with Process > label"
            )


def _first_window(labels: DiskImage) -> tuple[slice, slice]:
    _, _, _, ny, nx = labels.shape
    side_y, side_x = min(WINDOW_SIDE, ny), min(WINDOW_SIDE, nx)
    y0, x0 = (ny - side_y) // 2, (nx - side_x) // 2
    return slice(y0, y0 + side_y), slice(x0, x0 + side_x)
