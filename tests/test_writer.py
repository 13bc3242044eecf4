"""napari writers: File > Save Selected Layers streams disk images from their file."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from napari_diskimage._diskimage import DiskImage
from napari_diskimage._napari import writer as _writer


def test_write_tiff_streams_from_the_disk_image(data_dir, monkeypatch):
    data = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    with ndi.copy(data) as image:
        # Any attempt to load the whole image into memory fails the test.
        monkeypatch.setattr(
            DiskImage, "__array__", lambda *a, **k: pytest.fail("image loaded")
        )
        out = _writer.write_tiff(
            str(data_dir / "out.tif"),
            ["pyramid levels napari would pass"],
            {"name": "img", "multiscale": True, "metadata": {"disk_image": image}},
        )
        assert out == [str(data_dir / "out.tif")]
        assert image.bytes_read == 0  # copied by the kernel, not through numpy
    np.testing.assert_array_equal(tifffile.imread(data_dir / "out.tif"), data)


def test_write_raw_of_one_channel(data_dir):
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # c,z,y,x
    with ndi.copy(data) as image:
        meta = {"metadata": {"disk_image": image, "channel": 1}}
        (path,) = _writer.write_raw(str(data_dir / "c1_5x4x3_Real32.raw"), None, meta)
    raw = np.fromfile(path, dtype="<f4").reshape(3, 4, 5)
    np.testing.assert_array_equal(raw, data[1])


def test_write_plain_layer_data(data_dir):
    data = np.random.default_rng(1).integers(0, 1000, (4, 6), dtype=np.int32)
    _writer.write_tiff(str(data_dir / "plain.tiff"), data, {"name": "plain"})
    np.testing.assert_array_equal(tifffile.imread(data_dir / "plain.tiff"), data)
    levels = [data, data[::2, ::2]]
    _writer.write_raw(str(data_dir / "ms.raw"), levels, {"multiscale": True})
    assert (data_dir / "ms.raw").read_bytes() == data.astype("<i4").tobytes()


def test_write_errors_name_the_file(data_dir):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _writer.write_tiff(str(data_dir / "nowhere" / "x.tif"), np.zeros((2, 2)), {})
    with pytest.raises(ValueError, match="RGB layer 'photo'"):
        _writer.write_tiff(
            str(data_dir / "x.tif"),
            np.zeros((2, 2, 3), np.uint8),
            {"rgb": True, "name": "photo"},
        )
    assert list(data_dir.iterdir()) == []


@pytest.mark.gui
def test_save_selected_layers_uses_the_plugin(make_napari_viewer, data_dir):
    from napari_diskimage._qt import add_disk_image

    viewer = make_napari_viewer()
    data = np.arange(2 * 16 * 24, dtype=np.uint8).reshape(2, 16, 24)
    image = ndi.copy(data)
    (layer,) = add_disk_image(viewer, image, "vol")
    viewer.layers.selection = {layer}
    read_for_display = image.bytes_read
    saved = viewer.layers.save(
        str(data_dir / "vol.tif"), selected=True, plugin="napari-diskimage"
    )
    assert saved == [str(data_dir / "vol.tif")]
    np.testing.assert_array_equal(tifffile.imread(data_dir / "vol.tif"), data)
    assert image.bytes_read == read_for_display  # streamed file to file
    saved = viewer.layers.save(
        str(data_dir / "vol_24x16x2_UInt8.raw"),
        selected=True,
        plugin="napari-diskimage",
    )
    assert (data_dir / "vol_24x16x2_UInt8.raw").read_bytes() == data.tobytes()

    mem = viewer.add_image(np.full((5, 7), 3, np.uint16), name="mem")
    viewer.layers.selection = {mem}
    viewer.layers.save(
        str(data_dir / "mem.tif"), selected=True, plugin="napari-diskimage"
    )
    np.testing.assert_array_equal(tifffile.imread(data_dir / "mem.tif"), mem.data)
