"""The view cache in napari, driven as a user would: rolled dims read the
cache, the offer's button and Image info build it, the layers switch."""

from __future__ import annotations

import numpy as np
import pytest

import napari_diskimage as ndi
from napari_diskimage import _settings
from napari_diskimage._napari.reader import disk_image_layers
from napari_diskimage._scratch import format_bytes
from napari_diskimage.display import levels as display_levels_module
from napari_diskimage.display.cached_views import valid_view_cache

PLUGIN = "napari-diskimage"
pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("view_caches_cleared")]


@pytest.fixture
def small_overview(monkeypatch):
    """This 80 MiB volume gets a 3D overview, as a large one would."""
    monkeypatch.setattr(display_levels_module, "OVERVIEW_BYTES", 1 << 20)
    monkeypatch.setattr(display_levels_module, "OVERVIEW_VOXELS", 1 << 20)


def _roll_to_yz(viewer, layer) -> None:
    """Roll the dims to (z, y), as napari-orthogonal-views' YZ viewer does,
    full resolution.  (Without a canvas the first slice after the roll has
    the XY view's region: one z row, read from the file.)"""
    _roll(viewer, layer, (2, 0, 1))


def _roll(viewer, layer, order: tuple[int, ...]) -> None:
    viewer.dims.order = order
    layer.locked_data_level = None  # a new level lock: the whole plane's region
    layer.locked_data_level = 0
    layer.refresh()


def _show_yz(viewer, layer, x: int) -> np.ndarray:
    """Step the rolled view to column ``x``; what napari shows."""
    viewer.dims.set_current_step(2, x)
    return layer._slice.image.raw


def _shown_region(layer, plane: np.ndarray) -> np.ndarray:
    (z0, y0, _), (z1, y1, _) = layer.corner_pixels
    return plane[z0 : z1 + 1, y0 : y1 + 1]


def _block_means(data: np.ndarray, fz: int, f: int) -> np.ndarray:
    z, y, x = (n // s for n, s in zip(data.shape, (fz, f, f), strict=True))
    whole = data[: z * fz, : y * f, : x * f].astype(np.float64)
    return whole.reshape(z, fz, y, f, x, f).mean(axis=(1, 3, 5))


def test_rolled_dims_show_the_cache_then_the_file_after_a_write(viewer, scan_tiff):
    path, data = scan_tiff
    image = ndi.open_tiff(path, mode="r+")
    ndi.view_cache(image).close()
    [(levels, kwargs, _)] = disk_image_layers(image)
    layer = viewer.add_image(levels, **kwargs)
    cache = valid_view_cache(image)
    assert cache is not None
    _roll_to_yz(viewer, layer)  # at the middle column
    before, cached_before = image.bytes_read, cache.bytes_read
    shown = _show_yz(viewer, layer, 600)
    assert shown.shape == (96, 600)
    np.testing.assert_array_equal(shown, _shown_region(layer, data[:, :, 600]))
    assert image.bytes_read == before  # the chunks of the cache only
    assert cache.bytes_read > cached_before

    # an XZ plane (a row of each plane) is read from the file as it lies
    _roll(viewer, layer, (1, 0, 2))
    before, cached_before = image.bytes_read, cache.bytes_read
    viewer.dims.set_current_step(1, 77)
    (z0, _, x0), (z1, _, x1) = layer.corner_pixels
    assert (z0, z1, x0, x1) == (0, 95, 0, 699)
    np.testing.assert_array_equal(layer._slice.image.raw, data[:, 77, :])
    assert image.bytes_read > before
    assert cache.bytes_read == cached_before
    _roll_to_yz(viewer, layer)
    _show_yz(viewer, layer, 600)

    image.write_pixel(9, z=50, y=300, x=600)  # a write of ours
    layer.refresh()
    shown = layer._slice.image.raw
    assert shown[50, 300] == 9  # the file, never the stale cache
    assert image.bytes_read > before
    viewer.layers.clear()
    image.close()


def test_the_offer_builds_the_cache_and_the_layer_switches(
    viewer, qtbot, scan_tiff, small_overview
):
    from napari.utils.notifications import notification_manager

    path, data = scan_tiff
    _settings.save_setting("view_cache_offer_bytes", 1 << 20, quiet=True)
    start = len(notification_manager.records)
    [layer] = viewer.open(path, plugin=PLUGIN)
    image = layer.metadata["disk_image"]
    offers = [n for n in notification_manager.records[start:] if n.actions]
    assert len(offers) == 1
    assert "scan.tif" in offers[0].message and "view cache" in offers[0].message
    [(label, build)] = offers[0].actions
    assert label.startswith("Build view cache (")
    strided = layer.data[-1]
    assert (strided.zfactor, strided.factor) != (4, 4)

    build(None)  # the notification's button
    info = next(
        w for w in viewer.window.dock_widgets.values() if hasattr(w, "view_cache")
    )
    job = info.view_cache.job
    assert job is not None
    qtbot.waitUntil(lambda: job.done, timeout=60000)
    assert job.error is None and not job.cancelled
    assert valid_view_cache(image) is not None
    overview = layer.data[-1]
    assert (overview.zfactor, overview.factor) == (4, 4)  # on the cache's grid
    viewer.dims.ndisplay = 3  # napari renders the overview: block means
    shown = layer._slice.image.raw
    means = _block_means(data, 4, 4)
    part = shown[: means.shape[0], : means.shape[1], : means.shape[2]]
    assert np.abs(part - means).max() <= 1.0
    viewer.dims.ndisplay = 2
    _roll_to_yz(viewer, layer)
    before = image.bytes_read
    np.testing.assert_array_equal(
        _show_yz(viewer, layer, 123), _shown_region(layer, data[:, :, 123])
    )
    assert image.bytes_read == before
    # offered once per image: rolling the dims again says nothing more
    viewer.dims.order = (1, 0, 2)
    assert [n for n in notification_manager.records[start:] if n.actions] == offers


def test_rolling_the_dims_offers_a_cache(viewer, scan_tiff):
    from napari.utils.notifications import notification_manager

    path, _ = scan_tiff
    _settings.save_setting("view_cache_offer_bytes", 1 << 40, quiet=True)
    start = len(notification_manager.records)
    viewer.open(path, plugin=PLUGIN)
    assert not [n for n in notification_manager.records[start:] if n.actions]
    _settings.save_setting("view_cache_offer_bytes", 1 << 20, quiet=True)
    viewer.dims.order = (2, 0, 1)
    [offer] = [n for n in notification_manager.records[start:] if n.actions]
    assert "YZ / XZ" in offer.message


def test_image_info_builds_and_clears_view_caches(viewer, qtbot, scan_tiff):
    from napari_diskimage._qt.image_info import ImageInfo

    path, data = scan_tiff
    [layer] = viewer.open(path, plugin=PLUGIN)
    image = layer.metadata["disk_image"]
    info = ImageInfo(viewer)
    viewer.layers.selection.active = layer
    actions = info.view_cache
    size = ndi.view_cache_size(image)
    assert actions.build_button.text == (f"Build view cache ({format_bytes(size)})")
    assert actions.build_button.enabled
    actions.build_button.native.click()
    job = actions.job
    assert job is not None
    qtbot.waitUntil(lambda: job.done, timeout=60000)
    assert actions.status.value == "view cache ready"
    assert actions.build_button.text == "View cache ready"
    assert not actions.build_button.enabled
    _roll_to_yz(viewer, layer)
    before = image.bytes_read
    np.testing.assert_array_equal(
        _show_yz(viewer, layer, 10), _shown_region(layer, data[:, :, 10])
    )
    assert image.bytes_read == before

    actions.clear_button.native.click()
    assert actions.status.value.startswith("view caches cleared")
    assert valid_view_cache(image) is None
    assert actions.build_button.text.startswith("Build view cache (")
    _roll_to_yz(viewer, layer)  # the layers got new levels: level 0 again
    np.testing.assert_array_equal(
        _show_yz(viewer, layer, 20), _shown_region(layer, data[:, :, 20])
    )
    assert image.bytes_read > before  # the file again


def test_image_info_refuses_a_build_without_space(viewer, scan_tiff, monkeypatch):
    from napari.utils.notifications import notification_manager

    from napari_diskimage._qt import view_cache as qt_view_cache
    from napari_diskimage._qt.image_info import ImageInfo

    path, _ = scan_tiff
    [layer] = viewer.open(path, plugin=PLUGIN)
    info = ImageInfo(viewer)
    viewer.layers.selection.active = layer
    monkeypatch.setattr(
        qt_view_cache, "view_cache_size", lambda image: 1 << 60
    )  # more than any disk
    start = len(notification_manager.records)
    assert info.view_cache.build() is None
    [message] = [n.message for n in notification_manager.records[start:]]
    assert "view cache of scan.tif" in message and "free" in message
    assert valid_view_cache(layer.metadata["disk_image"]) is None


def _offers(start: int) -> list:
    from napari.utils.notifications import notification_manager

    return [n for n in notification_manager.records[start:] if n.actions]


def test_files_over_the_set_size_get_a_view_cache_when_opened(
    viewer, qtbot, scan_tiff, small_overview
):
    from napari.utils.notifications import notification_manager

    from napari_diskimage._qt.image_info import ImageInfo

    path, data = scan_tiff  # 80.6 MiB
    _settings.save_setting("view_cache_offer_bytes", 1 << 20, quiet=True)
    info = ImageInfo(viewer)
    assert info.view_cache.auto.value == 0  # off by default: offered instead
    assert info.view_cache.auto.native.text() == "never"
    info.view_cache.auto.value = 0.1  # GiB: more than this file
    assert info.view_cache.auto.native.text() == "0.10 GiB"
    start = len(notification_manager.records)
    [small] = viewer.open(path, plugin=PLUGIN)
    assert valid_view_cache(small.metadata["disk_image"]) is None
    assert len(_offers(start)) == 1  # too small to build: offered
    viewer.layers.clear()

    info.view_cache.auto.value = 0.05  # GiB: less than this file
    assert ImageInfo(viewer).view_cache.auto.value == 0.05  # remembered
    start = len(notification_manager.records)
    [layer] = viewer.open(path, plugin=PLUGIN)
    image = layer.metadata["disk_image"]
    assert _offers(start) == []  # not offered: being built
    builder = next(
        w for w in viewer.window.dock_widgets.values() if hasattr(w, "view_cache")
    )
    job = builder.view_cache.job
    assert job is not None and job.running
    assert (layer.data[-1].zfactor, layer.data[-1].factor) != (4, 4)
    qtbot.waitUntil(lambda: job.done, timeout=60000)
    assert job.error is None
    assert valid_view_cache(image) is not None
    # the layer switched to the cache: a 3D overview of block means ...
    assert (layer.data[-1].zfactor, layer.data[-1].factor) == (4, 4)
    # ... and YZ planes from its chunks
    _roll_to_yz(viewer, layer)
    before = image.bytes_read
    np.testing.assert_array_equal(
        _show_yz(viewer, layer, 321), _shown_region(layer, data[:, :, 321])
    )
    assert image.bytes_read == before


@pytest.fixture
def async_viewer(make_napari_viewer, monkeypatch):
    """A viewer slicing asynchronously (napari's ``async`` setting,
    ``NAPARI_ASYNC=1``): layers are read in a slicing thread."""
    from napari.settings import get_settings

    from napari_diskimage import _qt

    monkeypatch.setattr(get_settings().experimental, "async_", True)
    viewer = make_napari_viewer()
    assert not viewer._layer_slicer._force_sync
    yield viewer
    _qt.cancel_all_jobs()


def test_async_slicing_offers_from_the_slicing_thread_then_reads_the_cache(
    async_viewer, qtbot, scan_tiff
):
    import threading

    from napari.utils.notifications import notification_manager

    from napari_diskimage.display import cached_views

    viewer = async_viewer
    path, data = scan_tiff
    _settings.save_setting("view_cache_offer_bytes", 1 << 40, quiet=True)
    [layer] = viewer.open(path, plugin=PLUGIN)
    image = layer.metadata["disk_image"]
    viewer.dims.order = (2, 0, 1)  # rolled while not offered: too small
    layer.locked_data_level = 0
    start = len(notification_manager.records)
    threads: list[threading.Thread] = []

    def reading_thread(_image) -> None:
        threads.append(threading.current_thread())

    cached_views.on_uncached_yz_read(reading_thread)
    try:
        _settings.save_setting("view_cache_offer_bytes", 1 << 20, quiet=True)
        viewer.dims.set_current_step(2, 100)  # sliced in a thread: from the file
        qtbot.waitUntil(
            lambda: bool(threads) and len(_offers(start)) == 1, timeout=20000
        )
    finally:
        cached_views._uncached_listeners.remove(reading_thread)
    assert threading.main_thread() not in threads
    [offer] = _offers(start)
    [(_label, build)] = offer.actions
    build(None)  # the button, in the GUI thread
    info = next(
        w for w in viewer.window.dock_widgets.values() if hasattr(w, "view_cache")
    )
    job = info.view_cache.job
    qtbot.waitUntil(lambda: job is not None and job.done, timeout=60000)
    assert job.error is None and valid_view_cache(image) is not None
    layer = viewer.layers[0]
    layer.locked_data_level = None
    layer.locked_data_level = 0
    before = image.bytes_read
    viewer.dims.set_current_step(2, 456)
    expected = data[:, :, 456]

    def shown() -> bool:
        plane = layer._slice.image.raw
        return plane.shape[0] == 96 and np.array_equal(
            plane, _shown_region(layer, expected)
        )

    qtbot.waitUntil(shown, timeout=20000)
    assert image.bytes_read == before  # the cache's chunks, in the slicing thread
