"""napari's own Labels layer tests, run against the plugin's file-backed layer.

:class:`~napari_diskimage._napari.labels_layer.DiskLabelsLayer` overrides
private methods of napari's ``Labels`` (see ``_napari/_compat.py``).  A
napari release that changes what they do would break painting into files
quietly; these are napari 0.9's own tests (from the installed
``napari/layers/labels/_tests/test_labels.py``) with its ``Labels`` class
swapped for a layer that paints into a labels file through a
``DiskLabelsLayer``, as the plugin does.  Chosen: the tests of painting,
fill, polygons, their undo history, undo and redo, values under the cursor
and along a 3D ray.  With the whole module swapped so (napari 0.9.2),
360 of its tests pass; the others check the class's name and docstring,
or that the caller's own array was changed (here the file is).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

import napari_diskimage as ndi

pytestmark = pytest.mark.gui

napari_tests = pytest.importorskip("napari.layers.labels._tests.test_labels")

from napari_diskimage._napari.labels_layer import DiskLabelsLayer  # noqa: E402
from napari_diskimage._napari.layers import file_view  # noqa: E402

#: napari's tests run here (every parametrisation of each).
CHOSEN = (
    # painting, polygons and fill, their history atoms, undo and redo
    "test_paint",
    "test_paint_2d",
    "test_paint_3d",
    "test_paint_with_preserve_labels",
    "test_paint_swap_with_preserve_labels",
    "test_paint_partial_bbox_history_stores_masked_atom",
    "test_paint_polygon",
    "test_paint_polygon_2d_in_3d",
    "test_paint_polygon_undo_redo",
    "test_paint_polygon_erase_with_preserve",
    "test_fill",
    "test_fill_contiguous_uses_face_connectivity",
    "test_fill_swap_with_preserve_labels",
    "test_fill_full_bbox_history_drops_mask",
    "test_fill_scattered_history_stores_masked_atom",
    "test_block_history_with_mask_painting",
    "test_ndim_fill",
    "test_ndim_paint",
    "test_data_setitem_multi_dim",
    # values under the cursor, 2D and along a 3D ray
    "test_value",
    "test_value_3d",
    "test_get_value_ray_2d",
    "test_get_value_ray_3d",
    "test_get_value_ray_3d_rolled",
    "test_get_value_ray_3d_transposed",
)


class FileLabels(DiskLabelsLayer):
    """napari's ``Labels(data, ...)``, painting into a labels file: a 2D or
    3D numpy array of integers (or booleans, as uint8 like napari) is copied
    into a new disk image and the layer is given its file view (other data,
    e.g. dask or 4D, is passed on as is)."""

    def __init__(self, data, *args, **kwargs):
        if isinstance(data, np.ndarray) and _file_backable(data):
            labels = ndi.copy(data.view(np.uint8) if data.dtype == bool else data)
            kwargs.setdefault("metadata", {})
            super().__init__(file_view(labels), *args, disk_labels=labels, **kwargs)
            return
        super().__init__(data, *args, **kwargs)


def _file_backable(data: np.ndarray) -> bool:
    if data.dtype.kind not in "biu" or data.dtype.itemsize > 4 or 0 in data.shape:
        return False
    return data.ndim == 2 or (data.ndim == 3 and data.shape[0] > 1)


@pytest.fixture(autouse=True)
def _file_backed_labels(monkeypatch):
    monkeypatch.setattr(napari_tests, "Labels", FileLabels)


def _export() -> None:
    """Put the chosen tests (and napari's fixtures of that module) here, for
    pytest to collect."""
    module = sys.modules[__name__]
    for name, value in vars(napari_tests).items():
        if name in CHOSEN or (
            not name.startswith("test_") and hasattr(value, "_fixture_function")
        ):
            setattr(module, name, value)


_export()


def _every(test, step: int) -> Any:
    """Every ``step``-th case of a napari test with one ``parametrize``."""
    [mark] = [m for m in test.pytestmark if m.name == "parametrize"]
    names, cases = mark.args[0], list(mark.args[1])
    return pytest.mark.parametrize(names, cases[::step])


@_every(napari_tests.test_undo_redo, 7)  # 26 of its 180 cases: every kind
def test_undo_redo(
    brush_size, mode, selected_label, preserve_labels, n_edit_dimensions
):
    napari_tests.test_undo_redo(
        brush_size, mode, selected_label, preserve_labels, n_edit_dimensions
    )


def test_the_swapped_layer_paints_into_a_file():
    layer = napari_tests.Labels(np.zeros((6, 20, 30), np.uint8))
    assert isinstance(layer, DiskLabelsLayer) and layer.shows_file()
    layer.brush_size = 1
    layer.paint((3, 4, 5), 9)
    labels = layer.disk_labels
    stored = np.fromfile(labels.path, np.uint8).reshape(labels.shape)
    assert stored[0, 0, 3, 4, 5] == 9
    layer.undo()
    assert not np.fromfile(labels.path, np.uint8).any()
