"""OME-Zarr in napari: open a .zarr folder, Save as, Save Selected Layers."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import napari_diskimage as ndi
from _gui import config_dir  # noqa: F401  (autouse: no real settings)

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")

from napari_diskimage import _qt as w  # noqa: E402


@pytest.fixture
def viewer(make_napari_viewer):
    yield make_napari_viewer()
    w.cancel_all_jobs()  # no worker may outlive its viewer


def test_open_a_zarr_folder_shows_its_levels(viewer, data_dir):
    data = np.random.default_rng(0).integers(0, 999, (8, 600, 700), dtype=np.uint16)
    out = ndi.save_ome_zarr(data, data_dir / "scan.ome.zarr")
    (layer,) = viewer.open(str(out), plugin="napari-diskimage")
    assert layer.name == "scan"
    assert layer.multiscale
    assert [tuple(level.shape) for level in layer.data] == [
        (8, 600, 700),
        (4, 300, 350),
        (2, 150, 175),
    ]
    image = layer.metadata["disk_image"]
    assert image.kind == "zarr"
    np.testing.assert_array_equal(np.asarray(layer.data[0][3]), data[3])
    # the coarse levels are the store's averages, z included
    root = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(np.asarray(layer.data[2][1]), root["2"][1])


def test_save_as_and_save_selected_layers_write_ome_zarr(viewer, qtbot, data_dir):
    data = np.arange(4 * 40 * 50, dtype=np.uint16).reshape(4, 40, 50)
    image = ndi.copy(data)
    w.add_disk_image(viewer, image, "img")
    widget = w.SaveImage(viewer)
    widget.path.value = data_dir / "saved.ome.zarr"
    widget.save_button.native.click()
    qtbot.waitUntil(lambda: widget.job.done, timeout=20000)
    with ndi.open_zarr(data_dir / "saved.ome.zarr") as back:
        np.testing.assert_array_equal(back.array[0, 0], data)

    labels = viewer.add_labels((data % 3).astype(np.uint8), name="seg")
    viewer.layers.selection = {labels}
    saved = viewer.layers.save(
        str(data_dir / "seg.ome.zarr"), selected=True, plugin="napari-diskimage"
    )
    assert saved == [str(data_dir / "seg.ome.zarr")]
    root = zarr.open_group(str(data_dir / "seg.ome.zarr"), mode="r")
    np.testing.assert_array_equal(root["0"][:], data % 3)
    assert dict(root.attrs)["ome"]["multiscales"][0]["type"] == "mode"
