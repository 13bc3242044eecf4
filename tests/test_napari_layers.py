"""The Qt-free napari adapter: layer helpers without a viewer or Qt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import napari_diskimage as ndi
from napari_diskimage._napari import layers as L


def fake_layer(data, *, image=None, channel=None, labels=(), multiscale=False):
    return SimpleNamespace(
        name="layer",
        data=data,
        ndim=np.ndim(data[0] if multiscale else data),
        multiscale=multiscale,
        axis_labels=labels,
        metadata={"disk_image": image, "channel": channel} if image else {},
        rgb=False,
        world_to_data=lambda w: np.asarray(w),
    )


def test_the_adapter_imports_no_qt():
    code = (
        "import sys; import napari_diskimage._napari.layers, "
        "napari_diskimage._napari.reader, napari_diskimage._napari.writer;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_layer_axes_and_voxels():
    image = ndi.copy(np.zeros((2, 3, 4, 5), np.uint8))  # (c, z, y, x)
    layer = fake_layer(np.zeros((3, 4, 5)), image=image, channel=1)
    assert L.layer_axes(layer) == ("z", "y", "x")  # c is the layer's channel
    assert L.data_voxel(layer, (2.4, 0.6, 4.49)) == {
        "t": 0, "c": 1, "z": 2, "y": 1, "x": 4
    }  # fmt: skip
    assert L.image_sizes(layer) == {"t": 1, "c": 2, "z": 3, "y": 4, "x": 5}
    plain = fake_layer(np.zeros((6, 7)), labels=("y", "x"))
    assert L.layer_axes(plain) == ("y", "x")
    assert L.image_sizes(plain)["x"] == 7
    image.close()


def test_parse_value_and_default_stride():
    assert L.parse_value(" 12 ") == 12 and L.parse_value("1.5") == 1.5
    with pytest.raises(ValueError, match="'abc' is not a number"):
        L.parse_value("abc")
    assert L.default_stride(4096, 2048) == 4
    assert L.default_stride(100, 100) == 1


def test_describe_layer_in_memory_and_on_disk():
    mem = fake_layer(np.zeros((4, 5), np.uint16))
    text = L.describe_layer(mem)
    assert "disk image: no" in text and "40 B" in text
    image = ndi.copy(np.zeros((4, 5), np.uint16))
    on_disk = fake_layer(np.zeros((4, 5)), image=image)
    text = L.describe_layer(on_disk)
    assert "disk image: yes" in text and str(image.path) in text
    assert "scratch" in text
    image.close()
    assert "closed" in L.describe_layer(on_disk)


def test_folder_warnings_without_a_viewer(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "mount_fstype", lambda folder: "tmpfs")
    viewer = SimpleNamespace(layers=[])
    [warning] = L.folder_warnings(Path(tmp_path), viewer)
    assert "in RAM (tmpfs)" in warning


def test_layer_source_and_copy_source():
    image = ndi.copy(np.zeros((2, 4, 5), np.uint8))
    attributes = {"metadata": {"disk_image": image, "channel": None}}
    assert L.layer_source(None, attributes) is image
    layer = fake_layer(np.zeros((4, 5)), image=image)
    assert L.copy_source(layer) is image
    rgb = SimpleNamespace(rgb=True, name="photo")
    with pytest.raises(ValueError, match="RGB"):
        L.copy_source(rgb)
    image.close()
