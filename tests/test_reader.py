"""The napari reader: files open as lazy multiscale layers, nothing loaded."""

from __future__ import annotations

import gc
import logging

import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from napari_diskimage._napari.reader import (
    MAX_SERIES_LAYERS,
    disk_image_layers,
    napari_get_reader,
)
from napari_diskimage.display import DisplayLevel

PLUGIN = "napari-diskimage"


def _planes(nz: int, ny: int, nx: int) -> np.ndarray:
    """uint16 (z, y, x): plane z holds 100 * z + (y + 3 x) % 90."""
    y, x = np.ogrid[:ny, :nx]
    pattern = ((y + 3 * x) % 90).astype(np.uint16)
    return np.stack([pattern + np.uint16(100 * z) for z in range(nz)])


@pytest.fixture
def stack_tiff(data_dir):
    """A 4-plane 700 x 1100 uint16 ImageJ TIFF (3 display levels)."""
    data = _planes(4, 700, 1100)
    path = data_dir / "stack.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    return path, data


@pytest.fixture
def big_tiff(data_dir):
    """A 96 MiB (12 x 2048 x 2048 uint16) TIFF, filled plane by plane."""
    path = data_dir / "big.tif"
    shape = (12, 2048, 2048)
    out = tifffile.memmap(
        path, shape=shape, dtype=np.uint16, imagej=True, metadata={"axes": "ZYX"}
    )
    pattern = _planes(1, 2048, 2048)[0]
    for z in range(shape[0]):
        out[z] = pattern + np.uint16(100 * z)
    out.flush()
    del out
    return path, shape


# --- napari_get_reader: cheap, never raises -----------------------------------
def test_declines_what_it_does_not_take(data_dir, caplog):
    png = data_dir / "a.png"
    png.write_bytes(b"\x89PNG")
    not_tiff = data_dir / "fake.tif"
    not_tiff.write_bytes(b"this is not a TIFF file")
    for path in [
        png,
        not_tiff,
        data_dir / "missing.tif",
        data_dir,
        None,
        123,
        [],
        [str(png)],
    ]:
        assert napari_get_reader(path if path is None else str(path)) is None
    assert napari_get_reader(None) is None
    assert napari_get_reader(123) is None  # type: ignore[arg-type]


def test_raw_without_geometry_is_declined_with_a_hint(data_dir, caplog):
    path = data_dir / "scan.raw"
    path.write_bytes(bytes(100))
    with caplog.at_level(logging.INFO, logger="napari_diskimage._napari.reader"):
        assert napari_get_reader(str(path)) is None
    assert "Open RAW" in caplog.text
    assert "scan.raw" in caplog.text


def test_compressed_tiff_is_declined_with_the_reason(data_dir, caplog):
    path = data_dir / "packed.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint16), compression="zlib")
    with caplog.at_level(logging.INFO, logger="napari_diskimage._napari.reader"):
        reader = napari_get_reader(str(path))
    # Compressed TIFFs may be taken once the core opens them lazily; until
    # then the decline must say why.
    if reader is None:
        assert "compressed" in caplog.text
    else:
        layers = reader(str(path))
        assert np.asarray(layers[0][0][0]).shape == (64, 64)


def test_reader_returns_lazy_multiscale_layer_data(stack_tiff):
    path, data = stack_tiff
    reader = napari_get_reader(str(path))
    assert callable(reader)
    [(levels, kwargs, layer_type)] = reader(str(path))
    assert layer_type == "image"
    assert [lv.shape for lv in levels] == [(4, 700, 1100), (4, 350, 550), (4, 175, 275)]
    assert all(isinstance(lv, DisplayLevel) for lv in levels)
    image = kwargs["metadata"]["disk_image"]
    assert ndi.is_disk_image(image) and not image.writable
    assert kwargs["metadata"]["channel"] == 0
    assert kwargs["name"] == "stack"
    assert kwargs["multiscale"] is True and kwargs["rgb"] is False
    assert kwargs["axis_labels"] == ("z", "y", "x")
    # sampled from the coarsest level: what napari shows first
    coarsest = data[:, ::4, ::4]
    assert kwargs["contrast_limits"] == (coarsest.min(), coarsest.max())
    assert coarsest.max() > data.max() - 5
    np.testing.assert_array_equal(np.asarray(levels[1][2]), data[2, ::2, ::2])


def test_raw_with_geometry_in_its_name_opens(data_dir):
    data = _planes(3, 20, 30)
    path = data_dir / "porous_30x20x3_UInt16.raw"
    data.tofile(path)
    reader = napari_get_reader(str(path))
    [(levels, kwargs, _)] = reader(str(path))
    assert kwargs["name"] == "porous_30x20x3_UInt16"
    np.testing.assert_array_equal(np.asarray(levels[0]), data)


def test_several_paths_and_upper_case_suffixes(data_dir):
    a, b = data_dir / "A.TIF", data_dir / "b.tiff"
    tifffile.imwrite(a, np.zeros((5, 6), np.uint8))
    tifffile.imwrite(b, np.ones((5, 6), np.uint8))
    reader = napari_get_reader([str(a), str(b)])
    layers = reader([str(a), str(b)])
    assert [kw["name"] for _, kw, _ in layers] == ["A", "b"]


def test_opening_reads_only_a_bounded_sample(big_tiff):
    path, _ = big_tiff
    reader = napari_get_reader(str(path))
    [(_, kwargs, _)] = reader(str(path))
    image = kwargs["metadata"]["disk_image"]
    assert 0 < image.bytes_read <= 16 << 20
    assert kwargs["contrast_limits"][1] >= 1100  # planes 0..11 all sampled
    assert kwargs["contrast_limits"][0] == 0


def test_channels_become_layers_and_scale_comes_from_the_file(data_dir):
    data = np.zeros((3, 2, 40, 50), np.uint16)  # z, c, y, x
    for c in range(2):
        data[:, c] = 1000 * (c + 1)
    data[0, :, 0, 0] = 5
    path = data_dir / "cells.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.5),
        metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "um"},
    )
    layers = napari_get_reader(str(path))(str(path))
    assert [kw["name"] for _, kw, _ in layers] == ["cells [c0]", "cells [c1]"]
    for c, (levels, kwargs, _) in enumerate(layers):
        assert kwargs["scale"] == pytest.approx((2.0, 0.5, 0.25))
        assert kwargs["axis_labels"] == ("z", "y", "x")
        assert kwargs["units"] == ("um", "um", "um")
        assert kwargs["metadata"]["channel"] == c
        assert kwargs["contrast_limits"] == (5.0, 1000.0 * (c + 1))
        assert kwargs["blending"] == "additive"
        np.testing.assert_array_equal(np.asarray(levels[0]), data[:, c])
    assert layers[0][1]["colormap"] != layers[1][1]["colormap"]


def test_time_series_keeps_t_and_z():
    data = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 1, 3, 4, 5)
    with ndi.copy(data) as image:
        [(levels, kwargs, _)] = disk_image_layers(image, name="movie")
        assert kwargs["axis_labels"] == ("t", "z", "y", "x")
        assert kwargs["scale"] == (1.0, 1.0, 1.0, 1.0)
        np.testing.assert_array_equal(np.asarray(levels[0]), data[:, 0])


# --- in napari ----------------------------------------------------------------
def _screen_ok(shot: np.ndarray) -> None:
    """The canvas shows an image: neither blank nor saturated."""
    gray = shot[..., :3].mean(axis=-1)
    assert gray.std() > 20, "the canvas is flat: nothing is shown"
    assert (gray >= 250).mean() < 0.3, "the canvas is mostly white: saturated"


def _expected_tile(layer, file_plane: np.ndarray) -> np.ndarray:
    """What napari should show of ``file_plane`` at its current data level."""
    factor = layer.data[layer.data_level].factor
    (y0, x0), (y1, x1) = layer.corner_pixels[:, -2:]
    return file_plane[::factor, ::factor][y0 : y1 + 1, x0 : x1 + 1]


@pytest.mark.gui
def test_viewer_opens_tiff_lazily_and_steps_through_z(
    make_napari_viewer, qtbot, big_tiff
):
    path, shape = big_tiff
    viewer = make_napari_viewer(show=True)
    [layer] = viewer.open(path, plugin=PLUGIN)
    image = layer.metadata["disk_image"]
    assert layer.multiscale and len(layer.data) == 3
    low, high = layer.contrast_limits  # the data span 0..1189
    assert low == 0 and 1100 <= high <= 1189
    # the sample and the visible plane at a coarse level, not the 96 MiB
    assert image.bytes_read <= (16 << 20) + shape[1] * shape[2] * 2
    file = tifffile.memmap(path, mode="r")
    try:
        for z in (0, 5, 11):
            viewer.dims.set_current_step(0, z)
            shown = layer._slice.image.raw
            np.testing.assert_array_equal(shown, _expected_tile(layer, file[z]))
        viewer.scene.camera.zoom = 4  # zoom in: full resolution, a corner only
        qtbot.waitUntil(lambda: layer.data_level == 0, timeout=3000)
        viewer.dims.set_current_step(0, 7)
        assert layer.data_level == 0
        shown = layer._slice.image.raw
        assert shown.shape[0] < shape[1] and shown.shape[1] < shape[2]
        np.testing.assert_array_equal(shown, _expected_tile(layer, file[7]))
    finally:
        del file
    assert image.bytes_read < 40 << 20


@pytest.mark.gui
def test_screenshot_after_open_shows_the_image(make_napari_viewer, stack_tiff):
    path, _ = stack_tiff
    viewer = make_napari_viewer(show=True)
    viewer.open(path, plugin=PLUGIN)
    _screen_ok(viewer.screenshot(canvas_only=True, flash=False))


@pytest.mark.gui
def test_viewer_opens_raw_by_name(make_napari_viewer, data_dir):
    data = _planes(3, 97, 125)
    path = data_dir / "porous_125x97x3_UInt16.raw"
    data.tofile(path)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin=PLUGIN)
    assert layer.multiscale
    viewer.dims.set_current_step(0, 2)
    np.testing.assert_array_equal(layer._slice.image.raw, data[2])


@pytest.mark.gui
def test_written_pixel_shows_after_refresh_at_every_level(make_napari_viewer):
    viewer = make_napari_viewer()
    image = ndi.copy(_planes(3, 700, 1100))
    for data, kwargs, _ in disk_image_layers(image, name="copy"):
        layer = viewer.add_image(data, **kwargs)
    viewer.dims.set_current_step(0, 1)
    for level in range(len(layer.data)):
        layer.locked_data_level = level
        value = 4000 + level
        image.write_pixel(value, x=400, y=200, z=1)
        layer.refresh()
        factor = layer.data[level].factor
        (y0, x0), _ = layer.corner_pixels[:, -2:]
        shown = layer._slice.image.raw
        assert shown[200 // factor - y0, 400 // factor - x0] == value
        assert (shown == value).sum() == 1


@pytest.mark.gui
def test_3d_view_reads_the_coarsest_level_only(make_napari_viewer, big_tiff):
    path, shape = big_tiff
    viewer = make_napari_viewer(show=True)
    [layer] = viewer.open(path, plugin=PLUGIN)
    image = layer.metadata["disk_image"]
    before = image.bytes_read
    viewer.dims.ndisplay = 3
    read_3d = image.bytes_read - before
    shown = layer._slice.image.raw
    assert shown.shape == layer.data[-1].shape == (12, 512, 512)
    file = tifffile.memmap(path, mode="r")
    try:
        np.testing.assert_array_equal(shown, file[:, ::4, ::4])
    finally:
        del file
    # Every 4th row of each plane, read whole, once (napari asks twice, for
    # the view and the thumbnail; the plane cache answers the second): a
    # quarter of the file here, 1/8 for a 4 GiB volume whose coarsest level
    # is strided by 8.
    assert read_3d <= 12 * 512 * 2048 * 2
    assert image.bytes_read < np.prod(shape) * 2
    _screen_ok(viewer.screenshot(canvas_only=True, flash=False))


@pytest.mark.gui
def test_removing_a_scratch_layer_deletes_its_file(make_napari_viewer, disk_image_dir):
    viewer = make_napari_viewer(show=True)
    image = ndi.copy(_planes(2, 600, 700))
    scratch = image.path
    for data, kwargs, _ in disk_image_layers(image, name="copy"):
        viewer.add_image(data, **kwargs)
    viewer.dims.ndisplay = 3  # slice and render it in 2D and 3D
    viewer.dims.ndisplay = 2
    viewer.screenshot(canvas_only=True, flash=False)
    del image, data, kwargs
    assert scratch.exists()
    viewer.layers.select_all()
    viewer.layers.remove_selected()
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    gc.collect()
    assert not scratch.exists(), "the layer's disk image is still referenced"
    assert not list(disk_image_dir.glob("ndi-*"))


@pytest.mark.gui
def test_reader_preference_makes_it_napari_default_for_tif(
    make_napari_viewer, stack_tiff
):
    """What README tells users: settings.plugins.extension2reader."""
    from napari.errors import MultipleReaderError
    from napari.settings import get_settings

    path, _ = stack_tiff
    viewer = make_napari_viewer()
    settings = get_settings()
    old = dict(settings.plugins.extension2reader)
    settings._save_on_change = False  # leave the user's settings file alone
    try:
        # without a preference napari's own TIFF reader competes with ours
        # (plugin=None is what drag-and-drop, File > Open and `napari
        # file.tif` use; viewer.open's default is plugin="napari")
        settings.plugins.extension2reader = {}
        with pytest.raises(MultipleReaderError):
            viewer.open(path, plugin=None)
        settings.plugins.extension2reader = {"*.tif": PLUGIN, "*.tiff": PLUGIN}
        [layer] = viewer.open(path, plugin=None)
        assert layer.multiscale
        assert isinstance(layer.data[0], DisplayLevel)
        assert layer.source.reader_plugin == PLUGIN
    finally:
        settings.plugins.extension2reader = old
        settings._save_on_change = True


@pytest.mark.gui
def test_declined_raw_tells_the_user_about_open_raw(make_napari_viewer, data_dir):
    from napari.utils.notifications import notification_manager

    path = data_dir / "scan.raw"
    path.write_bytes(bytes(100))
    viewer = make_napari_viewer()
    shown = []
    notification_manager.notification_ready.connect(shown.append)
    try:
        with pytest.raises(ValueError):  # npe2: the reader refused the file
            viewer.open(path, plugin=PLUGIN)
    finally:
        notification_manager.notification_ready.disconnect(shown.append)
    [note] = [n for n in shown if "scan.raw" in str(n.message)]
    assert "Open RAW" in str(note.message)


# --- pyramidal, colour and multi-series TIFFs -----------------------------------
def _pyramid_tiff(path, base: np.ndarray) -> list[np.ndarray]:
    """A tiled, compressed pyramidal TIFF whose stored level k is marked +1000 k."""
    levels = [base] + [base[:: 2**k, :: 2**k] + np.uint16(1000 * k) for k in (1, 2)]
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], subifds=2, tile=(256, 256), compression="zlib")
        for level in levels[1:]:
            tw.write(level, subfiletype=1, tile=(256, 256), compression="zlib")
    return levels


def _rgb(ny: int, nx: int, dtype=np.uint8, samples: int = 3) -> np.ndarray:
    y, x = np.ogrid[:ny, :nx]
    out = np.zeros((ny, nx, samples), dtype)
    out[..., 0] = (x * 255 // nx).astype(dtype)  # red grows to the right
    out[..., 1] = (y * 255 // ny).astype(dtype)  # green grows downwards
    out[..., 2] = 40
    if samples == 4:
        out[..., 3] = np.iinfo(dtype).max
    return out


def test_rgb_tiff_is_one_colour_layer(data_dir):
    rgb = _rgb(700, 1100)
    path = data_dir / "photo.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", compression="zlib")
    [(levels, kwargs, _)] = napari_get_reader(str(path))(str(path))
    assert kwargs["name"] == "photo" and kwargs["rgb"] is True
    assert kwargs["contrast_limits"] == (0.0, 255.0)
    assert kwargs["metadata"]["channel"] is None
    assert kwargs["axis_labels"] == ("y", "x")
    assert [lv.shape for lv in levels] == [(700, 1100, 3), (350, 550, 3), (175, 275, 3)]
    np.testing.assert_array_equal(np.asarray(levels[2]), rgb[::4, ::4])
    np.testing.assert_array_equal(
        np.asarray(levels[0][300:310, 20:25]), rgb[300:310, 20:25]
    )


def test_rgba_uint16_limits_span_the_colours_not_alpha(data_dir):
    rgba = _rgb(300, 400, np.uint16, samples=4) * np.uint16(4)  # 0..1020, alpha 65535
    rgba[..., 3] = 65535
    path = data_dir / "rgba.tif"
    tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"])
    [(levels, kwargs, _)] = napari_get_reader(str(path))(str(path))
    assert kwargs["rgb"] is True and levels[0].shape == (300, 400, 4)
    assert kwargs["contrast_limits"] == (0.0, float(rgba[..., :3].max()))


def test_multi_series_tiff_gives_one_layer_per_series(data_dir, caplog):
    a = _planes(1, 30, 40)[0]
    b = _planes(3, 50, 60)
    path = data_dir / "two.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(a, photometric="minisblack")
        tw.write(b, photometric="minisblack", metadata={"axes": "ZYX"})
    layers = napari_get_reader(str(path))(str(path))
    assert [kw["name"] for _, kw, _ in layers] == ["two [series 0]", "two [series 1]"]
    np.testing.assert_array_equal(np.asarray(layers[0][0][0]), a)
    np.testing.assert_array_equal(np.asarray(layers[1][0][0]), b)
    assert layers[1][1]["axis_labels"] == ("z", "y", "x")
    # a file written page by page may declare a series per page: the first
    many = data_dir / "pages.tif"
    with tifffile.TiffWriter(many) as tw:
        for z in range(MAX_SERIES_LAYERS + 1):
            tw.write(b[0] + np.uint16(z), photometric="minisblack")
    with caplog.at_level(logging.INFO, logger="napari_diskimage._napari.reader"):
        [(levels, kwargs, _)] = napari_get_reader(str(many))(str(many))
    assert kwargs["name"] == "pages"
    np.testing.assert_array_equal(np.asarray(levels[0]), b[0])
    assert f"{MAX_SERIES_LAYERS + 1} image series" in caplog.text
    # the levels of a pyramidal TIFF are not series of their own
    pyramid = data_dir / "pyramid.tif"
    _pyramid_tiff(pyramid, _planes(1, 1200, 1000)[0])
    [(levels, kwargs, _)] = napari_get_reader(str(pyramid))(str(pyramid))
    assert kwargs["name"] == "pyramid" and len(levels) == 3


@pytest.mark.gui
def test_viewer_shows_stored_levels_colour_and_series(make_napari_viewer, data_dir):
    viewer = make_napari_viewer(show=True)
    # a pyramidal TIFF: what is shown comes from its stored levels
    base = _planes(1, 2400, 2000)[0]
    path = data_dir / "pyramid.tif"
    stored = _pyramid_tiff(path, base)
    [layer] = viewer.open(path, plugin=PLUGIN)
    assert [lv.shape for lv in layer.data] == [
        (2400, 2000), (1200, 1000), (600, 500), (300, 250)
    ]  # fmt: skip
    for level in (1, 2):
        layer.locked_data_level = level
        np.testing.assert_array_equal(layer._slice.image.raw, stored[level])
    layer.locked_data_level = None
    viewer.layers.clear()
    # an RGB TIFF: one colour layer, in colour on screen
    rgb = _rgb(700, 1100)
    path = data_dir / "photo.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", compression="zlib", tile=(128, 128))
    [layer] = viewer.open(path, plugin=PLUGIN)
    assert layer.rgb and layer.multiscale and layer.ndim == 2
    assert tuple(layer.contrast_limits) == (0, 255)
    (y0, x0), (y1, x1) = layer.corner_pixels
    factor = 2**layer.data_level
    np.testing.assert_array_equal(
        layer._slice.image.raw, rgb[::factor, ::factor][y0 : y1 + 1, x0 : x1 + 1]
    )
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    shown = shot[shot.sum(axis=-1) > 60]  # the image, not the black canvas
    assert (shown[:, 0] - shown[:, 1]).std() > 30, "red and green do not vary apart"
    viewer.layers.clear()
    # a TIFF with two series: two layers
    path = data_dir / "two.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(_planes(1, 30, 40)[0], photometric="minisblack")
        tw.write(_planes(2, 30, 40), photometric="minisblack", metadata={"axes": "ZYX"})
    layers = viewer.open(path, plugin=PLUGIN)
    assert [lay.name for lay in layers] == ["two [series 0]", "two [series 1]"]
