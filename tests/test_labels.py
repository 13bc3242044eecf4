"""Labels painted straight into disk images (core and napari)."""

from __future__ import annotations

import gc
import time

import numpy as np
import pytest
import tifffile
from qtpy.QtWidgets import QApplication

import napari_diskimage as ndi
from napari_diskimage._napari.labels import KEY, WINDOW_SIDE
from napari_diskimage._qt.labels import LabelsTool


def _wait(job, timeout=30):
    deadline = time.monotonic() + timeout
    while not job.done and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
    assert job.done and job.error is None, job.error


def _in_file(labels):
    """The labels as stored, read with numpy (not through napari)."""
    t, c, z, y, x = labels.shape
    return np.fromfile(labels.path, dtype=labels.dtype).reshape(t, c, z, y, x)


# --- core ------------------------------------------------------------------------
def test_new_labels_have_the_images_sizes(tmp_path):
    img = ndi.copy(np.zeros((2, 3, 5, 20, 30), np.float32))
    img.spacing = (2.0, 0.5, 0.5)
    labels = ndi.new_labels(img, "uint16")
    assert labels.shape == (2, 1, 5, 20, 30) and labels.dtype == np.uint16
    assert labels.spacing == (2.0, 0.5, 0.5) and labels.is_scratch and labels.writable
    assert not _in_file(labels).any()
    with pytest.raises(ValueError, match="uint8, uint16, uint32"):
        ndi.new_labels(img, "float32")
    labels.write_pixel(7, 3, 4, 2, 0, 1)
    saved = labels.save_tiff(tmp_path / "l.tif")
    again = ndi.open_labels(saved, img)
    assert again.array[1, 0, 2, 4, 3] == 7
    again.close()
    labels.close()
    img.close()


def test_labels_that_do_not_fit_are_refused(tmp_path):
    img = ndi.copy(np.zeros((5, 20, 30), np.uint16))
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((5, 20, 29), np.uint16))
    with pytest.raises(ValueError, match=r"29 x 20 x 5.*30 x 20 x 5"):
        ndi.open_labels(tmp_path / "small.tif", img)
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((5, 20, 30), np.float32))
    with pytest.raises(ValueError, match=r"float32 pixels.*uint8, uint16"):
        ndi.open_labels(tmp_path / "float.tif", img)
    tifffile.imwrite(
        tmp_path / "rgb.tif", np.zeros((20, 30, 3), np.uint8), photometric="rgb"
    )
    with pytest.raises(ValueError, match="channels"):
        ndi.open_labels(tmp_path / "rgb.tif")
    tifffile.imwrite(
        tmp_path / "lzw.tif", np.zeros((5, 20, 30), np.uint16), compression="lzw"
    )
    with pytest.raises(ValueError, match="mapped file"):
        ndi.open_labels(tmp_path / "lzw.tif", img)
    img.close()


# --- napari ----------------------------------------------------------------------
@pytest.fixture
def scan(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    vol = np.random.default_rng(0).integers(0, 999, (6, 64, 80), dtype=np.uint16)
    img = ndi.copy(vol)
    from napari_diskimage._qt import add_disk_image

    (layer,) = add_disk_image(viewer, img, "scan")
    layer.scale, layer.translate = (2.0, 0.5, 0.5), (4.0, 1.0, -2.0)
    tool = LabelsTool(viewer)
    return viewer, layer, tool


@pytest.mark.gui
def test_paint_fill_polygon_and_undo_go_into_the_file(scan):
    viewer, _, tool = scan
    layer = tool.new_labels()
    labels = layer.metadata["disk_image"]
    assert isinstance(layer.data, np.memmap) or isinstance(layer.data.base, np.memmap)
    assert layer.scale.tolist() == [2.0, 0.5, 0.5]
    assert layer.translate.tolist() == [4.0, 1.0, -2.0]
    assert tuple(layer.axis_labels) == ("z", "y", "x")
    viewer.dims.set_current_step(0, 3 * 2 + 4)  # world z of plane 3
    layer.brush_size = 5
    layer.paint((3, 10, 20), 5)
    stored = _in_file(labels)[0, 0]
    assert stored[3, 10, 20] == 5 and stored[3, 8:13, 20].tolist() == [5] * 5
    assert not stored[2].any() and not stored[4].any()
    layer.fill((3, 40, 60), 9)  # the background of plane 3 becomes 9
    stored = _in_file(labels)[0, 0]
    assert stored[3, 40, 60] == 9 and stored[3, 10, 20] == 5
    assert (stored[3] == 9).sum() == 64 * 80 - (stored[3] == 5).sum()
    layer.undo()
    stored = _in_file(labels)[0, 0]
    assert stored[3, 40, 60] == 0 and stored[3, 10, 20] == 5
    layer.undo()
    assert not _in_file(labels).any()
    layer.redo()
    assert _in_file(labels)[0, 0, 3, 10, 20] == 5
    layer.paint_polygon(np.array([[3, 50, 5], [3, 50, 15], [3, 60, 15], [3, 60, 5]]), 3)
    assert _in_file(labels)[0, 0, 3, 55, 10] == 3


@pytest.mark.gui
def test_a_brush_stroke_with_the_mouse_lands_in_the_file(scan, qtbot):
    viewer, _, tool = scan
    layer = tool.new_labels()
    labels = layer.metadata["disk_image"]
    layer.mode = "paint"
    layer.selected_label = 4
    layer.brush_size = 3
    from qtpy.QtCore import QPointF, Qt
    from qtpy.QtGui import QMouseEvent

    widget = viewer.window._qt_viewer.canvas._scene_canvas.native
    QApplication.processEvents()
    w, h = widget.width(), widget.height()

    def send(kind, x, buttons):
        pos = QPointF(x, h / 2)
        event = QMouseEvent(
            kind, pos, widget.mapToGlobal(pos), Qt.MouseButton.LeftButton,
            buttons, Qt.KeyboardModifier.NoModifier,
        )  # fmt: skip
        QApplication.sendEvent(widget, event)
        QApplication.processEvents()

    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    send(QMouseEvent.Type.MouseButtonPress, w / 2 - 200, left)
    for k in range(1, 11):
        send(QMouseEvent.Type.MouseMove, w / 2 - 200 + 40 * k, left)
    send(QMouseEvent.Type.MouseButtonRelease, w / 2 + 200, none)
    QApplication.processEvents()
    stored = _in_file(labels)[0, 0]
    z = viewer.dims.current_step[0]
    plane = round((viewer.dims.point[0] - 4.0) / 2.0)
    assert (stored == 4).sum() > 20, "the stroke is not in the file"
    assert set(np.nonzero(stored == 4)[0]) == {plane}, z
    layer.undo()
    assert not _in_file(labels).any()


@pytest.mark.gui
def test_3d_shows_a_bounded_overview_and_refuses_3d_fill(scan):
    viewer, _, tool = scan
    layer = tool.new_labels()
    labels = layer.metadata["disk_image"]
    layer.paint((2, 10, 10), 6)
    layer.n_edit_dimensions = 3
    assert layer.n_edit_dimensions == 2  # refused, with a notification
    viewer.dims.ndisplay = 3
    assert not isinstance(layer.data, np.memmap) and not layer.editable
    assert layer.data.nbytes <= labels.nbytes
    viewer.dims.ndisplay = 2
    assert layer.editable and layer.data.shape == (6, 64, 80)
    layer.paint((2, 30, 30), 8)
    assert _in_file(labels)[0, 0, 2, 30, 30] == 8


@pytest.mark.gui
def test_save_reopen_and_removal(scan, tmp_path):
    viewer, _, tool = scan
    layer = tool.new_labels()
    labels = layer.metadata["disk_image"]
    layer.paint((1, 5, 5), 2)
    _wait(tool.save(tmp_path / "saved.tif"))
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "saved.tif"), _in_file(labels)[0, 0]
    )
    scratch = labels.path
    del labels
    viewer.layers.remove(layer)
    del layer
    gc.collect()
    assert not scratch.exists()
    reopened = tool.open_labels(tmp_path / "saved.tif")
    assert reopened.data[1, 5, 5] == 2
    reopened.paint((1, 6, 6), 3)  # in place: the user's file, opened r+
    assert tifffile.imread(tmp_path / "saved.tif")[1, 6, 6] == 3
    viewer.layers.remove(reopened)
    del reopened
    gc.collect()
    assert (tmp_path / "saved.tif").exists()  # a user's file is never deleted


@pytest.mark.gui
def test_a_32768_squared_plane_is_painted_through_a_window(
    make_napari_viewer, tmp_path
):
    viewer = make_napari_viewer(show=True)
    path = tmp_path / "big_32768x32768_UInt32.raw"
    with open(path, "wb") as fh:
        fh.truncate(32768 * 32768 * 4)  # 4 GiB, sparse
    labels = ndi.open_labels(path, mode="r+")
    from napari_diskimage._napari.labels import DiskLabels

    layer = DiskLabels.attach(viewer, labels, name="big")
    controller = layer.metadata[KEY]
    assert controller.windowed and layer.data.shape == (WINDOW_SIDE, WINDOW_SIDE)
    assert controller.overview is not None and controller.overview.multiscale
    y0, x0 = controller.window[0].start, controller.window[1].start
    layer.paint((100, 200), 11)
    stored = np.memmap(path, np.uint32, "r", shape=(32768, 32768))
    assert stored[y0 + 100, x0 + 200] == 11
    viewer.scene.camera.center = (1000.0, 30000.0)
    viewer.scene.camera.zoom = 2.0
    ys, xs = tool_window = controller.move_window()
    assert ys.start <= 1000 < ys.stop and xs.start <= 30000 < xs.stop, tool_window
    layer.paint((1000 - ys.start, 30000 - xs.start), 12)
    assert stored[1000, 30000] == 12
    np.testing.assert_allclose(
        layer.data_to_world((1000 - ys.start, 30000 - xs.start)), (1000, 30000)
    )
    del stored
