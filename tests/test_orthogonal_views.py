"""napari-orthogonal-views' side viewers over a disk image, as a user
shows them: the YZ / XZ views show the file's pixels, and the YZ view
reads the view cache, not the file."""

from __future__ import annotations

import numpy as np
import pytest
from napari_orthogonal_views import ortho_view_manager as ortho

import napari_diskimage as ndi
from napari_diskimage.display.cached_views import valid_view_cache

PLUGIN = "napari-diskimage"
pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("view_caches_cleared")]


@pytest.fixture
def window(make_napari_viewer, qtbot):
    """A shown viewer (the side views need real canvases to slice)."""
    from napari_diskimage import _qt

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1280, 800)
    yield viewer
    _qt.cancel_all_jobs()


def _show(viewer, qtbot):
    """Show the side views as the plugin's menu command does."""
    manager = ortho._get_manager(viewer)
    ortho.show_orthogonal_views(viewer)
    qtbot.waitUntil(manager.is_shown, timeout=5000)
    qtbot.wait(200)  # the side canvases get their size, the views slice
    return (
        manager.right_widget.vm_container.viewer_model,  # (y, z): a YZ plane
        manager.bottom_widget.vm_container.viewer_model,  # (z, x): an XZ plane
    )


def _yz(side, data: np.ndarray, x: int) -> tuple[np.ndarray, np.ndarray]:
    """What the YZ side view shows, and the file's pixels there."""
    [layer] = side.layers
    (z0, y0, _), (z1, y1, _) = layer.corner_pixels
    return layer._slice.image.raw, data[z0 : z1 + 1, y0 : y1 + 1, x].T


def _xz(side, data: np.ndarray, y: int) -> tuple[np.ndarray, np.ndarray]:
    [layer] = side.layers
    (z0, _, x0), (z1, _, x1) = layer.corner_pixels
    return layer._slice.image.raw, data[z0 : z1 + 1, y, x0 : x1 + 1]


def test_side_views_show_the_file_and_yz_reads_the_view_cache(window, qtbot, scan_tiff):
    viewer = window
    path, data = scan_tiff
    with ndi.open_tiff(path) as built:
        ndi.view_cache(built).close()  # built once, kept for later sessions
    [layer] = viewer.open(path, plugin=PLUGIN)
    image = layer.metadata["disk_image"]
    cache = valid_view_cache(image)
    assert cache is not None
    right, bottom = _show(viewer, qtbot)
    assert [side.layers[0].data_level for side in (right, bottom)] == [0, 0]

    before, cached_before = image.bytes_read, cache.bytes_read
    viewer.dims.set_current_step(2, 600)  # the cursor moves to column 600
    qtbot.wait(100)
    assert right.dims.current_step[2] == 600
    shown, pixels = _yz(right, data, 600)
    assert shown.shape == pixels.shape and shown.shape[1] == 96
    np.testing.assert_array_equal(shown, pixels)
    assert cache.bytes_read > cached_before  # the YZ view: chunks of the cache
    # napari reslices every view on a step: the XY and XZ views read their
    # planes from the file, the YZ view none of its pixels (read from the
    # file, they would add shown.nbytes: the test fails without the cache)
    assert image.bytes_read - before <= data[0].nbytes + data[:, 0].nbytes

    viewer.dims.set_current_step(1, 77)  # and to row 77
    qtbot.wait(100)
    shown, pixels = _xz(bottom, data, 77)
    assert shown.shape == pixels.shape == (96, 700)
    np.testing.assert_array_equal(shown, pixels)
    shown, pixels = _yz(right, data, 600)  # unchanged
    np.testing.assert_array_equal(shown, pixels)
    np.testing.assert_array_equal(layer._slice.image.raw, data[47])  # XY: z 47


def test_painting_labels_shows_in_the_side_views(window, qtbot, scan_tiff):
    from napari_diskimage._napari.labels import DiskLabels

    viewer = window
    path, _ = scan_tiff
    [layer] = viewer.open(path, plugin=PLUGIN)
    image = layer.metadata["disk_image"]
    labels = ndi.new_labels(image, "uint8")
    painted = DiskLabels.attach(viewer, labels, name="labels", like=layer)
    right, bottom = _show(viewer, qtbot)
    viewer.layers.selection.active = painted
    painted.brush_size = 1
    viewer.dims.set_current_step(2, 600)
    viewer.dims.set_current_step(1, 77)
    painted.paint((47, 77, 600), 5)  # a click in the main (XY) view
    qtbot.wait(200)
    stored = np.fromfile(labels.path, dtype=labels.dtype).reshape(96, 600, 700)
    assert stored[47, 77, 600] == 5 and (stored == 5).sum() == 1  # the file
    yz = right.layers["labels"]._slice.image.raw  # (y, z)
    xz = bottom.layers["labels"]._slice.image.raw  # (z, x)
    assert yz.shape == (600, 96) and xz.shape == (96, 700)
    assert yz[77, 47] == 5 and (yz == 5).sum() == 1
    assert xz[47, 600] == 5 and (xz == 5).sum() == 1
    viewer.layers.clear()
    labels.close()


def test_showing_the_side_views_offers_a_view_cache(window, qtbot, scan_tiff):
    from napari.utils.notifications import notification_manager

    from napari_diskimage import _settings

    viewer = window
    path, _ = scan_tiff
    _settings.save_setting("view_cache_offer_bytes", 1 << 40, quiet=True)
    start = len(notification_manager.records)
    viewer.open(path, plugin=PLUGIN)  # small: no offer on opening
    assert not [n for n in notification_manager.records[start:] if n.actions]
    _settings.save_setting("view_cache_offer_bytes", 1 << 20, quiet=True)
    _show(viewer, qtbot)  # the main viewer's dims stay XY: the YZ side view
    [offer] = [n for n in notification_manager.records[start:] if n.actions]
    assert "scan.tif" in offer.message and "YZ / XZ" in offer.message
    [(label, _build)] = offer.actions
    assert label.startswith("Build view cache (")
    viewer.dims.set_current_step(2, 10)  # offered once: a step says nothing more
    qtbot.wait(100)
    assert [n for n in notification_manager.records[start:] if n.actions] == [offer]
