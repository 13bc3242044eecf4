"""Labels painted straight into disk images (core and napari)."""

from __future__ import annotations

import gc
import os
import sys
import textwrap
import time

import numpy as np
import pytest
import tifffile
from qtpy.QtWidgets import QApplication

import napari_diskimage as ndi
from _memcap import run_capped, unavailable_reason
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
def test_3d_is_read_only_keeps_undo_and_refuses_3d_fill(scan):
    viewer, _, tool = scan
    layer = tool.new_labels()
    labels = layer.metadata["disk_image"]
    layer.paint((2, 10, 10), 6)
    layer.n_edit_dimensions = 3
    assert layer.n_edit_dimensions == 2  # refused, with a notification
    viewer.dims.ndisplay = 3
    assert not layer.editable and layer.mode == "pan_zoom"
    # a small volume is its own overview: napari shows the file's labels
    assert layer._slice.image.raw.shape == (6, 64, 80)
    assert layer._slice.image.raw[2, 10, 10] == 6
    viewer.dims.ndisplay = 2
    assert layer.editable and layer.data.shape == (6, 64, 80)
    layer.undo()  # the stroke made before 3D is still in the history
    assert not _in_file(labels).any()
    layer.paint((2, 30, 30), 8)
    assert _in_file(labels)[0, 0, 2, 30, 30] == 8


def _resident() -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of this process."""
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("RssAnon:", "RssFile:")):
                key, value = line.split(":")
                fields[key] = int(value.split()[0]) << 10
    return fields["RssAnon"], fields["RssFile"]


def _sparse_labels(tmp_path, x, y, z, dtype="UInt16"):
    path = tmp_path / f"labels_{x}x{y}x{z}_{dtype}.raw"
    with open(path, "wb") as fh:
        fh.truncate(x * y * z * np.dtype(dtype.lower()).itemsize)
    return path


@pytest.mark.gui
def test_3d_shows_the_overview_in_place(make_napari_viewer, tmp_path):
    """A 2 GiB labels volume in 3D: napari is given the bounded overview,
    placed where the labels are, and the status bar reads it."""
    from napari_diskimage import display as _pyramid
    from napari_diskimage._napari.labels import DiskLabels

    viewer = make_napari_viewer(show=True)
    path = _sparse_labels(tmp_path, 2048, 2048, 256)
    labels = ndi.open_labels(path, mode="r+")
    labels.array[0, 0, 96:160, 900:1100, 1000:1200] = 9  # a block, on disk
    labels.array.flush()
    layer = DiskLabels.attach(viewer, labels, name="cells")
    layer.scale = (2.0, 0.5, 0.5)
    overview = _pyramid.display_levels(labels, 0)[-1]
    assert overview.zfactor > 1 and overview.nbytes <= _pyramid.OVERVIEW_BYTES
    viewer.dims.ndisplay = 3
    raw = layer._slice.image.raw
    assert raw.shape == overview.shape, "napari was not given the overview"
    assert isinstance(layer.data, np.memmap) or isinstance(layer.data.base, np.memmap)
    f, fz = overview.factor, overview.zfactor
    assert raw[128 // fz, 1000 // f, 1100 // f] == 9 and raw[0, 0, 0] == 0
    # the block is drawn where it is: the status bar's ray hits it
    centre = layer.data_to_world((128, 1000, 1100))
    start = np.array(centre) - (600.0, 0, 0)
    value = layer.get_value(
        start, view_direction=(1, 0, 0), dims_displayed=[0, 1, 2], world=True
    )
    assert value == 9
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    assert shot.max() > 0, "the 3D view is blank"
    viewer.dims.ndisplay = 2
    viewer.dims.set_point(0, layer.data_to_world((128, 0, 0))[0])
    assert layer._slice.image.raw.shape == (2048, 2048)
    assert layer._slice.image.raw[1000, 1100] == 9  # the exact file plane again
    layer.paint((128, 50, 50), 3)
    assert np.memmap(path, np.uint16, "r", shape=(256, 2048, 2048))[128, 50, 50] == 3


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
    asked = []
    tool.confirm = lambda text: asked.append(text) or True  # "in place"
    reopened = tool.open_labels(tmp_path / "saved.tif")
    assert str(tmp_path / "saved.tif") in asked[0]
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

    before = _resident()
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
    for cy, cx in ((16000, 16000), (30000, 2000), (5000, 25000)):  # pan and paint
        viewer.scene.camera.center = (float(cy), float(cx))
        ys, xs = controller.move_window()
        layer.paint((cy - ys.start, cx - xs.start), 13)
        QApplication.processEvents()
        assert stored[cy, cx] == 13
    anon, mapped = np.subtract(_resident(), before)
    assert anon < 512 << 20, f"{anon >> 20} MiB of memory for a 4 GiB plane"
    # file pages of the map: about the windows visited (6 x 64 MiB), not the
    # whole rows readahead would bring in (8 x that)
    window_bytes = WINDOW_SIDE * WINDOW_SIDE * 4
    assert mapped < 1.5 * 6 * window_bytes, f"{mapped >> 20} MiB mapped"
    del stored


@pytest.mark.gui
def test_undo_after_the_window_moved_restores_the_right_pixels(
    make_napari_viewer, tmp_path, monkeypatch
):
    """napari keeps undo in layer-data indices; the paint window's data is
    replaced when it moves, so the history is kept in file coordinates."""
    from napari_diskimage._napari import labels as disk_labels

    monkeypatch.setattr(disk_labels, "WHOLE_PLANE_PIXELS", 1024 * 1024)
    monkeypatch.setattr(disk_labels, "WINDOW_SIDE", 1024)
    viewer = make_napari_viewer(show=True)
    path = _sparse_labels(tmp_path, 4096, 4096, 1)
    stored = np.memmap(path, np.uint16, "r", shape=(4096, 4096))
    labels = ndi.open_labels(path, mode="r+")
    layer = disk_labels.DiskLabels.attach(viewer, labels, name="big")
    controller = layer.metadata[KEY]
    (y0, _), (x0, _) = [(s.start, s.stop) for s in controller.window]
    layer.paint((5, 5), 7)
    assert stored[y0 + 5, x0 + 5] == 7
    other = np.array(np.nonzero(stored == 7)).T
    viewer.scene.camera.center = (3900.0, 3900.0)
    viewer.scene.camera.zoom = 2.0
    ys, xs = controller.move_window()
    assert ys.start > y0 + 5 and xs.start > x0 + 5
    layer.paint((3900 - ys.start, 3900 - xs.start), 8)
    layer.undo()
    assert not (stored == 8).any()
    layer.undo()  # the first stroke is outside the window now
    assert not (stored == 7).any() and not stored.any()
    layer.redo()
    np.testing.assert_array_equal(np.array(np.nonzero(stored == 7)).T, other)
    del stored


CAPPED_3D = textwrap.dedent(
    """
    import sys
    import numpy as np
    import napari
    import napari_diskimage as ndi
    from napari_diskimage._napari.labels import DiskLabels

    path = sys.argv[1]
    viewer = napari.Viewer(show=True)
    labels = ndi.open_labels(path, mode="r+")
    layer = DiskLabels.attach(viewer, labels, name="labels")
    viewer.dims.set_point(0, 512)
    layer.brush_size = 20
    layer.paint((512, 100, 100), 5)
    layer.fill((512, 1500, 900), 2)
    layer.undo()
    for _ in range(2):
        viewer.dims.ndisplay = 3
        assert viewer.screenshot(canvas_only=True, flash=False).shape[0] > 0
        viewer.dims.ndisplay = 2
    layer.paint((512, 300, 300), 6)
    layer.undo()
    stored = np.memmap(path, np.uint16, "r", shape=(1024, 2048, 1024))
    assert stored[512, 100, 100] == 5 and stored[512, 300, 300] == 0
    assert stored[512, 1500, 900] == 0
    viewer.close()
    print("ok")
    """
)


@pytest.mark.slow
@pytest.mark.gui
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_3d_on_labels_four_times_the_memory_cap(tmp_path):
    path = _sparse_labels(tmp_path, 1024, 2048, 1024)  # 4 GiB of labels
    result = run_capped(
        1 << 30, [sys.executable, "-c", CAPPED_3D, str(path)], timeout=300
    )
    assert result.returncode != 137, "killed by the memory cap"
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok"), result.stdout


@pytest.mark.gui
def test_a_read_only_labels_file_is_painted_as_a_copy(scan, messages):
    import hashlib
    import subprocess

    from _fs import mount_tmpfs, unmount

    viewer, _, tool = scan
    folder = mount_tmpfs("size=4m")
    try:
        path = folder / "cells.tif"
        tifffile.imwrite(path, np.full((6, 64, 80), 2, np.uint16))
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        layer = tool.open_labels(path)
        assert layer is not None
        assert any("read-only" in n and "copy" in n for n in messages()), messages()
        labels = layer.metadata["disk_image"]
        assert labels.is_scratch and labels.path.parent != folder
        layer.paint((1, 5, 5), 9)
        assert _in_file(labels)[0, 0, 1, 5, 5] == 9
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before
        viewer.layers.remove(layer)
        del layer, labels
        gc.collect()
    finally:
        unmount(folder)


@pytest.mark.gui
def test_a_full_disk_when_creating_or_saving_labels(scan, messages, tmp_path):
    from _fs import mount_tmpfs, unmount

    viewer, _, tool = scan
    folder = mount_tmpfs("size=2m")  # the labels need 6 x 64 x 80 x 4 = 120 KiB
    try:
        filler = folder / "filler.bin"
        with open(filler, "wb") as fh:
            fh.truncate(0)
            os.posix_fallocate(fh.fileno(), 0, (2 << 20) - (64 << 10))
        ndi.set_disk_image_dir(folder / "disk-images")
        tool.dtype.value = "uint32"
        assert tool.new_labels() is None  # refused, with the numbers
        assert any("new labels" in n and "disk" in n.lower() for n in messages()), (
            messages()
        )
        assert os.listdir(folder / "disk-images") == []
        ndi.set_disk_image_dir(tmp_path / "disk-images")
        layer = tool.new_labels()
        layer.paint((1, 5, 5), 4)
        target = folder / "saved.tif"
        target.write_bytes(b"the previous version")
        job = tool.save(target)
        deadline = time.monotonic() + 30
        while not job.done and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)
        assert job.done and job.error is not None
        assert any("save labels" in n and "saved.tif" in n for n in messages()), (
            messages()
        )
        assert target.read_bytes() == b"the previous version"
        assert sorted(os.listdir(folder)) == ["disk-images", "filler.bin", "saved.tif"]
        viewer.layers.remove(layer)
        del layer
        gc.collect()
    finally:
        unmount(folder)


@pytest.mark.gui
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("preserve", [False, True])
def test_fill_matches_napari_fill(scan, contiguous, preserve):
    """The disk layer's fill (scipy) changes the same pixels as napari's own
    fill (skimage flood) on an in-memory copy, and undo restores them."""
    from napari.layers import Labels

    viewer, _, tool = scan
    layer = tool.new_labels()
    labels = layer.metadata["disk_image"]
    rng = np.random.default_rng(1)
    start = rng.integers(0, 4, (6, 64, 80)).astype(np.uint32)
    start[:, 30:33, :] = 7  # a wall: two regions of 0 to fill one of
    labels.array[0, 0] = start
    reference = viewer.add_layer(Labels(start.copy(), scale=layer.scale))
    for lay in (layer, reference):
        lay.contiguous, lay.preserve_labels = contiguous, preserve
        lay.selected_label = 5
    for seed in [(2, 10, 10), (2, 50, 70), (4, 31, 40), (1, 0, 0)]:
        value = int(start[seed])
        layer.fill(seed, 5 if value != 5 else 6)
        reference.fill(seed, 5 if value != 5 else 6)
        np.testing.assert_array_equal(_in_file(labels)[0, 0], reference.data)
    for _ in range(4):
        layer.undo()
    np.testing.assert_array_equal(_in_file(labels)[0, 0], start)


@pytest.mark.gui
def test_ctrl_z_and_shift_ctrl_z_undo_and_redo_in_the_file(scan):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    viewer, _, tool = scan
    layer = tool.new_labels()
    labels = layer.metadata["disk_image"]
    viewer.layers.selection.active = layer
    layer.paint((1, 10, 10), 5)
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    QApplication.processEvents()
    ctrl, shift = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier
    QTest.keyClick(canvas, Qt.Key.Key_Z, ctrl)
    QApplication.processEvents()
    assert _in_file(labels)[0, 0, 1, 10, 10] == 0
    QTest.keyClick(canvas, Qt.Key.Key_Z, ctrl | shift)
    QApplication.processEvents()
    assert _in_file(labels)[0, 0, 1, 10, 10] == 5


# --- a script sets layer.data: the history follows the data held ----------------
def _disk_labels_layer(shape):
    """A DiskLabelsLayer over a new labels file of ``shape`` (z, y, x)."""
    from napari_diskimage._napari.labels_layer import DiskLabelsLayer
    from napari_diskimage._napari.layers import file_view

    img = ndi.copy(np.zeros(shape, np.uint16))
    labels = ndi.new_labels(img, "uint8")
    img.close()
    return DiskLabelsLayer(file_view(labels), disk_labels=labels), labels


@pytest.mark.gui
def test_after_data_is_set_undo_and_redo_act_on_that_data():
    from napari_diskimage._napari.layers import file_view

    layer, labels = _disk_labels_layer((1, 20, 30))
    layer.brush_size = 1
    a = np.zeros((20, 30), np.uint8)
    layer.data = a
    layer.paint((2, 2), 5)
    assert a[2, 2] == 5 and not _in_file(labels).any()
    layer.undo()
    assert a[2, 2] == 0  # the array the stroke was painted into
    assert not _in_file(labels).any()  # the file is untouched
    layer.redo()
    assert a[2, 2] == 5 and not _in_file(labels).any()
    layer.fill((10, 10), 7)  # the background of a becomes 7
    assert (a == 7).sum() == a.size - 1 and not _in_file(labels).any()
    layer.undo()
    assert (a == 7).sum() == 0 and a[2, 2] == 5
    # the file view again: file-backed history resumes
    layer.data = file_view(labels)
    layer.paint((4, 4), 3)
    assert _in_file(labels)[0, 0, 0, 4, 4] == 3
    layer.undo()
    assert not _in_file(labels).any()
    layer.undo()  # the stroke made on a: undone in a, not in the file
    assert a[2, 2] == 0 and not _in_file(labels).any()
    layer.redo()
    assert a[2, 2] == 5 and not _in_file(labels).any()
    del layer
    labels.close()


@pytest.mark.gui
def test_after_3d_data_is_set_undo_and_redo_act_on_that_data():
    layer, labels = _disk_labels_layer((6, 20, 30))
    layer.brush_size = 1
    a = np.zeros((6, 20, 30), np.uint16)
    layer.data = a
    layer.paint((3, 2, 2), 5)
    assert a[3, 2, 2] == 5 and not _in_file(labels).any()
    layer.undo()
    assert a[3, 2, 2] == 0 and not _in_file(labels).any()
    layer.redo()
    assert a[3, 2, 2] == 5 and not _in_file(labels).any()
    # a 4D (t, z, y, x) array: the same
    b = np.zeros((2, 6, 20, 30), np.uint16)
    layer.data = b
    layer.paint((1, 3, 4, 4), 9)
    layer.undo()
    assert not b.any() and not _in_file(labels).any()
    layer.redo()
    assert b[1, 3, 4, 4] == 9 and not _in_file(labels).any()
    del layer
    labels.close()


# --- napari's private surface changed: a plain Labels layer, with a warning -------
@pytest.fixture
def napari_changed(monkeypatch):
    """napari without one of the private methods DiskLabelsLayer overrides,
    as _compat sees it when imported."""
    from napari.layers import Labels

    from napari_diskimage._napari import _compat

    monkeypatch.delattr(Labels, "_partial_labels_refresh")
    problems = _compat._check()
    monkeypatch.undo()  # napari itself intact for the viewer
    monkeypatch.setattr(_compat, "PROBLEMS", tuple(problems))
    monkeypatch.setattr(_compat, "OK", not problems)
    return problems


@pytest.mark.gui
def test_a_changed_napari_gets_a_plain_labels_layer_and_a_warning(
    scan, messages, napari_changed
):
    from napari.layers import Labels

    assert napari_changed == ["Labels._partial_labels_refresh is gone"]
    viewer, _, tool = scan
    layer = tool.new_labels()
    labels = layer.metadata["disk_image"]
    assert type(layer) is Labels  # not a DiskLabelsLayer
    [warning] = [m for m in messages() if "plain napari Labels layer" in m]
    assert "_partial_labels_refresh" in warning and "3D editing is off" in warning
    layer.brush_size = 1
    layer.paint((2, 10, 10), 4)  # still painted into the file
    assert _in_file(labels)[0, 0, 2, 10, 10] == 4
    layer.undo()
    assert not _in_file(labels).any()
    layer.n_edit_dimensions = 3
    assert layer.n_edit_dimensions == 2
    viewer.dims.ndisplay = 3
    assert not layer.editable and layer.visible  # small: shown whole in 3D
    viewer.dims.ndisplay = 2
    assert layer.editable


@pytest.mark.gui
def test_a_changed_napari_windowed_plane_and_3d(
    make_napari_viewer, tmp_path, monkeypatch, messages, napari_changed
):
    from napari.layers import Labels

    from napari_diskimage._napari import labels as disk_labels

    monkeypatch.setattr(disk_labels, "WHOLE_PLANE_PIXELS", 256 * 256)
    monkeypatch.setattr(disk_labels, "WINDOW_SIDE", 256)
    viewer = make_napari_viewer(show=True)
    path = _sparse_labels(tmp_path, 1024, 1024, 2)
    stored = np.memmap(path, np.uint16, "r", shape=(2, 1024, 1024))
    labels = ndi.open_labels(path, mode="r+")
    layer = disk_labels.DiskLabels.attach(viewer, labels, name="big")
    controller = layer.metadata[KEY]
    assert type(layer) is Labels and type(controller.overview) is Labels
    assert not controller.overview.editable
    assert any("plain napari Labels layer" in m for m in messages())
    (y0, _), (x0, _) = [(s.start, s.stop) for s in controller.window]
    layer.brush_size = 1
    layer.paint((1, 5, 5), 7)
    assert stored[1, y0 + 5, x0 + 5] == 7
    viewer.scene.camera.center = (1000.0, 1000.0)
    ys, xs = controller.move_window()
    assert (ys.start, xs.start) != (y0, x0)
    layer.undo()  # history cleared with the move: nothing lands elsewhere
    assert stored[1, y0 + 5, x0 + 5] == 7 and (stored != 0).sum() == 1
    layer.paint((1, 10, 10), 8)
    assert stored[1, ys.start + 10, xs.start + 10] == 8
    viewer.dims.ndisplay = 3  # napari would load the volume: hidden
    assert not layer.visible and not layer.editable
    viewer.dims.ndisplay = 2
    assert layer.visible and layer.editable
    del stored


def test_napari_s_private_names_are_as_tested():
    from napari_diskimage._napari import _compat

    assert _compat.OK, _compat.PROBLEMS
