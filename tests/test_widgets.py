"""The widgets, driven like a user: set fields, press buttons, click the canvas."""

from __future__ import annotations

import gc
import shutil
import threading
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from napari_diskimage import _scratch, _settings
from napari_diskimage._files import mount_fstype
from napari_diskimage.io.stream import BLOCK_BYTES_ENV

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")
from napari.utils.interactions import mouse_press_callbacks  # noqa: E402
from napari.utils.notifications import notification_manager  # noqa: E402
from qtpy.QtCore import QCoreApplication, QEvent, QTimer  # noqa: E402

from napari_diskimage import _qt as w  # noqa: E402


def press(button) -> None:
    """Click a magicgui PushButton the way a user does."""
    button.native.click()


def wait_job(qtbot, job, timeout=20000) -> None:
    qtbot.waitUntil(lambda: job.done, timeout=timeout)


def scratch_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("ndi-*")) if folder.is_dir() else []


class SlowArray:
    """An in-memory-like array whose reads take time (or fail) per block."""

    def __init__(self, shape, dtype=np.uint8, delay=0.05, fail_after=None):
        self._data = np.broadcast_to(np.array(7, dtype=dtype), shape)
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.ndim, self.size = len(shape), int(np.prod(shape))
        self.delay, self.fail_after, self.reads = delay, fail_after, 0
        self.busy = threading.Event()

    def __getitem__(self, key):
        out = self._data[key]
        if np.size(out) > 1 << 16:  # a copy block, not napari's display slice
            self.reads += 1
            self.busy.set()
            if self.fail_after is not None and self.reads > self.fail_after:
                raise OSError(5, "network share went away; reconnect and retry")
            time.sleep(self.delay)
        return out


def disk_layer(viewer, array, name="img", **kwargs):
    image = ndi.copy(array)
    layers = w.add_disk_image(viewer, image, name)
    for key, value in kwargs.items():
        for lay in layers:
            setattr(lay, key, value)
    return image, layers


# --- copy ---------------------------------------------------------------------
def test_copy_numpy_layer_makes_disk_image_layer(viewer, qtbot, disk_image_dir):
    data = np.arange(4 * 30 * 40, dtype=np.uint16).reshape(4, 30, 40)
    src = viewer.add_image(data, name="cells", scale=(2, 0.5, 0.5))
    widget = w.CopyToDiskImage(viewer)
    widget.layer.value = src
    press(widget.copy_button)
    wait_job(qtbot, widget.job)

    new = viewer.layers["cells (disk image)"]
    image = new.metadata["disk_image"]
    assert ndi.is_disk_image(image) and image.is_scratch
    assert image.path.parent == disk_image_dir and image.path.is_file()
    np.testing.assert_array_equal(image.array[0, 0], data)
    np.testing.assert_array_equal(np.asarray(new.data[0][2]), data[2])
    assert tuple(new.scale) == (2, 0.5, 0.5)
    assert widget.status.value == "done"

    # Removing the copy's layer deletes its scratch file: the widget keeps
    # no reference to it.
    viewer.layers.remove(new)
    del new, image
    gc.collect()
    assert scratch_files(disk_image_dir) == []


def test_copy_cancel_removes_partial_file(
    viewer, qtbot, disk_image_dir, messages, monkeypatch
):
    monkeypatch.setenv(BLOCK_BYTES_ENV, str(1 << 20))  # 1 MiB blocks
    slow = SlowArray((16, 1024, 1024), delay=0.1)
    viewer.add_image(slow, name="slow", contrast_limits=(0, 255))
    widget = w.CopyToDiskImage(viewer)
    job = widget.start()
    qtbot.waitUntil(lambda: job.pbar.n > 0 and bool(scratch_files(disk_image_dir)))
    assert widget.cancel_button.enabled
    press(widget.cancel_button)
    wait_job(qtbot, job)

    assert job.cancelled
    assert scratch_files(disk_image_dir) == []
    assert slow.reads < 16
    assert [lay.name for lay in viewer.layers] == ["slow"]
    assert any("cancelled" in m and "partial file is removed" in m for m in messages())
    assert widget.status.value.startswith("cancelled")


def test_copy_cancel_from_progress_bar(viewer, qtbot, disk_image_dir, monkeypatch):
    monkeypatch.setenv(BLOCK_BYTES_ENV, str(1 << 20))  # 1 MiB blocks
    viewer.add_image(SlowArray((16, 1024, 1024)), name="slow", contrast_limits=(0, 9))
    widget = w.CopyToDiskImage(viewer)
    job = widget.start()
    qtbot.waitUntil(lambda: job.pbar.n > 0)
    job.pbar.cancel()  # the Cancel button of napari's activity dock
    wait_job(qtbot, job)
    assert job.cancelled and scratch_files(disk_image_dir) == []


def test_copy_failure_removes_file_and_says_why(
    viewer, qtbot, disk_image_dir, messages, monkeypatch
):
    monkeypatch.setenv(BLOCK_BYTES_ENV, str(1 << 20))  # 1 MiB blocks
    slow = SlowArray((8, 1024, 1024), delay=0.01, fail_after=3)
    viewer.add_image(slow, name="remote", contrast_limits=(0, 9))
    widget = w.CopyToDiskImage(viewer)
    job = widget.start()
    wait_job(qtbot, job)

    assert job.error is not None
    assert scratch_files(disk_image_dir) == []
    msg = [m for m in messages() if "copy 'remote' failed" in m]
    assert msg and "network share went away; reconnect and retry" in msg[0]
    assert widget.status.value.startswith("failed:")


def test_gui_keeps_running_during_a_long_copy(viewer, qtbot, monkeypatch):
    monkeypatch.setenv(BLOCK_BYTES_ENV, str(1 << 20))  # 1 MiB blocks
    slow = SlowArray((12, 1024, 1024), delay=0.1)  # >= 1.2 s of copying
    viewer.add_image(slow, name="slow", contrast_limits=(0, 9))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    widget = w.CopyToDiskImage(viewer)
    t0 = time.perf_counter()
    job = widget.start()
    steps = []
    job.worker.yielded.connect(lambda _step: steps.append(time.perf_counter()))
    wait_job(qtbot, job)
    timer.stop()
    assert job.error is None and not job.cancelled
    copying = steps[-1] - t0  # until the last block was written
    assert copying > 1.0
    # The event loop ticked all along the copy, about every 10 ms.
    during = [t for t in ticks if t <= steps[-1]]
    assert len(during) > 0.5 * copying / 0.010
    assert np.diff([t0, *during, steps[-1]]).max() < 0.25
    copy = viewer.layers["slow (disk image)"].metadata["disk_image"]
    np.testing.assert_array_equal(copy.array[0, 0, 3, :2, :2], 7)


def test_copy_rgb_layer_is_refused_with_a_reason(viewer, messages):
    viewer.add_image(np.zeros((10, 10, 3), np.uint8), rgb=True, name="photo")
    widget = w.CopyToDiskImage(viewer)
    assert widget.start() is None
    assert any("'photo' is RGB" in m for m in messages())


def test_copy_without_space_says_so(viewer, qtbot, messages, monkeypatch):
    viewer.add_image(np.zeros((50, 60), np.uint8), name="small")
    usage = SimpleNamespace(total=10**6, used=10**6 - 100, free=100)
    monkeypatch.setattr(_scratch.shutil, "disk_usage", lambda _p: usage)
    widget = w.CopyToDiskImage(viewer)
    job = widget.start()
    wait_job(qtbot, job)
    msg = [m for m in messages() if "failed" in m]
    assert msg and "not enough free space" in msg[0] and "100 B free" in msg[0]


# --- write pixel --------------------------------------------------------------
def test_write_pixel_typed_shows_at_once(viewer, qtbot):
    data = np.zeros((3, 40, 50), np.uint16)
    image, (layer,) = disk_layer(viewer, data)
    viewer.dims.set_point(0, 2)
    widget = w.WritePixel(viewer)
    assert widget.layer.value is layer
    assert widget.coords["z"].value == 2  # prefilled from the current slice
    widget.value.value = "1234"
    widget.coords["x"].value, widget.coords["y"].value = 5, 7
    press(widget.write_button)

    assert image.array[0, 0, 2, 7, 5] == 1234
    on_disk = np.fromfile(image.path, dtype="<u2").reshape(3, 40, 50)
    assert on_disk[2, 7, 5] == 1234 and on_disk.sum() == 1234
    shown = np.asarray(layer._slice.image.view)
    assert shown[7, 5] == 1234


def test_write_pixel_prefills_from_cursor(viewer):
    _, (layer,) = disk_layer(viewer, np.zeros((3, 40, 50), np.uint8))
    layer.scale = (1, 2, 2)
    widget = w.WritePixel(viewer)
    viewer.cursor.position = (1, 2 * 11, 2 * 9 + 0.4)
    assert (widget.coords["x"].value, widget.coords["y"].value) == (9, 11)
    assert widget.coords["z"].value == 1
    widget.follow.value = False
    viewer.cursor.position = (1, 2, 2)
    assert widget.coords["x"].value == 9


def test_write_pixel_bad_input_is_notified(viewer, messages):
    image, _ = disk_layer(viewer, np.zeros((20, 30), np.uint8))
    widget = w.WritePixel(viewer)
    widget.follow.value = False
    cases = [
        ("300", 0, "does not fit in a uint8 image: it holds 0..255"),
        ("abc", 0, "pixel value 'abc' is not a number"),
        ("1.5", 0, "cannot be stored exactly in a uint8 image"),
        ("1", 999, "x = 999 is outside the image: size_x is 30"),
    ]
    for value, x, expected in cases:
        widget.value.value = value
        widget.coords["x"].value = x
        press(widget.write_button)
        assert expected in messages()[-1]
        assert str(image.path) in messages()[-1] or value == "abc"
    assert not image.array.any()


def test_write_read_only_offers_a_copy(viewer, qtbot, data_dir, messages):
    path = data_dir / "user.tif"
    tifffile.imwrite(path, np.full((20, 30), 5, np.uint8))
    before = path.read_bytes()
    image = ndi.open_tiff(path)
    (layer,) = w.add_disk_image(viewer, image, "user")
    widget = w.WritePixel(viewer)
    widget.value.value = "200"
    widget.coords["x"].value, widget.coords["y"].value = 3, 4
    press(widget.write_button)

    offer = notification_manager.records[-1]
    assert "open read-only" in offer.message and "Copy it" in offer.message
    assert str(path) in offer.message
    (label, accept), *_ = offer.actions
    assert label == "Copy and write"
    accept(None)  # the user presses the button on the notification
    wait_job(qtbot, widget.job)

    new = viewer.layers["user (disk image)"]
    copy = new.metadata["disk_image"]
    assert copy.is_scratch and copy.array[0, 0, 0, 4, 3] == 200
    assert copy.array.sum() == 200 + 5 * (20 * 30 - 1)
    assert path.read_bytes() == before  # the user's file is untouched
    assert widget.layer.value is new
    assert layer in viewer.layers


def test_unanswered_offer_does_not_keep_the_layer(viewer, messages):
    big = viewer.add_image(np.zeros((10, 12), np.uint8), name="mem")
    widget = w.WritePixel(viewer)
    press(widget.write_button)
    offer = notification_manager.records[-1]
    alive = weakref.ref(big)
    viewer.layers.remove(big)
    del big
    gc.collect()
    assert alive() is None
    offer.actions[0][1](None)
    assert "the layer was removed" in messages()[-1]


def test_write_in_memory_layer_offers_a_copy(viewer, qtbot):
    viewer.add_image(np.zeros((10, 12), np.float32), name="mem")
    widget = w.WritePixel(viewer)
    widget.value.value = "0.25"
    widget.coords["x"].value = 11
    press(widget.write_button)
    offer = notification_manager.records[-1]
    assert "'mem' is in memory" in offer.message
    offer.actions[0][1](None)
    wait_job(qtbot, widget.job)
    copy = viewer.layers["mem (disk image)"].metadata["disk_image"]
    assert copy.array[0, 0, 0, 0, 11] == np.float32(0.25)


def click(viewer, world) -> None:
    event = SimpleNamespace(
        type="mouse_press",
        position=tuple(world),
        button=1,
        modifiers=(),
        view_direction=None,
        dims_displayed=list(viewer.dims.displayed),
        handled=False,
    )
    mouse_press_callbacks(viewer, event)


def test_click_to_write_writes_at_the_clicked_voxel(viewer):
    data = np.zeros((2, 3, 20, 30), np.uint16)  # c, z, y, x
    image = ndi.copy(data)
    layers = w.add_disk_image(viewer, image, "multi")
    for lay in layers:
        lay.scale = (4, 0.5, 0.5)
        lay.translate = (0, 10, 100)
    widget = w.WritePixel(viewer)
    widget.layer.value = layers[1]  # channel 1
    widget.value.value = "77"
    viewer.dims.set_point(0, 8)  # z = 2 in world units (scale 4)

    click(viewer, (8, 10 + 0.5 * 6, 100 + 0.5 * 21))
    assert not image.array.any()  # not armed yet

    widget.click.value = True
    click(viewer, (8, 10 + 0.5 * 6, 100 + 0.5 * 21))
    assert image.array[0, 1, 2, 6, 21] == 77
    assert image.array.sum() == 77
    assert (widget.coords["x"].value, widget.coords["y"].value) == (21, 6)
    click(viewer, (8, 0, 0))  # beside the image: nothing written
    assert image.array.sum() == 77

    viewer.dims.ndisplay = 3  # a click in 3D names no single voxel
    click(viewer, (8, 10 + 0.5 * 6, 100 + 0.5 * 22))
    assert image.array.sum() == 77
    assert "works in the 2D view" in notification_manager.records[-1].message
    viewer.dims.ndisplay = 2

    widget.click.value = False
    click(viewer, (8, 10, 100))
    assert image.array[0, 1, 2, 0, 0] == 0


def test_click_on_the_canvas_writes_and_the_canvas_shows_it(make_napari_viewer, qtbot):
    """The whole path: a Qt/vispy mouse press on the canvas, then a screenshot."""
    viewer = make_napari_viewer(show=True)
    image = ndi.copy(np.zeros((20, 30), np.uint8))
    (layer,) = w.add_disk_image(viewer, image, "canvas")
    layer.contrast_limits = (0, 255)
    widget = w.WritePixel(viewer)
    widget.value.value = "255"
    widget.click.value = True
    canvas = viewer.window._qt_viewer.canvas
    to_canvas = canvas.layer_to_visual[layer].node.get_transform("visual", "canvas")
    # vispy's visual coordinates put pixel (x=5, y=7) in [5, 6) x [7, 8)
    x, y, *_ = to_canvas.map([5.5, 7.5, 0, 1])  # its centre
    scene = canvas._scene_canvas
    shot = viewer.screenshot(canvas_only=True, flash=False)
    k = shot.shape[1] / scene.size[0]  # screenshot pixels per canvas pixel
    assert shot[int(y * k), int(x * k), :3].max() == 0

    scene.events.mouse_press(pos=(x, y), button=1, modifiers=())
    scene.events.mouse_release(pos=(x, y), button=1, modifiers=())
    assert image.array[0, 0, 0, 7, 5] == 255 and image.array.sum() == 255
    qtbot.wait(50)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot[int(y * k), int(x * k), :3].min() > 200  # white where clicked
    x2, y2, *_ = to_canvas.map([8.5, 7.5, 0, 1])
    assert shot[int(y2 * k), int(x2 * k), :3].max() == 0  # black beside it
    assert layer.thumbnail[..., :3].max() > 0  # the layer list shows it too


# --- extract plane --------------------------------------------------------------
def test_extract_plane_prefill_and_overlay(viewer):
    data = np.random.default_rng(0).integers(0, 255, (3, 300, 2100), np.uint8)
    _, (layer,) = disk_layer(viewer, data)
    layer.scale = (1, 0.5, 0.5)
    layer.translate = (0, 3, 7)
    viewer.dims.set_point(0, 1)
    widget = w.ExtractPlane(viewer)
    f = widget.fields
    assert f["z"].value == 1
    assert (f["size_x"].value, f["size_y"].value) == (2100, 300)
    assert (f["offset_x"].value, f["offset_y"].value) == (0, 0)
    assert f["stride_x"].value == f["stride_y"].value == 3  # 2100 / 3 <= 1024

    press(widget.extract_button)
    whole = viewer.layers[-1]
    np.testing.assert_array_equal(whole.data, data[1, ::3, ::3])
    assert max(whole.data.shape) <= 1024

    f["offset_x"].value, f["offset_y"].value = 40, 20
    f["size_x"].value, f["size_y"].value = 400, 100
    f["stride_x"].value = f["stride_y"].value = 4
    press(widget.extract_button)
    part = viewer.layers[-1]
    np.testing.assert_array_equal(part.data, data[1, 20:120:4, 40:440:4])
    assert tuple(part.scale) == (2.0, 2.0)
    # Pixel (j, i) of the result lies exactly on its source pixel.
    for j, i in ((0, 0), (5, 7)):
        world = part.data_to_world((j, i))
        src = layer.data_to_world((1, 20 + 4 * j, 40 + 4 * i))
        np.testing.assert_allclose(world, src[-2:])


def test_extract_plane_bad_region_is_notified(viewer, messages):
    disk_layer(viewer, np.zeros((50, 60), np.uint8))
    widget = w.ExtractPlane(viewer)
    widget.fields["offset_x"].value = 30
    press(widget.extract_button)  # 30 + 60 reaches beyond x = 59
    assert any("reaches x =" in m and "use size_x <=" in m for m in messages())
    assert len(viewer.layers) == 1


# --- save ---------------------------------------------------------------------
def test_save_tiff_and_raw_from_disk_image(viewer, qtbot, data_dir, messages):
    data = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    disk_layer(viewer, data)
    widget = w.SaveImage(viewer)
    widget.path.value = data_dir / "out.tif"
    press(widget.save_button)
    wait_job(qtbot, widget.job)
    np.testing.assert_array_equal(tifffile.imread(data_dir / "out.tif"), data)

    widget.path.value = data_dir / "out_30x20x3_UInt16.raw"
    widget.byte_order.value = ">"
    press(widget.save_button)
    wait_job(qtbot, widget.job)
    raw = np.fromfile(data_dir / "out_30x20x3_UInt16.raw", dtype=">u2")
    np.testing.assert_array_equal(raw.reshape(3, 20, 30), data)
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "out.tif",
        "out_30x20x3_UInt16.raw",
    ]
    assert any("saved 'img'" in m for m in messages())


def test_save_bad_suffix_and_missing_folder(viewer, qtbot, data_dir, messages):
    viewer.add_image(np.zeros((5, 6), np.uint8), name="mem")
    widget = w.SaveImage(viewer)
    widget.path.value = data_dir / "out.png"
    assert widget.start() is None
    assert any("suffix .png" in m and ".tif" in m for m in messages())
    widget.path.value = data_dir / "nowhere" / "out.tif"
    press(widget.save_button)
    wait_job(qtbot, widget.job)
    assert any("does not exist" in m and "nowhere" in m for m in messages())


def test_save_cancel_leaves_nothing(viewer, qtbot, data_dir, monkeypatch):
    monkeypatch.setenv(BLOCK_BYTES_ENV, str(1 << 20))  # 1 MiB blocks
    viewer.add_image(SlowArray((16, 1024, 1024)), name="slow", contrast_limits=(0, 9))
    widget = w.SaveImage(viewer)
    widget.path.value = data_dir / "out.tif"
    job = widget.start()
    qtbot.waitUntil(lambda: job.pbar.n > 0)
    press(widget.cancel_button)
    wait_job(qtbot, job)
    assert job.cancelled
    assert list(data_dir.iterdir()) == []  # no file, no .part


# --- open RAW -----------------------------------------------------------------
def test_open_raw_prefilled_from_name(viewer, data_dir):
    data = np.arange(4 * 20 * 30, dtype=np.uint16).reshape(4, 20, 30)
    path = data_dir / "vol_30x20x4_UInt16.raw"
    data.astype("<u2").tofile(path)
    widget = w.OpenRaw(viewer)
    widget.path.value = path
    sizes = {a: widget.sizes[a].value for a in "xyzct"}
    assert sizes == {"x": 30, "y": 20, "z": 4, "c": 1, "t": 1}
    assert widget.dtype.value == "uint16"
    assert "matches" in widget.size_check.value
    press(widget.open_button)
    layer = viewer.layers["vol_30x20x4_UInt16"]
    image = layer.metadata["disk_image"]
    assert not image.writable
    np.testing.assert_array_equal(image.array[0, 0], data)


def test_open_raw_typed_geometry_and_size_mismatch(viewer, data_dir, messages):
    data = np.arange(2 * 10 * 12, dtype=">i2").reshape(2, 10, 12)
    path = data_dir / "scan.bin"
    path.write_bytes(b"HDR!" * 4 + data.tobytes())
    widget = w.OpenRaw(viewer)
    widget.path.value = path
    widget.dtype.value = "int16"
    widget.sizes["x"].value, widget.sizes["y"].value = 12, 10
    widget.sizes["z"].value = 3
    assert "expected 720 bytes" in widget.size_check.value
    assert f"file has {path.stat().st_size} bytes" in widget.size_check.value
    press(widget.open_button)
    assert any("too small" in m and "scan.bin" in m for m in messages())
    assert len(viewer.layers) == 0

    widget.sizes["z"].value = 2
    widget.offset.value = 16
    widget.byte_order.value = ">"
    assert "matches" in widget.size_check.value
    (layer,) = widget.open()
    np.testing.assert_array_equal(layer.metadata["disk_image"].array[0, 0], data)


# --- disk-image directory --------------------------------------------------------
def test_disk_image_dir_choose_and_remember(
    viewer, tmp_path, monkeypatch, config_dir, qtbot
):
    widget = w.DiskImageDir(viewer)
    assert str(ndi.get_disk_image_dir()) in widget.current.value
    assert "free space:" in widget.current.value
    new = tmp_path / "fast-disk"
    widget.folder.value = new
    press(widget.use_button)
    assert ndi.get_disk_image_dir() == new and new.is_dir()
    assert str(new) in widget.current.value
    assert str(new) in (config_dir / "settings.json").read_text()

    # A new napari session: the saved folder is used ...
    _scratch._reset_disk_image_dir()
    monkeypatch.delenv(_scratch.ENV_VAR)
    w.DiskImageDir(viewer)
    assert ndi.get_disk_image_dir() == new
    # ... unless $NAPARI_DISKIMAGE_DIR says otherwise.
    _scratch._reset_disk_image_dir()
    monkeypatch.setenv(_scratch.ENV_VAR, str(tmp_path / "env"))
    w.WritePixel(viewer)
    assert ndi.get_disk_image_dir() == tmp_path / "env"


def test_plugin_start_sweeps_files_of_killed_sessions(viewer, disk_image_dir):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    disk_image_dir.mkdir(parents=True, exist_ok=True)
    orphan = disk_image_dir / f"ndi-{pid}-0123456789abcdef_8x8_UInt8.raw"
    orphan.write_bytes(b"\0" * 64)
    mine = disk_image_dir / "my-notes.txt"
    mine.write_text("not a scratch file")
    w.ImageInfo(viewer)  # any of the plugin's widgets starting up
    assert not orphan.exists()
    assert mine.read_text() == "not a scratch file"


def test_disk_image_dir_unwritable_is_notified(viewer, tmp_path, messages):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    widget = w.DiskImageDir(viewer)
    widget.folder.value = blocker
    press(widget.use_button)
    assert any("is not a folder" in m and "a-file" in m for m in messages())
    assert ndi.get_disk_image_dir() != blocker


@pytest.mark.skipif(
    mount_fstype(Path("/dev/shm")) != "tmpfs", reason="no tmpfs at /dev/shm"
)
def test_disk_image_dir_warns_about_tmpfs(viewer, messages):
    widget = w.DiskImageDir(viewer)
    assert widget.warning.value == ""
    widget.folder.value = "/dev/shm/ndi-test-folder"
    try:
        press(widget.use_button)
    finally:
        Path("/dev/shm/ndi-test-folder").rmdir()
    assert "in RAM (tmpfs)" in widget.warning.value
    assert any("in RAM (tmpfs)" in m for m in messages())


def test_mount_fstype_reads_proc_mounts(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\ntmpfs /scratch\\040ram tmpfs rw 0 0\n")
    assert mount_fstype(Path("/scratch ram/x/y"), str(mounts)) == "tmpfs"
    assert mount_fstype(Path("/scratchy"), str(mounts)) == "ext4"


def test_disk_image_dir_warns_when_space_is_short(viewer, monkeypatch, messages):
    disk_layer(viewer, np.zeros((100, 100), np.uint16))  # 20000 bytes
    usage = SimpleNamespace(total=10**9, used=10**9 - 5000, free=5000)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage)
    widget = w.DiskImageDir(viewer)
    assert "less than the largest open image (19.5 KiB" in widget.warning.value
    press(widget.use_button)
    assert any("4.9 KiB free" in m for m in messages())


# --- image info -------------------------------------------------------------------
def test_image_info_follows_selection(viewer, data_dir):
    widget = w.ImageInfo(viewer)
    assert widget.info.value == "no layer selected"
    mem = viewer.add_image(np.zeros((4, 5), np.int32), name="mem")
    assert "disk image: no" in widget.info.value and "int32" in widget.info.value

    image, (scratch,) = disk_layer(viewer, np.zeros((2, 8, 9), np.uint16))
    text = widget.info.value
    assert "disk image: yes" in text and "scratch" in text
    assert str(image.path) in text and "9 x 8 x 2 x 1 x 1" in text
    assert "UInt16" in text and "size on disk: 288 B" in text

    path = data_dir / "mine.tif"
    tifffile.imwrite(path, np.zeros((6, 7), np.uint8))
    w.add_disk_image(viewer, ndi.open_tiff(path), "mine")
    text = widget.info.value
    assert str(path) in text and "your TIFF file, opened read-only" in text

    viewer.layers.selection.active = mem
    assert "disk image: no" in widget.info.value
    del scratch


def test_closed_widgets_stop_listening(viewer):
    _, (layer,) = disk_layer(viewer, np.zeros((3, 10, 12), np.uint8))
    widgets = [cls(viewer) for cls in (w.WritePixel, w.ExtractPlane, w.ImageInfo)]
    widgets.append(w.DiskImageDir(viewer))
    widgets[0].click.value = True
    for widget in widgets:
        widget.native.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    with pytest.raises(RuntimeError, match="deleted"):
        widgets[0].layer.native.currentIndex()  # really gone on the Qt side
    # None of these may raise from a deleted widget's handler.
    viewer.dims.set_point(0, 2)
    viewer.cursor.position = (2, 3, 4)
    viewer.add_image(np.zeros((5, 5)), name="later")
    viewer.layers.selection.active = layer
    click(viewer, (2, 3, 4))
    assert not layer.metadata["disk_image"].array.any()
    assert widgets[0]._on_click not in viewer.mouse_drag_callbacks


def test_settings_are_not_read_on_import(tmp_path, config_dir, monkeypatch):
    import subprocess
    import sys

    saved = tmp_path / "saved-folder"
    _settings.save_disk_image_dir(saved)
    monkeypatch.delenv(_scratch.ENV_VAR)
    code = "import napari_diskimage as n; print(n.get_disk_image_dir())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() != str(saved)  # importing the core reads no config
    _scratch._reset_disk_image_dir()
    assert _settings.apply_saved_disk_image_dir() is None
    assert ndi.get_disk_image_dir() == saved


def test_unusable_saved_folder_is_reported(tmp_path, config_dir, monkeypatch):
    blocker = tmp_path / "now-a-file"
    _settings.save_disk_image_dir(blocker)
    blocker.write_text("x")
    monkeypatch.delenv(_scratch.ENV_VAR)
    message = _settings.apply_saved_disk_image_dir()
    assert "saved disk-image directory cannot be used" in message
    assert "now-a-file" in message
    assert ndi.get_disk_image_dir() != blocker
    (config_dir / "settings.json").write_text("{not json")
    assert _settings.load_settings() == {}
    assert _settings.apply_saved_disk_image_dir() is None


# --- manifest -------------------------------------------------------------------------
def test_widgets_dock_from_the_plugins_menu(viewer):
    expected = {
        "Copy to disk image": w.CopyToDiskImage,
        "Write pixel": w.WritePixel,
        "Extract plane": w.ExtractPlane,
        "Save as TIFF / RAW": w.SaveImage,
        "Open RAW": w.OpenRaw,
        "Disk-image directory": w.DiskImageDir,
        "Image info": w.ImageInfo,
    }
    for name, cls in expected.items():
        _, widget = viewer.window.add_plugin_dock_widget("napari-diskimage", name)
        assert isinstance(widget, cls)
        assert widget.viewer is viewer  # napari's proxy unwrapped for the core
