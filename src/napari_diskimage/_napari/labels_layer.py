"""The napari Labels layer of disk-image labels (no Qt).

:class:`DiskLabelsLayer` is a napari ``Labels`` layer (its controls, its
paint brush, fill, polygon, picker, eraser, undo and redo are napari's)
whose data is a numpy view of a mapped labels file, so napari's edits
write straight into the file.  It changes three things napari would do
with such a layer, each of which would load or corrupt a volume larger
than memory:

- **3D slices come from the labels' 3D overview.**  napari slices a
  non-multiscale layer whole in 3D (and converts it to a texture: a copy
  of the volume in memory), and it does so in its own ``ndisplay``
  callbacks, before any plugin can swap the data.  Here the layer's
  slicing state asks the 3D overview (the coarsest level of the labels'
  display pyramid, strided in z, y and x) instead, and places it with the
  tile-to-data transform napari uses for multiscale levels.  The layer's
  data never changes, so 2D shows the file again on the way back.
- **The undo history is kept in file coordinates.**  A plane too large to
  show whole is painted through a window of the file (``layer.data`` is
  replaced when the window moves); napari's history holds layer-data
  indices, which would land in the wrong place once the window moved.
  Here each committed edit is stored with the window's offset added, and
  undo and redo write into the whole file view.  An edit made while a
  script had set ``data`` to another array stays with that array: its
  undo and redo write there, never into the file.
- **Leaving 2D keeps the history.**  The layer is read-only in 3D
  (napari's 3D painting writes through the displayed slice, which is the
  overview here); napari clears the history whenever a layer stops being
  editable, which would lose the user's undo.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import numpy as np
from napari.layers import Labels
from napari.utils.geometry import clamp_point_to_bounding_box
from napari.utils.transforms import Affine

from .._diskimage import DiskImage
from ..display import clear_cache, display_axes, display_levels
from . import _compat
from ._compat import (
    LabelsSliceRequest,
    LabelsSlicingState,
    MaskedPaintAtom,
    ThickNDSlice,
)
from .layers import file_view

__all__ = ["DiskLabelsLayer"]


@dataclasses.dataclass(frozen=True)
class _OverviewSliceRequest(LabelsSliceRequest):
    """A 3D slice request over the labels' overview; the response carries
    the overview's placement in the layer's data coordinates."""

    overview_to_data: Affine | None = None

    def __call__(self) -> Any:
        response = super().__call__()
        return dataclasses.replace(response, tile_to_data=self.overview_to_data)


class _DiskLabelsSlicingState(LabelsSlicingState):
    layer: DiskLabelsLayer

    def _make_slice_request_internal(self, **kwargs: Any) -> Any:
        request = super()._make_slice_request_internal(**kwargs)
        if request.slice_input.ndisplay != 3:
            self.layer._prefetch(request)
            return request
        overview = self.layer._overview_3d()
        if overview is None:
            return request
        data, scale, translate = overview
        # non-displayed axes (t; z when it is not shown) in overview indices
        bounds = request.data_slice.as_array()
        bounds[0] = np.clip(
            (bounds[0] - translate) / scale, 0, np.asarray(data.shape) - 1
        )
        bounds[1:] /= scale
        ndim = len(scale)
        fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
        fields.update(
            data_at_data_level=data,
            data_at_thumbnail_level=data,
            data_slice=ThickNDSlice.from_array(bounds),
            level_shapes=np.array([data.shape]),
            downsample_factors=np.ones((1, ndim)),
            overview_to_data=Affine(
                scale=scale, translate=translate, ndim=ndim, name="tile2data"
            ),
        )
        return _OverviewSliceRequest(**fields)


class DiskLabelsLayer(Labels):
    """A napari Labels layer painting into a labels disk image.

    Made by :meth:`napari_diskimage._napari.labels.DiskLabels.attach`,
    which sets :attr:`disk_labels` and keeps :attr:`file_offset` (where
    ``data[..., 0, 0]`` is in the file's y and x) up to date.
    """

    #: The labels disk image whose file ``data`` is a view of.
    disk_labels: DiskImage | None = None
    #: (y, x) of the layer data's first pixel in the file.
    file_offset: tuple[int, int] = (0, 0)
    #: Announce the rows of each 2D slice to the kernel before napari reads
    #: them (a paint window, whose map does no readahead).
    prefetch_planes: bool = False

    def __init__(
        self,
        data: Any,
        *,
        disk_labels: DiskImage | None = None,
        file_offset: tuple[int, int] = (0, 0),
        prefetch_planes: bool = False,
        **kwargs: Any,
    ) -> None:
        # before napari's first slice, which the constructor makes
        self.disk_labels = disk_labels
        self.file_offset = file_offset
        self.prefetch_planes = prefetch_planes
        super().__init__(data, **kwargs)
        # after undo or redo, which may write outside the data shown
        self.events.add(history_replayed=None)

    @property
    def _type_string(self) -> str:
        # napari's writers, layer icons and menus know layers by this name
        return "labels"

    def _get_layer_slicing_state(self, data: Any, cache: bool) -> Any:
        return _DiskLabelsSlicingState(self, data, cache)

    def _mode_setter_helper(self, mode: Any) -> Any:
        # napari keeps a layer it will not paint in pan/zoom, silently
        kept = super()._mode_setter_helper(mode)
        from .paint_refusal import refuse_mode

        refuse_mode(self, mode, kept)
        return kept

    def _prefetch(self, request: Any) -> None:
        """Start reading the rows of the plane ``request`` will read."""
        labels = self.disk_labels
        ndim = self.ndim
        if (
            not self.prefetch_planes
            or labels is None
            or list(request.slice_input.displayed) != [ndim - 2, ndim - 1]
            or not self.shows_file()
        ):
            return
        t, _, z, _, _ = labels.shape
        axes = display_axes(labels)
        sizes, index = {"t": t, "z": z}, {"t": 0, "z": 0}
        for axis, point in zip(axes, request.data_slice.point, strict=False):
            if axis in index and np.isfinite(point):
                index[axis] = int(min(max(round(point), 0), sizes[axis] - 1))
        ny, nx = self.data.shape[-2:]
        y0, x0 = self.file_offset
        with contextlib.suppress(OSError):
            labels.storage.prefetch_rows(
                index["t"], 0, index["z"], y0, y0 + ny, x0, x0 + nx
            )

    # --- fill ----------------------------------------------------------
    def _get_flood_mask_and_bbox(
        self, coord: Any, new_label: int, dims_to_paint: list[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """napari's fill region (same arguments, same result), with the
        connected region found by ``scipy.ndimage.label`` and its box by
        ``find_objects``: 4-7 x faster than napari's
        ``skimage.segmentation.flood`` on a 4096 x 4096 plane (measured
        0.07-0.12 s against 0.31-0.54 s)."""
        from scipy import ndimage

        point = tuple(int(c) for c in np.round(coord).astype(int))
        if any(c < 0 or c >= n for c, n in zip(point, self.data.shape, strict=False)):
            return None
        old_label = np.asarray(self.data[point]).item()
        if old_label == new_label:
            return None
        if self.preserve_labels and (
            old_label != self._get_preserve_labels_source_label(new_label)
        ):
            return None
        key: list[Any] = list(point)
        for dim in dims_to_paint:
            key[dim] = slice(None)
        labels = np.asarray(self.data[tuple(key)])
        seed = tuple(point[d] for d in dims_to_paint)
        same = labels == old_label
        if self.contiguous:
            structure = ndimage.generate_binary_structure(same.ndim, 1)
            components, _ = ndimage.label(same, structure)
            which = int(components[seed])
            box = ndimage.find_objects(components, max_label=which)[which - 1]
            mask = components[box] == which
        else:
            box = ndimage.find_objects(same.astype(np.uint8))[0]
            mask = same[box]
        min_vals = np.array([s.start for s in box])
        max_vals = np.array([s.stop for s in box])
        return mask, min_vals, max_vals, labels[box]

    # --- 3D: the overview ----------------------------------------------
    def _overview_3d(self) -> tuple[Any, np.ndarray, np.ndarray] | None:
        """The 3D overview of the labels, its scale and its translate in
        layer-data coordinates; None for labels shown whole in 3D (and for
        data a script set that is not the file)."""
        labels = self.disk_labels
        if labels is None or not self.shows_file():
            return None
        coarsest = display_levels(labels, 0, view_cache=False)[-1]
        ndim = self.ndim
        scale = np.ones(ndim)
        scale[-2:] = coarsest.factor
        if ndim >= 3 and labels.shape[2] > 1:
            scale[-3] = coarsest.zfactor
        if (scale == 1).all() and not any(self.file_offset):
            return None  # the labels are their own overview: small enough
        translate = np.zeros(ndim)
        translate[-2:] = np.negative(self.file_offset)
        return coarsest, scale, translate

    def _get_value_ray(
        self,
        start_point: np.ndarray | None,
        end_point: np.ndarray | None,
        dims_displayed: list[int],
    ) -> int | None:
        """The first label along a ray in 3D, read from the overview shown
        (napari's version assumes the slice covers the layer data)."""
        if start_point is None or end_point is None or len(dims_displayed) != 3:
            return super()._get_value_ray(start_point, end_point, dims_displayed)
        raw = _compat.shown_raw(self)
        to_tile = _compat.tile_to_data(self).inverse
        start = np.asarray(to_tile(start_point))[dims_displayed]
        end = np.asarray(to_tile(end_point))[dims_displayed]
        n_points = max(int(2 * np.linalg.norm(end - start)), 2)
        points = np.linspace(start, end, n_points, endpoint=True)
        box = np.zeros((3, 2))
        box[:, 1] = raw.shape[:3]
        inside = clamp_point_to_bounding_box(points, box).astype(int)
        return self._calculate_value_from_ray(raw[tuple(inside.T)])

    def _in_3d(self) -> bool:
        """True when the shown slice is the file's 3D overview (or the file
        whole), not the data napari would slice."""
        return _compat.shown_ndisplay(self) == 3 and self.shows_file()

    def _refresh_caches_from_region(self, *args: Any, **kwargs: Any) -> None:
        if not self._in_3d():  # in 3D the shown slice is the overview
            super()._refresh_caches_from_region(*args, **kwargs)

    def _partial_labels_refresh(self) -> None:
        if not self._in_3d():
            super()._partial_labels_refresh()
            return
        # an edit made by a script in 3D: show it in the overview
        _compat.forget_updated_slice(self)
        self.refresh_from_file()

    def refresh_from_file(self) -> None:
        """Show the file's current labels (after it was written elsewhere)."""
        if self.disk_labels is not None:
            clear_cache(self.disk_labels)
        self.refresh()

    def _on_editable_changed(self) -> None:
        # napari resets the history here; the file still holds what undo
        # restores, so keep it (read-only only stops the tools)
        if not self.editable:
            self.mode = "pan_zoom"

    # --- undo and redo: in file coordinates, or on the data held -------
    def shows_file(self) -> bool:
        """True when ``data`` is the view of the labels file that
        :class:`~.labels.DiskLabels` gives the layer (the whole plane, or
        the paint window at :attr:`file_offset`); False after a script set
        ``data`` to another array."""
        labels, data = self.disk_labels, self.data
        if labels is None or labels.closed or not isinstance(data, np.ndarray):
            return False
        whole = file_view(labels)
        if not isinstance(whole, np.ndarray) or (
            data.shape[:-2],
            data.strides,
        ) != (whole.shape[:-2], whole.strides):
            return False
        y0, x0 = self.file_offset
        ny, nx = data.shape[-2:]
        if y0 + ny > whole.shape[-2] or x0 + nx > whole.shape[-1]:
            return False
        first = _address(whole) + y0 * whole.strides[-2] + x0 * whole.strides[-1]
        return _address(data) == first

    def _file_view(self) -> np.ndarray:
        """The whole labels file with the layer's axes (writes go to disk)."""
        if self.disk_labels is None:
            return self.data
        return file_view(self.disk_labels)

    def _to_file(self, atom: Any) -> Any:
        dy, dx = self.file_offset
        if not (dy or dx):
            return atom
        if isinstance(atom, MaskedPaintAtom):
            key = list(atom.slice_key)
            for axis, d in ((-2, dy), (-1, dx)):
                s = key[axis]
                key[axis] = slice(s.start + d, s.stop + d, s.step)
            return atom._replace(slice_key=tuple(key))
        indices, before, after = atom
        indices = list(indices)
        indices[-2] = np.asarray(indices[-2]) + dy
        indices[-1] = np.asarray(indices[-1]) + dx
        return (tuple(indices), before, after)

    def _append_to_undo_history(self, item: list[Any]) -> None:
        if self.shows_file():
            edit = _Edit(self._to_file(atom) for atom in item)
        else:  # a script's array: the edit indexes it, and undo writes there
            edit = _Edit(item, data=self.data)
        _compat.history(self).append(edit)
        self.events.paint(value=item)

    def _load_history(self, before: Any, after: Any, undoing: bool = True) -> None:
        if len(before) == 0:
            return
        item = before.pop()
        data = item.data if isinstance(item, _Edit) else None
        after.append(_Edit(reversed(item), data=data))
        target = self._file_view() if data is None else data
        for atom in reversed(item):
            if isinstance(atom, MaskedPaintAtom):
                _replay_masked(target, atom, undoing)
                continue
            indices, old, new = atom
            target[indices] = old if undoing else new
        if data is None and self._in_3d():
            self.refresh_from_file()
        else:
            self.refresh()
        self.events.history_replayed()


class _Edit(list):
    """One undo item (napari's list of history atoms) and where it was made:
    ``data`` is the array its atoms index, None for the labels file (the
    atoms then hold file coordinates)."""

    def __init__(self, atoms: Any = (), data: Any = None) -> None:
        super().__init__(atoms)
        self.data = data


def _replay_masked(target: Any, atom: Any, undoing: bool) -> None:
    """Write a masked paint atom's old (undo) or new (redo) values."""
    values = atom.old_values if undoing else atom.new_value
    if atom.mask is None:
        target[atom.slice_key] = values
    elif isinstance(target, np.ndarray):
        target[atom.slice_key][atom.mask] = values  # a view: in place
    else:  # an array-like: read, modify, write back (as napari does)
        region = np.asarray(target[atom.slice_key])
        region[atom.mask] = values
        target[atom.slice_key] = region


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])
