"""3D views in napari: the bounded overview and the full-resolution box.

Volumes are sparse RAW files (no disk space) with real data written only
where it is looked at, so the screenshot has something to show.
"""

from __future__ import annotations

import sys
import textwrap
import time

import numpy as np
import pytest
from qtpy.QtWidgets import QApplication

import napari_diskimage as ndi
from _memcap import run_capped, unavailable_reason
from napari_diskimage import display as _pyramid
from napari_diskimage._qt.box3d import BOX_KEY, Box3D
from napari_diskimage.display import BOX_VOXELS

pytestmark = pytest.mark.gui


def _sparse(tmp_path, x, y, z):
    path = tmp_path / f"vol_{x}x{y}x{z}_UInt16.raw"
    with open(path, "wb") as fh:
        fh.truncate(x * y * z * 2)
    return path


def _write_blob(path, shape, zfactor, factor, value=40000):
    """A bright block in the middle third, on the rows the overview reads."""
    z, y, x = shape
    with ndi.open_raw(path, mode="r+") as img:
        a = img.array[0, 0]
        for k in range(z // 3 - z // 3 % zfactor, 2 * z // 3, zfactor):
            y0 = y // 3 - y // 3 % factor
            a[k, y0 : 2 * y // 3 : factor, x // 3 : 2 * x // 3] = value
        a.flush()


def _open(viewer, path):
    viewer.open(str(path), plugin="napari-diskimage")
    [layer] = viewer.layers
    return layer, layer.metadata["disk_image"]


def _screenshot_gray(viewer):
    return viewer.screenshot(canvas_only=True, flash=False)[..., :3].mean(axis=-1)


@pytest.mark.parametrize(
    "size",
    [(4096, 2048, 64), (4096, 2048, 256), (8192, 4096, 1024)],  # 1, 4, 64 GiB
    ids=["1GiB", "4GiB", "64GiB"],
)
def test_3d_reads_a_bounded_part_of_any_volume(make_napari_viewer, tmp_path, size):
    path = _sparse(tmp_path, *size)
    shape = size[::-1]
    viewer = make_napari_viewer(show=True)
    layer, img = _open(viewer, path)
    coarsest = layer.data[-1]
    _write_blob(path, shape, coarsest.zfactor, coarsest.factor)
    before = img.bytes_read
    viewer.dims.ndisplay = 3
    gray = _screenshot_gray(viewer)
    read = img.bytes_read - before
    assert read <= _pyramid.OVERVIEW_BYTES, f"3D read {read >> 20} MiB"
    assert layer.data_level == len(layer.data) - 1
    # the bright block shows in the 3D render: the screenshot is not blank
    assert (gray > 100).mean() > 0.01, "the 3D view shows nothing"
    # back to 2D: the full-resolution level shows the exact file plane
    viewer.dims.ndisplay = 2
    z = shape[0] // 2
    viewer.dims.set_current_step(0, z)
    viewer.scene.camera.center = (0, shape[1] // 2, shape[2] // 2)
    viewer.scene.camera.zoom = 4
    viewer.screenshot(canvas_only=True, flash=False)
    assert layer.data_level == 0
    raw = layer._slice.image.raw
    (y0, _), (x0, _) = layer.corner_pixels[:, 1:].T
    expected = img.array[0, 0, z, y0 : y0 + raw.shape[0], x0 : x0 + raw.shape[1]]
    np.testing.assert_array_equal(raw, expected)


def test_the_3d_box_shows_the_files_voxels_in_place(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 4000, (80, 600, 900), dtype=np.uint16)
    path = tmp_path / "vol_900x600x80_UInt16.raw"
    vol.tofile(path)
    viewer = make_napari_viewer(show=True)
    layer, img = _open(viewer, path)
    layer.scale = (2.0, 0.5, 0.5)
    layer.translate = (10.0, -3.0, 7.0)
    tool = Box3D(viewer)
    viewer.window.add_dock_widget(tool)
    viewer.dims.set_current_step(0, 40 * 2 + 10)  # world z of plane 40
    viewer.scene.camera.center = (0, 300 * 0.5 - 3.0, 450 * 0.5 + 7.0)
    viewer.scene.camera.zoom = 8  # a region of the plane, not all of it
    tool.prefill()
    assert tool.z_first.value <= 40 <= tool.z_last.value
    tool.z_first.value, tool.z_last.value = 30, 49
    before = img.bytes_read
    job = tool.show_region()
    assert job is not None
    deadline = time.monotonic() + 30
    while not job.done and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
    assert job.done and job.error is None
    box_layer = tool.box_layer
    assert box_layer is not None and viewer.dims.ndisplay == 3
    box = box_layer.metadata[BOX_KEY]
    assert box.z == (30, 50) and 0 < box.shape[1] < 600 and 0 < box.shape[2] < 900
    np.testing.assert_array_equal(
        box_layer.data, vol[30:50, box.y[0] : box.y[1], box.x[0] : box.x[1]]
    )
    # (what the box reads is checked in test_overview; here napari's own
    # switch to 3D reads the overview too)
    assert img.bytes_read - before >= box_layer.data.nbytes
    # voxel (0, 0, 0) of the box is voxel box.offset of the volume, in world
    np.testing.assert_allclose(
        box_layer.data_to_world((0, 0, 0)), layer.data_to_world(box.offset)
    )
    np.testing.assert_allclose(
        box_layer.data_to_world((5, 6, 7)),
        layer.data_to_world(np.add(box.offset, (5, 6, 7))),
    )
    gray = _screenshot_gray(viewer)
    assert gray.std() > 5
    # moving the box: the same layer, new voxels
    viewer.dims.ndisplay = 2
    viewer.scene.camera.center = (0, 100 * 0.5 - 3.0, 150 * 0.5 + 7.0)
    tool.z_first.value, tool.z_last.value = 0, 9
    job = tool.show_region()
    deadline = time.monotonic() + 30
    while not job.done and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
    moved = box_layer.metadata[BOX_KEY]
    assert tool.box_layer is box_layer and moved != box and moved.z == (0, 10)
    np.testing.assert_array_equal(
        box_layer.data, vol[0:10, moved.y[0] : moved.y[1], moved.x[0] : moved.x[1]]
    )


def test_the_box_tool_says_why_it_cannot_act(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    tool = Box3D(viewer)
    assert not tool.start_button.enabled and "no disk image" in tool.hint.value
    viewer.add_image(np.zeros((4, 8, 8), np.uint8), name="mem")
    assert "in memory" in tool.hint.value
    flat = tmp_path / "flat_64x64_UInt8.raw"
    flat.write_bytes(bytes(64 * 64))
    viewer.open(str(flat), plugin="napari-diskimage")
    assert "single z plane" in tool.hint.value and not tool.start_button.enabled


CAPPED = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import napari
    from qtpy.QtWidgets import QApplication
    from napari_diskimage._qt.box3d import Box3D
    viewer = napari.Viewer(show=True)
    viewer.open(sys.argv[1], plugin="napari-diskimage")
    [layer] = viewer.layers
    img = layer.metadata["disk_image"]
    viewer.dims.ndisplay = 3
    viewer.screenshot(canvas_only=True, flash=False)
    print("3d read", img.bytes_read >> 20, "MiB")
    viewer.dims.ndisplay = 2
    viewer.scene.camera.zoom = 1.0  # a view about as large as the canvas
    tool = Box3D(viewer)
    job = tool.show_region()
    while not job.done:
        QApplication.processEvents()
        time.sleep(0.01)
    assert job.error is None, job.error
    viewer.screenshot(canvas_only=True, flash=False)
    print("box", tool.box_layer.data.shape)
    viewer.close()
    print("ok")
    """
)


@pytest.mark.slow
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_64_gib_in_3d_and_a_box_under_a_1_gib_cap(tmp_path):
    path = _sparse(tmp_path, 8192, 4096, 1024)
    result = run_capped(1 << 30, [sys.executable, "-c", CAPPED, str(path)], timeout=300)
    assert result.returncode != 137, "killed by the memory cap"
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok"), result.stdout
    box_shape = eval(result.stdout.split("box")[1].splitlines()[0])
    assert np.prod(box_shape) <= BOX_VOXELS
