"""Sample volumes: the small porous one and the large one written to disk."""

from __future__ import annotations

import gc
import os
import tracemalloc

import numpy as np
import pytest

import napari_diskimage as ndi
from napari_diskimage._napari import samples as _samples
from napari_diskimage._napari.samples import (
    large_sample,
    large_sample_geometry,
    large_sample_path,
    parse_size,
    porosity_sample,
    porosity_volume,
)
from napari_diskimage.io.stream import BLOCK_BYTES_ENV


def test_porosity_volume_looks_like_a_porous_material():
    volume = porosity_volume()
    assert volume.shape == (47, 97, 125) and volume.dtype == np.uint16
    assert volume.min() >= 0 and volume.max() == 1255
    pores = volume < 550
    assert 0.2 < pores.mean() < 0.4  # about 30 % porosity
    # structured, not noise: neighbours are alike
    a, b = volume[:, :, :-1].ravel(), volume[:, :, 1:].ravel()
    assert np.corrcoef(a.astype(float), b.astype(float))[0, 1] > 0.7
    np.testing.assert_array_equal(porosity_volume(), volume)  # reproducible
    assert not np.array_equal(porosity_volume(seed=1), volume)


def test_porosity_sample_is_a_scratch_disk_image(disk_image_dir):
    [(levels, kwargs, layer_type)] = porosity_sample()
    image = kwargs["metadata"]["disk_image"]
    assert layer_type == "image" and kwargs["name"] == "porosity"
    assert image.is_scratch and image.writable
    assert image.path.parent == disk_image_dir
    np.testing.assert_array_equal(np.asarray(levels[0]), porosity_volume())
    assert kwargs["contrast_limits"][1] == 1255
    del levels, kwargs, image
    gc.collect()
    assert not list(disk_image_dir.glob("ndi-*"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GiB", 4 << 30),
        ("512MiB", 512 << 20),
        ("1.5G", 3 << 29),
        ("2GB", 2 * 10**9),
        ("64 k", 64 << 10),
        ("123", 123),
        (4096, 4096),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "4 GiBs", "-1G", "0", "", "1e3G"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_large_sample_geometry():
    assert large_sample_geometry("4GiB") == ndi.Geometry("uint16", 4096, 2048, 256)
    for size in ("8MiB", "1GiB", "20GiB"):
        g = large_sample_geometry(size)
        assert g.size_x == 2 * g.size_y
        assert 0.8 < g.nbytes / parse_size(size) < 1.25


def test_large_sample_is_written_once_then_reused(disk_image_dir):
    steps = []
    path = large_sample_path("8MiB", progress=lambda d, t: steps.append((d, t)))
    geometry = large_sample_geometry("8MiB")
    assert path.parent == disk_image_dir
    assert path.name == "synthetic_512x256x32_UInt16.tif"
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)
    assert steps[-1] == (geometry.nbytes, geometry.nbytes)
    with ndi.open_tiff(path) as image:
        assert image.geometry == geometry
        plane = image.load_plane(z=7)
    expected = _samples._SyntheticVolume(geometry)[0, 0, 7]
    np.testing.assert_array_equal(plane, expected)
    # both phases of a porous material: solid (bright) and pores (dark)
    assert 0.2 < (plane < 1300).mean() < 0.5

    stamp = os.stat(path).st_mtime_ns
    steps.clear()
    assert large_sample_path("8MiB", progress=lambda d, t: steps.append(d)) == path
    assert steps == [] and os.stat(path).st_mtime_ns == stamp

    os.truncate(path, 4096)  # damaged: written again
    large_sample_path("8MiB")
    with ndi.open_tiff(path) as image:
        np.testing.assert_array_equal(image.load_plane(z=7), expected)
    assert not [p for p in disk_image_dir.iterdir() if p.name.endswith(".part")]


def test_large_sample_is_streamed_with_bounded_memory(monkeypatch):
    monkeypatch.setenv(BLOCK_BYTES_ENV, str(1 << 20))  # 1 MiB blocks
    geometry = large_sample_geometry("32MiB")
    tracemalloc.start()
    try:
        large_sample_path("32MiB")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert geometry.nbytes > 30 << 20
    assert peak < 12 << 20, f"peak {peak / 2**20:.1f} MiB for 1 MiB blocks"


def test_large_sample_layers_open_the_file_lazily():
    [(levels, kwargs, _)] = large_sample("8MiB")
    image = kwargs["metadata"]["disk_image"]
    assert not image.is_scratch and not image.writable
    assert levels[0].shape == (32, 256, 512)
    assert image.bytes_read <= image.nbytes  # only the contrast sample
    low, high = kwargs["contrast_limits"]
    assert 200 <= low < 800 and 1800 < high <= 2600  # pores ~700, solid ~1900


@pytest.mark.gui
def test_porosity_sample_in_napari(make_napari_viewer, disk_image_dir):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-diskimage", "porosity")
    [layer] = viewer.layers
    assert layer.multiscale and layer.data.shapes[0] == (47, 97, 125)
    z = viewer.dims.current_step[0]
    np.testing.assert_array_equal(layer._slice.image.raw, porosity_volume()[z])
    gray = viewer.screenshot(canvas_only=True, flash=False)[..., :3].mean(axis=-1)
    assert gray.std() > 20 and (gray >= 250).mean() < 0.3
    scratch = layer.metadata["disk_image"].path
    assert scratch.exists()
    viewer.layers.remove(layer)
    del layer
    gc.collect()
    assert not scratch.exists()


@pytest.mark.gui
def test_porosity_sample_gets_the_porous_3d_rendering(make_napari_viewer, qtbot):
    """The sample is added by napari, not by our reader: its 3D view is
    still the attenuated MIP a porous volume needs (napari's MIP is flat)."""
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-diskimage", "porosity")
    [layer] = viewer.layers
    assert layer.rendering == "mip"  # nothing chosen before 3D
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: layer.rendering == "attenuated_mip", timeout=5000)


@pytest.mark.gui
def test_large_sample_in_napari(make_napari_viewer, monkeypatch):
    monkeypatch.setattr(_samples, "DEFAULT_LARGE_SIZE", 8 << 20)
    monkeypatch.setattr(large_sample, "__defaults__", (8 << 20,))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-diskimage", "large")
    [layer] = viewer.layers
    assert layer.data.shapes[0] == (32, 256, 512)
    z = viewer.dims.current_step[0]
    expected = _samples._SyntheticVolume(large_sample_geometry("8MiB"))[0, 0, z]
    np.testing.assert_array_equal(layer._slice.image.raw, expected)
