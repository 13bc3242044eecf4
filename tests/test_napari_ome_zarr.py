"""Our OME-Zarr stores open in napari through napari-ome-zarr, the reader
napari users have for OME-Zarr; and with both plugins installed, napari's
reader preference picks one for ``*.zarr`` (they never both claim a path)."""

from __future__ import annotations

import numpy as np
import pytest

import napari_diskimage as ndi
from _gui import config_dir  # noqa: F401  (autouse: no real settings)
from napari_diskimage import process

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")
pytest.importorskip("napari_ome_zarr")

THEIRS, OURS = "napari-ome-zarr", "napari-diskimage"


@pytest.fixture
def scan(data_dir):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 1000, (8, 600, 700), dtype=np.uint16)
    with ndi.copy(data) as image:
        image.spacing, image.unit = (2.0, 0.5, 0.5), "um"
        yield data, image


def _shapes(layer):
    return [tuple(level.shape) for level in layer.data]


def test_a_saved_store_opens_with_its_levels_scale_and_labels(
    make_napari_viewer, scan, data_dir
):
    data, image = scan
    seg = (data > 500).astype(np.uint8)
    out = ndi.save_ome_zarr(image, data_dir / "scan.ome.zarr", labels={"seg": seg})
    viewer = make_napari_viewer()
    layers = viewer.open(str(out), plugin=THEIRS)
    kinds = {type(layer).__name__: layer for layer in layers}
    assert set(kinds) == {"Image", "Labels"}
    levels = [(8, 600, 700), (8, 300, 350), (8, 150, 175)]  # z: spacing 2 > 1
    for layer in layers:
        assert layer.multiscale and _shapes(layer) == levels
        np.testing.assert_allclose(layer.scale[-3:], (2.0, 0.5, 0.5))
    np.testing.assert_array_equal(np.asarray(kinds["Image"].data[0]), data)
    np.testing.assert_array_equal(np.asarray(kinds["Labels"].data[0]), seg)


def test_a_processing_result_opens_as_labels(make_napari_viewer, scan, data_dir):
    _, image = scan
    mask = process.threshold(image, low=990)
    labels = process.label(mask, out=data_dir / "pores.ome.zarr")
    expected = np.asarray(labels)[0, 0]
    labels.close()
    mask.close()
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(data_dir / "pores.ome.zarr"), plugin=THEIRS)
    assert type(layer).__name__ == "Labels"
    assert _shapes(layer) == [(8, 600, 700), (8, 300, 350), (8, 150, 175)]
    np.testing.assert_allclose(layer.scale[-3:], (2.0, 0.5, 0.5))
    np.testing.assert_array_equal(np.asarray(layer.data[0]), expected)


def test_the_reader_preference_picks_one_plugin_for_zarr(
    make_napari_viewer, scan, data_dir
):
    from napari.errors import MultipleReaderError
    from napari.settings import get_settings

    _, image = scan
    out = ndi.save_ome_zarr(image, data_dir / "scan.ome.zarr")
    viewer = make_napari_viewer()
    settings = get_settings()
    old = dict(settings.plugins.extension2reader)
    settings._save_on_change = False  # leave the user's settings file alone
    try:
        settings.plugins.extension2reader = {}
        with pytest.raises(MultipleReaderError):  # napari asks: both can
            viewer.open(str(out), plugin=None)
        for plugin in (OURS, THEIRS):
            settings.plugins.extension2reader = {"*.zarr/": plugin}  # a folder
            (layer,) = viewer.open(str(out), plugin=None)
            assert layer.source.reader_plugin == plugin
            assert layer.multiscale and len(layer.data) == 3
    finally:
        settings.plugins.extension2reader = old
        settings._save_on_change = True
