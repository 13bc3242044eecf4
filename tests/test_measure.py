"""napari_diskimage.measure against skimage, cc3d and marching cubes, and the
``measure`` / ``porosity`` commands.

Volumes are cut into small blocks (``block_shape``) so that objects cross
block borders in every axis; each test checks that they do.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage
from skimage.measure import marching_cubes, mesh_surface_area, regionprops_table

import napari_diskimage as ndi
from _arrays import cancel_at_first_step, local_cluster
from _memcap import run_capped, unavailable_reason
from napari_diskimage import measure
from napari_diskimage._cli import main

SKIMAGE = [
    "label",
    "area",
    "num_pixels",
    "bbox",
    "area_bbox",
    "extent",
    "centroid",
    "centroid_weighted",
    "equivalent_diameter_area",
    "inertia_tensor",
    "inertia_tensor_eigvals",
    "axis_major_length",
    "axis_minor_length",
    "intensity_mean",
    "intensity_min",
    "intensity_max",
    "intensity_std",
]
BLOCK = (7, 5, 3)  # x, y, z


def porous(shape, seed=0, fraction=0.25, dtype=np.uint32):
    """Labels of a porous-like volume (blobs of a smoothed random field)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), 1.5)
    labels, _n = ndimage.label(field > np.quantile(field, 1 - fraction))
    intensity = (field * 4000 + rng.normal(0, 50, shape)).astype(np.float32)
    return labels.astype(dtype), intensity


def crosses_blocks(labels, block_zyx):
    """Number of objects whose box spans more than one block."""
    slices = ndimage.find_objects(labels)
    crossing = 0
    for s in slices:
        if s is None:
            continue
        for sl, b in zip(s, block_zyx, strict=True):
            if sl.start // b != (sl.stop - 1) // b:
                crossing += 1
                break
    return crossing


def skimage_table(labels, intensity, props, spacing=None):
    """skimage's table; a float32 intensity as float64 (skimage sums float32
    in float32, measure in float64: 1e-7 apart)."""
    if intensity is not None and intensity.dtype.kind == "f":
        intensity = intensity.astype(np.float64)
    return regionprops_table(labels, intensity, properties=props, spacing=spacing)


def assert_table_equal(ours, ref):
    assert list(ours.columns) == list(ref.keys())
    for key, values in ref.items():
        np.testing.assert_allclose(
            ours[key].to_numpy(dtype=np.float64),
            np.asarray(values, dtype=np.float64),
            rtol=1e-9,
            atol=1e-9,
            err_msg=key,
        )


@pytest.mark.parametrize("spacing", [None, (2.0, 0.5, 1.25)])
def test_every_property_equals_skimage_in_3d(spacing):
    labels, intensity = porous((18, 26, 33))
    assert crosses_blocks(labels, BLOCK[::-1]) > 3
    ref = skimage_table(labels, intensity, SKIMAGE, spacing)
    ours = measure.regionprops_table(
        labels, intensity, SKIMAGE, spacing=spacing, block_shape=BLOCK
    )
    assert len(ours) == len(ref["label"]) > 5
    assert_table_equal(ours, ref)


@pytest.mark.parametrize("spacing", [None, (0.7, 1.9)])
def test_every_property_equals_skimage_in_2d(spacing):
    labels, intensity = porous((1, 60, 70), seed=3)
    labels, intensity = labels[0], intensity[0].astype(np.uint16)
    assert crosses_blocks(labels, (5, 7)) > 3
    ref = skimage_table(labels, intensity, SKIMAGE, spacing)
    ours = measure.regionprops_table(
        labels, intensity, SKIMAGE, spacing=spacing, block_shape=(7, 5, 1)
    )
    assert "bbox-3" in ours and "bbox-4" not in ours
    assert_table_equal(ours, ref)


def test_a_disk_image_gives_the_table_of_the_array(data_dir):
    labels, intensity = porous((12, 30, 40), seed=5, dtype=np.uint16)
    tifffile.imwrite(data_dir / "labels.tif", labels)
    tifffile.imwrite(data_dir / "image.tif", intensity)
    props = ["label", "area", "bbox", "centroid", "intensity_mean"]
    with (
        ndi.open_tiff(data_dir / "labels.tif") as lab,
        ndi.open_tiff(data_dir / "image.tif") as img,
    ):
        ours = measure.regionprops_table(lab, img, props, block_shape=(16, 8, 5))
    assert_table_equal(ours, skimage_table(labels, intensity, props))


def test_sparse_ids_near_2_to_the_32_are_measured_without_a_table_by_id():
    labels, intensity = porous((10, 24, 30), seed=7)
    ids = np.unique(labels[labels > 0])
    rng = np.random.default_rng(1)
    new = np.sort(rng.choice(2**32 - 1 - 10**6, ids.size, replace=False)) + 10**6
    new[-1] = 2**32 - 1
    huge = np.zeros_like(labels)
    huge[labels > 0] = new[np.searchsorted(ids, labels[labels > 0])].astype(np.uint32)
    props = ["label", "area", "bbox", "centroid", "intensity_max"]
    ours = measure.regionprops_table(huge, intensity, props, block_shape=BLOCK)
    ref = skimage_table(labels, intensity, props)
    ref["label"] = new  # same objects, same order (the map keeps the order)
    assert ours["label"].max() == 2**32 - 1
    assert_table_equal(ours, ref)


def test_uint64_ids_above_2_to_the_63_stay_exact():
    labels = np.zeros((4, 6, 8), dtype=np.uint64)
    labels[0:2, 0:3, 0:4] = 2**64 - 1
    labels[2:4, 3:6, 4:8] = 2**63 + 5
    table = measure.regionprops_table(
        labels, None, ["label", "area"], block_shape=(3, 3, 3)
    )
    assert [int(v) for v in table["label"]] == [2**63 + 5, 2**64 - 1]
    assert table["area"].tolist() == [24.0, 24.0]


def test_signed_labels_negative_values_are_background_as_in_skimage():
    labels, intensity = porous((12, 20, 25), seed=9, dtype=np.int16)
    labels[labels % 3 == 0] *= -1  # a third of the objects negative
    props = ["label", "area", "centroid", "intensity_mean"]
    ours = measure.regionprops_table(labels, intensity, props, block_shape=BLOCK)
    ref = skimage_table(labels, intensity, props)
    assert (ours["label"] > 0).all()
    assert_table_equal(ours, ref)


@pytest.mark.parametrize("spacing", [None, (1.5, 0.75, 1.0)])
def test_surface_area_is_the_marching_cubes_area_of_the_whole_object(spacing):
    labels, _ = porous((16, 22, 27), seed=11)
    props = ["label", "area", "surface_area", "sphericity", "touches_border"]
    ours = measure.regionprops_table(
        labels, None, props, spacing=spacing, block_shape=(6, 5, 4)
    )
    assert crosses_blocks(labels, (4, 5, 6)) > 3
    step = (1.0, 1.0, 1.0) if spacing is None else spacing
    shape = np.array(labels.shape)
    for _, row in ours.iterrows():
        mask = np.pad(labels == row["label"], 1).astype(np.float64)
        verts, faces, _, _ = marching_cubes(mask, 0.5, spacing=step)
        area = mesh_surface_area(verts, faces)
        # marching_cubes works in float32: its area is good to ~1e-7
        assert row["surface_area"] == pytest.approx(area, rel=1e-6)
        volume = row["area"]
        expected = np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area
        assert row["sphericity"] == pytest.approx(expected, rel=1e-6)
        coords = np.argwhere(labels == row["label"])
        cut = (coords.min(0) == 0).any() or (coords.max(0) == shape - 1).any()
        assert row["touches_border"] == cut


def test_a_ball_has_a_sphericity_near_one():
    zz, yy, xx = np.mgrid[-20:21, -20:21, -20:21]
    ball = ((zz**2 + yy**2 + xx**2) <= 18**2).astype(np.uint8)
    table = measure.regionprops_table(
        ball, None, ["sphericity", "touches_border"], block_shape=(16, 16, 16)
    )
    assert 0.9 < table["sphericity"][0] <= 1.0
    assert not table["touches_border"][0]


def test_counts_boxes_and_centroids_equal_cc3d_statistics():
    cc3d = pytest.importorskip("cc3d")
    labels, _ = porous((14, 25, 31), seed=13)
    stats = cc3d.statistics(labels)
    ours = measure.regionprops_table(
        labels, None, ["label", "num_pixels", "bbox", "centroid"], block_shape=BLOCK
    )
    present = stats["voxel_counts"] > 0
    present[0] = False
    np.testing.assert_array_equal(ours["label"], np.flatnonzero(present))
    np.testing.assert_array_equal(ours["num_pixels"], stats["voxel_counts"][present])
    np.testing.assert_allclose(
        ours[["centroid-0", "centroid-1", "centroid-2"]].to_numpy(),
        stats["centroids"][present],
    )
    boxes = stats["bounding_boxes"]
    starts = [[s.start for s in boxes[i]] for i in np.flatnonzero(present)]
    np.testing.assert_array_equal(ours[["bbox-0", "bbox-1", "bbox-2"]], starts)


def test_porosity_and_profile_are_the_fractions_of_nonzero_voxels():
    labels, _ = porous((9, 21, 23), seed=17, dtype=np.uint8)
    mask = labels > 0
    assert measure.porosity(mask, block_shape=BLOCK) == pytest.approx(mask.mean())
    for axis in (0, 1, 2):
        np.testing.assert_allclose(
            measure.porosity_profile(mask, axis, block_shape=BLOCK),
            mask.mean(axis=tuple(a for a in range(3) if a != axis)),
        )
    np.testing.assert_allclose(
        measure.porosity_profile(mask[4], 1), mask[4].mean(axis=0)
    )
    with pytest.raises(ValueError, match="axis 3 does not exist"):
        measure.porosity_profile(mask, 3)


@pytest.mark.slow
def test_a_distributed_cluster_measures_in_its_workers(data_dir):
    """Workers of a LocalCluster read the blocks of the file themselves and
    send back partial tables only."""
    pytest.importorskip("distributed")
    from napari_diskimage import process

    labels, intensity = porous((10, 24, 30), seed=37, dtype=np.uint16)
    tifffile.imwrite(data_dir / "labels.tif", labels)
    tifffile.imwrite(data_dir / "image.tif", intensity)
    props = ["label", "area", "centroid", "intensity_mean", "surface_area"]
    with (
        ndi.open_tiff(data_dir / "labels.tif") as lab,
        ndi.open_tiff(data_dir / "image.tif") as img,
        local_cluster(),
    ):
        here = process.stats()["bytes_read"]
        table = measure.regionprops_table(lab, img, props, block_shape=BLOCK)
        assert process.stats()["bytes_read"] == here  # nothing read here
    expected = measure.regionprops_table(labels, intensity, props, block_shape=BLOCK)
    pd.testing.assert_frame_equal(table, expected)


# --- bad input ------------------------------------------------------------------
def test_bad_input_is_refused_with_a_clear_message():
    labels, intensity = porous((6, 10, 12), seed=19)
    with pytest.raises(TypeError, match="labels must be integers"):
        measure.regionprops_table(labels.astype(np.float32))
    with pytest.raises(ValueError, match="3 channels"):
        measure.regionprops_table(np.zeros((3, 4, 5, 6), np.uint8))
    with pytest.raises(ValueError, match="must have the same sizes"):
        measure.regionprops_table(labels, intensity[:, :, :5], ["intensity_mean"])
    with pytest.raises(ValueError, match="known: label, area") as info:
        measure.regionprops_table(labels, None, ["label", "volume"])
    assert "'volume'" in str(info.value)
    assert "surface_area" in str(info.value)
    with pytest.raises(ValueError, match="need an intensity image"):
        measure.regionprops_table(labels, None, ["intensity_mean"])
    with pytest.raises(ValueError, match="perimeter"):
        measure.regionprops_table(labels[0], None, ["surface_area"])
    with pytest.raises(ValueError, match="spacing must be 3 positive"):
        measure.regionprops_table(labels, None, ["area"], spacing=(1, 0, 1))


def test_empty_labels_give_an_empty_table_with_the_columns():
    table = measure.regionprops_table(
        np.zeros((5, 6, 7), np.uint16), None, ["label", "bbox", "centroid"]
    )
    assert len(table) == 0
    assert list(table.columns) == ["label"] + [f"bbox-{i}" for i in range(6)] + [
        f"centroid-{i}" for i in range(3)
    ]


def test_cancel_from_progress_stops_the_measure():
    labels, _ = porous((12, 20, 25), seed=21)
    calls: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        measure.regionprops_table(
            labels, None, ["area"], block_shape=BLOCK,
            progress=cancel_at_first_step(calls),
        )  # fmt: skip
    assert calls and calls[-1] < labels.nbytes


# --- the command line -----------------------------------------------------------
def test_measure_command_writes_the_python_table(data_dir, capsys):
    labels, intensity = porous((10, 22, 26), seed=23, dtype=np.uint16)
    tifffile.imwrite(data_dir / "labels.tif", labels)
    tifffile.imwrite(data_dir / "image.tif", intensity)
    props = ["label", "area", "bbox", "centroid", "intensity_mean", "surface_area"]
    out = data_dir / "table.csv"
    code = main(
        ["measure", str(data_dir / "labels.tif"), "--intensity",
         str(data_dir / "image.tif"), "--properties", *props,
         "--spacing", "2", "1", "0.5", "-o", str(out)]
    )  # fmt: skip
    assert code == 0
    assert f"({labels.max()} objects)" in capsys.readouterr().err
    written = pd.read_csv(out)
    expected = measure.regionprops_table(labels, intensity, props, spacing=(2, 1, 0.5))
    pd.testing.assert_frame_equal(written, expected, check_dtype=False, rtol=1e-12)


def test_measure_command_bad_input_exits_with_a_message_and_no_csv(data_dir, capsys):
    labels, intensity = porous((6, 12, 14), seed=29, dtype=np.uint16)
    tifffile.imwrite(data_dir / "labels.tif", labels)
    tifffile.imwrite(data_dir / "float.tif", intensity)
    tifffile.imwrite(data_dir / "small.tif", intensity[:, :5])
    out = data_dir / "table.csv"
    lab = str(data_dir / "labels.tif")
    assert main(["measure", str(data_dir / "float.tif"), "-o", str(out)]) == 1
    assert "labels must be integers" in capsys.readouterr().err
    small = str(data_dir / "small.tif")
    args = ["measure", lab, "--intensity", small, "--properties", "intensity_mean"]
    assert main([*args, "-o", str(out)]) == 1
    assert "same sizes" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["measure", lab, "--properties", "volume", "-o", str(out)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'volume'" in capsys.readouterr().err
    missing = data_dir / "no-such-folder" / "table.csv"
    assert main(["measure", lab, "-o", str(missing)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "float.tif",
        "labels.tif",
        "small.tif",
    ]


def test_porosity_command_prints_the_porosity_and_profile(data_dir, capsys):
    labels, _ = porous((7, 15, 18), seed=31, dtype=np.uint8)
    mask = (labels > 0).astype(np.uint8)
    tifffile.imwrite(data_dir / "mask.tif", mask)
    assert main(["porosity", str(data_dir / "mask.tif")]) == 0
    assert float(capsys.readouterr().out) == pytest.approx(mask.mean(), rel=1e-5)
    assert main(["porosity", str(data_dir / "mask.tif"), "--profile", "0"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines[0] == "slice,porosity"
    values = [float(line.split(",")[1]) for line in lines[1:]]
    np.testing.assert_allclose(values, mask.mean(axis=(1, 2)), rtol=1e-5)
    assert main(["porosity", str(data_dir / "mask.tif"), "--profile", "4"]) == 1
    assert "axis 4 does not exist" in capsys.readouterr().err


# --- out of core ------------------------------------------------------------------
CAP = 256 << 20
SHAPE = (96, 1024, 2048)  # uint32: 768 MiB, 3 x the cap
CUBE = (8, 16, 32)

CAPPED = textwrap.dedent(
    """
    import sys, numpy as np
    import napari_diskimage as ndi
    from napari_diskimage import measure
    img = ndi.open_tiff(sys.argv[1])
    table = measure.regionprops_table(img, None, ["label", "area", "bbox", "centroid"])
    measure.save_csv(table, sys.argv[2])
    print(len(table))
    """
)


def cube_ids(z, y, x):
    """Ids near 2**32 of the cubes of CUBE tiling SHAPE (a sparse map)."""
    _nz, ny, nx = (n // c for n, c in zip(SHAPE, CUBE, strict=True))
    index = (z * ny + y) * nx + x
    return (2**32 - 1 - index.astype(np.uint64) * 13).astype(np.uint32)


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_labels_3x_the_memory_cap_with_ids_near_2_to_the_32(tmp_path):
    z, y, x = SHAPE
    cz, cy, cx = CUBE
    src = tmp_path / "labels.tif"
    row_ids = np.arange(x) // cx
    with tifffile.TiffWriter(src, bigtiff=True) as tw:
        for plane in range(z):
            ids = cube_ids(plane // cz, (np.arange(y) // cy)[:, None], row_ids[None])
            tw.write(ids, contiguous=True)
    out = tmp_path / "table.csv"
    result = run_capped(
        CAP, [sys.executable, "-c", CAPPED, str(src), str(out)], timeout=600
    )
    assert result.returncode != 137, "killed by the memory cap"
    assert result.returncode == 0, result.stdout + result.stderr
    table = pd.read_csv(out)
    n = (z // cz) * (y // cy) * (x // cx)
    assert len(table) == n == int(result.stdout)
    assert (table["area"] == cz * cy * cx).all()
    gz, gy, gx = np.unravel_index(np.arange(n), (z // cz, y // cy, x // cx))
    expected = pd.DataFrame(
        {"label": cube_ids(gz, gy, gx).astype(np.int64), "z": gz, "y": gy, "x": gx}
    ).sort_values("label", ignore_index=True)
    np.testing.assert_array_equal(table["label"], expected["label"])
    np.testing.assert_array_equal(table["bbox-0"], expected["z"] * cz)
    np.testing.assert_array_equal(table["bbox-5"], (expected["x"] + 1) * cx)
    np.testing.assert_allclose(table["centroid-1"], expected["y"] * cy + (cy - 1) / 2)
