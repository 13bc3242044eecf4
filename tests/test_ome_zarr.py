"""OME-Zarr in and out: save_ome_zarr, open_zarr, and the anchors' readers.

Pixels are read back from the stores written (by us, by zarr directly, by
ome-zarr-py); the levels are checked against block means and modes computed
here voxel block by voxel block, independently of the writer's code.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import textwrap

import numpy as np
import pytest
import tifffile
import zarr

import napari_diskimage as ndi
from napari_diskimage._errors import CorruptFileError
from napari_diskimage.io.ome_zarr import iter_save_ome_zarr, pyramid_factors

RNG = np.random.default_rng(23)


def _volume(shape=(9, 37, 70), dtype=np.uint16, high=4000):
    return RNG.integers(0, high, shape).astype(dtype)


def _ome(path) -> dict:
    """The OME attributes of a store's root (0.5 under "ome", 0.4 top level)."""
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    return attrs.get("ome", attrs)


def _block_reduce(a: np.ndarray, f: tuple[int, int, int], fn) -> np.ndarray:
    """Each output voxel = fn(the block of ``a`` it covers), sizes rounded up."""
    shape = tuple(-(-n // k) for n, k in zip(a.shape, f, strict=True))
    out = np.empty(shape, a.dtype)
    for i in np.ndindex(*shape):
        block = a[tuple(slice(j * k, (j + 1) * k) for j, k in zip(i, f, strict=True))]
        out[i] = fn(block)
    return out


def _mean_half_up(block: np.ndarray):
    if block.dtype.kind == "f":
        return block.mean(dtype=np.float64)
    return np.floor(block.mean(dtype=np.float64) + 0.5)


def _mode_smallest(block: np.ndarray):
    values, counts = np.unique(block, return_counts=True)
    return values[np.argmax(counts)]  # unique sorts: ties go to the smallest


# --- round trips -------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_tiff_to_ome_zarr_to_disk_image_round_trip(data_dir, version):
    data = _volume((2, 9, 37, 70))  # c, z, y, x
    tif = data_dir / "in.tif"
    tifffile.imwrite(
        tif,
        data.transpose(1, 0, 2, 3)[None],  # TZCYX
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"axes": "TZCYX", "spacing": 2.0, "unit": "um"},
    )
    with ndi.open_tiff(tif) as image:
        assert image.shape == (1, 2, 9, 37, 70)
        out = ndi.save_ome_zarr(image, data_dir / "out.ome.zarr", version=version)
    assert out == data_dir / "out.ome.zarr"
    assert (out / ("zarr.json" if version == "0.5" else ".zattrs")).is_file()
    with ndi.open_zarr(out) as back:
        assert back.kind == "zarr"
        assert back.shape == (1, 2, 9, 37, 70)
        assert back.dtype == np.uint16
        np.testing.assert_array_equal(np.asarray(back)[0], data)
        assert back.spacing == pytest.approx((2.0, 0.5, 0.5))
        assert back.unit == "micrometer"
        assert back.load_plane(z=4, c=1, stride_x=3, stride_y=2).tolist() == (
            data[1, 4, ::2, ::3].tolist()
        )
    axes = _ome(out)["multiscales"][0]["axes"]
    assert [a["name"] for a in axes] == ["c", "z", "y", "x"]
    assert [a.get("unit") for a in axes] == [None, *["micrometer"] * 3]


def test_save_from_a_disk_image_method_and_copy_of_the_store(data_dir):
    data = _volume((5, 40, 33), np.float32)
    image = ndi.copy(data)
    out = ndi.save_ome_zarr(image, data_dir / "a.ome.zarr", chunks=(2, 16, 16))
    image.close()
    with ndi.open_zarr(out) as back:
        assert back.storage.zarr_array.chunks == (2, 16, 16)
        np.testing.assert_array_equal(back.array[0, 0], data)
        # a Zarr disk image is read as any other: copy and save it again
        with ndi.copy(back) as copied:
            np.testing.assert_array_equal(copied.array[0, 0], data)
        ndi.save_tiff(back, data_dir / "again.tif")
    np.testing.assert_array_equal(tifffile.imread(data_dir / "again.tif"), data)


# --- the pyramid ----------------------------------------------------------------
def test_levels_are_block_means_down_to_256(data_dir):
    data = _volume((9, 301, 515))
    out = ndi.save_ome_zarr(data, data_dir / "m.ome.zarr")
    root = zarr.open_group(str(out), mode="r")
    ms = _ome(out)["multiscales"][0]
    assert ms["type"] == "mean"
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]
    assert [tuple(root[p].shape) for p in "012"] == [
        (9, 301, 515),
        (5, 151, 258),
        (3, 76, 129),
    ]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [4.0, 4.0, 4.0]]
    finer = data
    for p in "12":
        expected = _block_reduce(finer, (2, 2, 2), _mean_half_up)
        np.testing.assert_array_equal(root[p][:], expected)
        finer = expected


def test_z_is_halved_only_while_no_coarser_than_y_and_x(data_dir):
    # z spacing 4: y and x reach 4 after two levels, then all three halve
    assert pyramid_factors((64, 4096, 4096), (4.0, 1.0, 1.0)) == [
        (1, 2, 2),
        (1, 2, 2),
        (2, 2, 2),
        (2, 2, 2),
    ]
    assert pyramid_factors((1, 300, 200)) == [(1, 2, 2)]  # one plane: no z
    data = _volume((6, 40, 40), np.uint8, 255)
    image = ndi.copy(data)
    image.spacing = (4.0, 1.0, 1.0)
    out = ndi.save_ome_zarr(image, data_dir / "aniso.ome.zarr", levels=4)
    image.close()
    root = zarr.open_group(str(out), mode="r")
    assert [tuple(root[p].shape) for p in "0123"] == [
        (6, 40, 40),
        (6, 20, 20),
        (6, 10, 10),
        (3, 5, 5),
    ]
    expected = _block_reduce(data, (1, 2, 2), _mean_half_up)
    np.testing.assert_array_equal(root["1"][:], expected)
    scales = [
        d["coordinateTransformations"][0]["scale"]
        for d in _ome(out)["multiscales"][0]["datasets"]
    ]
    assert scales[3] == [8.0, 8.0, 8.0]


def test_planes_over_the_slab_budget_are_built_in_blocks_of_whole_chunks(data_dir):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 60000, (2, 2, 41, 100, 151), dtype=np.uint16)
    labels = {"cells": rng.integers(0, 5, (2, 1, 41, 100, 151), dtype=np.uint32)}
    aniso = ndi.copy(data[0, 0])
    aniso.spacing = (4.0, 1.0, 1.0)  # levels 1 and 2 keep every plane
    for name, image, extra in (("tc", data, labels), ("aniso", aniso, None)):
        stores = []
        for slab_bytes in (256 << 10, 1 << 40):  # in blocks; streamed slabs
            steps: list[tuple[int, int]] = []
            gen = iter_save_ome_zarr(
                image, data_dir / f"{name}-{slab_bytes}.ome.zarr", labels=extra,
                chunks=(16, 32, 32), levels=4, slab_bytes=slab_bytes,
            )  # fmt: skip
            try:
                while True:
                    steps.append(next(gen))
            except StopIteration as stop:
                stores.append(zarr.open_group(str(stop.value), mode="r"))
            assert steps[-1][0] == steps[-1][1]
        blocks, slabs = stores
        paths = [p for p, _ in slabs.arrays()]
        paths += [f"labels/cells/{p}" for p in "0123" if extra]
        for path in paths:
            assert blocks[path].chunks == slabs[path].chunks
            np.testing.assert_array_equal(blocks[path][:], slabs[path][:])
    aniso.close()


def test_nearest_and_gaussian_levels(data_dir):
    from scipy import ndimage

    data = _volume((4, 64, 48))
    near = ndi.save_ome_zarr(
        data, data_dir / "n.ome.zarr", levels=2, downsample="nearest"
    )
    np.testing.assert_array_equal(
        zarr.open_group(str(near), mode="r")["1"][:], data[::2, ::2, ::2]
    )
    gauss = ndi.save_ome_zarr(
        data, data_dir / "g.ome.zarr", levels=2, downsample="gaussian"
    )
    smooth = ndimage.gaussian_filter(
        data.astype(np.float64), (0, 2 / 3, 2 / 3), mode="nearest"
    )
    smooth = np.floor(smooth + 0.5).astype(np.uint16)
    expected = _block_reduce(smooth, (2, 2, 2), _mean_half_up)
    level = zarr.open_group(str(gauss), mode="r")["1"][:]
    # float32 smoothing here vs float64 above: rounding may differ by one
    assert np.abs(level.astype(int) - expected.astype(int)).max() <= 1
    assert _ome(gauss)["multiscales"][0]["type"] == "gaussian"


def test_labels_are_written_with_block_modes(data_dir):
    data = _volume((5, 30, 44), np.uint8, 200)
    labels = RNG.integers(0, 4, (5, 30, 44)).astype(np.uint32)
    labels[:, :8, :8] = 7  # a region whose mode is clear
    out = ndi.save_ome_zarr(
        data, data_dir / "l.ome.zarr", labels={"pores": labels}, levels=3
    )
    root = zarr.open_group(str(out), mode="r")
    assert _ome(out)["multiscales"][0]["type"] == "mean"
    assert dict(root["labels"].attrs)["ome"]["labels"] == ["pores"]
    group_attrs = dict(root["labels/pores"].attrs)["ome"]
    assert group_attrs["image-label"]["source"] == {"image": "../../"}
    assert group_attrs["multiscales"][0]["type"] == "mode"
    finer = labels
    np.testing.assert_array_equal(root["labels/pores/0"][:], labels)
    for p in "12":
        expected = _block_reduce(finer, (2, 2, 2), _mode_smallest)
        np.testing.assert_array_equal(root[f"labels/pores/{p}"][:], expected)
        finer = expected
    assert root["labels/pores/1"][0, 0, 0] == 7
    with ndi.open_zarr(out / "labels" / "pores") as back:
        np.testing.assert_array_equal(back.array[0, 0], labels)


def test_labels_that_do_not_fit_are_refused_before_any_work(data_dir):
    data = _volume((4, 16, 16))
    with pytest.raises(ValueError, match="labels 'bad' have shape"):
        ndi.save_ome_zarr(
            data, data_dir / "x.ome.zarr", labels={"bad": np.zeros((4, 16, 15), "u1")}
        )
    with pytest.raises(ValueError, match="hold integers"):
        ndi.save_ome_zarr(
            data, data_dir / "x.ome.zarr", labels={"f": np.zeros((4, 16, 16), "f4")}
        )
    assert list(data_dir.iterdir()) == []


# --- the anchors --------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_ome_zarr_py_and_ngff_zarr_accept_ours(data_dir, version):
    from ngff_zarr import from_ngff_zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    data = _volume((6, 300, 280))
    image = ndi.copy(data)
    image.spacing, image.unit = (2.0, 0.5, 0.5), "um"
    out = ndi.save_ome_zarr(
        image,
        data_dir / "ours.ome.zarr",
        labels={"seg": (data > 2000).astype(np.uint8)},
        version=version,
    )
    image.close()
    nodes = list(Reader(parse_url(str(out)))())
    assert nodes, "ome-zarr-py found no image"
    pyramid = nodes[0].data
    assert len(pyramid) == 2
    np.testing.assert_array_equal(np.asarray(pyramid[0]), data)
    assert tuple(pyramid[1].shape) == (6, 150, 140)  # z spacing 2 > 1: kept
    ms = from_ngff_zarr(str(out), validate=True)
    assert len(ms.images) == 2
    np.testing.assert_array_equal(np.asarray(ms.images[0].data), data)
    assert ms.images[0].scale == {"z": 2.0, "y": 0.5, "x": 0.5}
    assert ms.images[0].axes_units["x"] == "micrometer"


@pytest.mark.filterwarnings("ignore:Call to deprecated class Scaler:DeprecationWarning")
@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_stores_written_by_ome_zarr_py_open_equal(data_dir, version):
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    data = _volume((2, 5, 96, 80))  # c, z, y, x
    fmt = FormatV05() if version == "0.5" else FormatV04()
    path = data_dir / "theirs.ome.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_image(data, root, axes="czyx", fmt=fmt, scale_factors=(2, 4))
    stored = zarr.open_group(str(path), mode="r")
    paths = [d["path"] for d in _ome(path)["multiscales"][0]["datasets"]]
    with ndi.open_zarr(path) as image:
        assert image.shape == (1, 2, 5, 96, 80)
        np.testing.assert_array_equal(np.asarray(image)[0], data)
        levels = image.display_levels
        assert len(levels) == 3
        for level, p in zip(levels[1:], paths[1:], strict=True):
            np.testing.assert_array_equal(np.asarray(level)[0], stored[p][:])
    with ndi.open_zarr(path, level=1) as coarse:
        np.testing.assert_array_equal(np.asarray(coarse)[0], stored[paths[1]][:])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_plain_zarr_arrays_open(data_dir, zarr_format):
    data = _volume((3, 20, 30))
    arr = zarr.create_array(
        str(data_dir / "plain.zarr"),
        shape=data.shape,
        chunks=(1, 8, 8),
        dtype=">u2" if zarr_format == 2 else "<u2",
        zarr_format=zarr_format,
    )
    arr[:] = data
    with ndi.open_zarr(data_dir / "plain.zarr") as image:
        assert image.shape == (1, 1, 3, 20, 30)
        np.testing.assert_array_equal(image.array[0, 0], data)
        assert image.dtype == np.dtype("uint16")


# --- pixels written into a store ----------------------------------------------------
def test_r_plus_writes_a_pixel_and_the_levels_covering_it(data_dir):
    data = _volume((8, 64, 64))
    out = ndi.save_ome_zarr(data, data_dir / "w.ome.zarr", levels=3)
    with ndi.open_zarr(out, mode="r+") as image:
        before = image.display_levels[2].array[0, 0, 1, 5, 5]
        image.write_pixel(65535, x=21, y=22, z=5)
        assert image.array[0, 0, 5, 22, 21] == 65535
    with ndi.open_zarr(out) as image:
        written = data.copy()
        written[5, 22, 21] = 65535
        np.testing.assert_array_equal(image.array[0, 0], written)
        l1 = _block_reduce(written, (2, 2, 2), _mean_half_up)
        l2 = _block_reduce(l1, (2, 2, 2), _mean_half_up)
        np.testing.assert_array_equal(image.display_levels[1].array[0, 0], l1)
        np.testing.assert_array_equal(image.display_levels[2].array[0, 0], l2)
        assert image.display_levels[2].array[0, 0, 1, 5, 5] != before
    with ndi.open_zarr(out) as image, pytest.raises(PermissionError):
        image.write_pixel(1, 0, 0)


def test_pickles_by_reference_and_reopens_lazily(data_dir):
    data = _volume((4, 30, 30))
    out = ndi.save_ome_zarr(data, data_dir / "p.ome.zarr")
    with ndi.open_zarr(out) as image:
        blob = pickle.dumps(image)
        assert len(blob) < 2000  # a reference, not the pixels
        with pickle.loads(blob) as again:
            np.testing.assert_array_equal(again.array[0, 0], data)
        storage = type(image.storage).from_state(image.storage.state())
        assert storage.handle._arrays == {}  # nothing opened yet
        np.testing.assert_array_equal(
            storage.read_box(
                [range(1), range(1), range(1, 4, 2), range(30), range(3, 30, 5)]
            ),
            data[None, None, 1:4:2, :, 3:30:5],
        )
        storage.close()


def test_browsing_in_z_decodes_the_next_chunk_row_ahead(data_dir):
    """A z-step that enters a new row of chunks finds it decoded: the row
    is decoded in the background when the row before is entered, in the
    direction of the steps (without it, the crossing step decodes it)."""
    data = _volume((16, 64, 64))
    out = ndi.save_ome_zarr(data, data_dir / "b.ome.zarr", chunks=(4, 32, 32))
    with ndi.open_zarr(out) as image:
        handle = image.storage.handle
        np.testing.assert_array_equal(image.load_plane(z=0), data[0])
        handle.prefetch.wait()
        rows = {key[1][0] for key in handle.cache._items}
        assert rows == {0, 1}  # row 1 (planes 4-7) decoded ahead
        decoded = handle.decoded_bytes
        for z in range(1, 5):
            np.testing.assert_array_equal(image.load_plane(z=z), data[z])
        handle.prefetch.wait()
        # crossing into row 1 decoded nothing in the foreground; row 2 is
        # decoded ahead in the background (2 x 2 chunks of 4 x 32 x 32)
        assert handle.decoded_bytes - decoded == 4 * 4 * 32 * 32 * 2
        # stepping back: the row before comes ahead
        np.testing.assert_array_equal(image.load_plane(z=15), data[15])
        np.testing.assert_array_equal(image.load_plane(z=12), data[12])
        handle.prefetch.wait()
        assert (("0", (2, 0, 0)) in handle.cache._items) and (
            ("0", (3, 0, 0)) in handle.cache._items
        )
        # a region's steps decode only its own chunks' neighbours
        handle.cache.clear()
        image.load_plane(z=2, size_x=16, size_y=16)  # back from 12: row -1
        image.load_plane(z=3, size_x=16, size_y=16)  # forward: row 1
        handle.prefetch.wait()
        assert set(handle.cache._items) == {("0", (0, 0, 0)), ("0", (1, 0, 0))}
        # a plane read as a box (a view cache's mean level) too
        handle.cache.clear()
        box = [range(1), range(1), range(8, 9), range(64), range(64)]
        np.testing.assert_array_equal(image.storage.read_box(box)[0, 0, 0], data[8])
        handle.prefetch.wait()
        assert {key[1][0] for key in handle.cache._items} == {2, 3}


def test_the_read_ahead_check_does_not_count_as_a_use():
    from napari_diskimage._cache import LRUCache

    cache = LRUCache(2)
    cache.put("a", 1, 1)
    cache.put("b", 2, 1)
    assert "a" in cache and "c" not in cache  # as the read ahead looks
    cache.put("c", 3, 1)  # "a" is still the least recently used
    assert "a" not in cache and "b" in cache
    assert cache.get("b") == 2  # a use: "c" goes next
    cache.put("d", 4, 1)
    assert "c" not in cache and "b" in cache


# --- bad input ---------------------------------------------------------------------
def test_bad_stores_raise_errors_naming_them(data_dir):
    with pytest.raises(FileNotFoundError, match=r"nothing\.zarr"):
        ndi.open_zarr(data_dir / "nothing.zarr")
    (data_dir / "empty.zarr").mkdir()
    with pytest.raises(CorruptFileError, match=r"empty.zarr.*not a readable Zarr"):
        ndi.open_zarr(data_dir / "empty.zarr")
    (data_dir / "file.zarr").write_bytes(b"not a folder")
    with pytest.raises(CorruptFileError, match=r"file\.zarr.*not a folder"):
        ndi.open_zarr(data_dir / "file.zarr")
    broken = data_dir / "broken.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text("{ this is not json")
    with pytest.raises(CorruptFileError, match=r"broken\.zarr.*metadata"):
        ndi.open_zarr(broken)
    group = zarr.open_group(str(data_dir / "group.zarr"), mode="w")
    group.create_array("a", shape=(4, 4), dtype="u1")
    with pytest.raises(CorruptFileError, match=r"without OME-Zarr .multiscales.*.a."):
        ndi.open_zarr(data_dir / "group.zarr")


def test_a_missing_level_and_an_unknown_codec_are_named(data_dir):
    data = _volume((4, 300, 300))
    out = ndi.save_ome_zarr(data, data_dir / "a.ome.zarr")
    shutil.rmtree(out / "1")
    with pytest.raises(CorruptFileError, match=r"a.ome.zarr.*level '1' is missing"):
        ndi.open_zarr(out)
    out = ndi.save_ome_zarr(data, data_dir / "b.ome.zarr")
    meta = json.loads((out / "0" / "zarr.json").read_text())
    meta["codecs"][-1]["name"] = "no-such-codec"
    (out / "0" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match=r"b.ome.zarr.*codec"):
        ndi.open_zarr(out)


def test_a_missing_chunk_of_ours_and_a_damaged_one_raise_naming_them(data_dir):
    data = _volume((6, 32, 32)) + 1
    out = ndi.save_ome_zarr(data, data_dir / "c.ome.zarr", chunks=(2, 16, 16), levels=1)
    (out / "0" / "c" / "0" / "0" / "1").unlink()  # z 0-1, y 0-15, x 16-31
    (out / "0" / "c" / "1" / "1" / "1").write_bytes(b"\x00garbage")
    with ndi.open_zarr(out) as image:
        # ours are written with every chunk: a missing one is damage
        with pytest.raises(OSError, match=r"chunk 'c/0/0/1' of array '0' .*c.ome.zarr"):
            image.load_plane(z=0)
        with pytest.raises(
            OSError, match=r"chunk 'c/1/1/1' of .*c.ome.zarr.*damaged or truncated"
        ):
            image.load_plane(z=3)
        np.testing.assert_array_equal(image.load_plane(z=4), data[4])


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_a_missing_chunk_of_a_foreign_store_reads_as_the_fill_value(
    data_dir, zarr_format
):
    """Zarr writers skip chunks of the fill value: elsewhere a missing chunk
    is the fill value, as the Zarr specification says."""
    data = _volume((4, 32, 32)) + 1
    arr = zarr.create_array(
        str(data_dir / "f.zarr"), shape=data.shape, chunks=(2, 16, 16),
        dtype=data.dtype, fill_value=7, zarr_format=zarr_format,
    )  # fmt: skip
    arr[:] = data
    arr[:2, :16, 16:] = 7  # the fill value: zarr removes the chunk
    assert len(list((data_dir / "f.zarr").rglob("*"))) > 1
    with ndi.open_zarr(data_dir / "f.zarr") as image:
        plane = image.load_plane(z=0)
        assert (plane[:16, 16:] == 7).all()
        np.testing.assert_array_equal(plane[:, :16], data[0, :, :16])


def test_writing_zeros_into_ours_keeps_every_chunk(data_dir):
    data = np.zeros((2, 16, 16), np.uint8)
    data[0, 0, 0] = 5
    out = ndi.save_ome_zarr(data, data_dir / "z.ome.zarr", chunks=(1, 16, 16), levels=1)
    with ndi.open_zarr(out, "r+") as image:
        image.write_pixel(0, 0, 0, 0)  # the chunk is all zeros now
    with ndi.open_zarr(out) as image:
        assert not image.load_plane(z=0).any()


def test_save_targets_refused_and_replaced(data_dir):
    data = _volume((2, 16, 16))
    (data_dir / "taken.zarr").write_text("mine")
    with pytest.raises(FileExistsError, match="not a Zarr store"):
        ndi.save_ome_zarr(data, data_dir / "taken.zarr")
    (data_dir / "folder.zarr").mkdir()
    (data_dir / "folder.zarr" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a Zarr store"):
        ndi.save_ome_zarr(data, data_dir / "folder.zarr")
    assert (data_dir / "folder.zarr" / "notes.txt").read_text() == "mine"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ndi.save_ome_zarr(data, data_dir / "no" / "x.ome.zarr")
    out = ndi.save_ome_zarr(data, data_dir / "x.ome.zarr")
    ndi.save_ome_zarr(data + 1, out)  # a Zarr store is replaced
    with ndi.open_zarr(out) as image:
        np.testing.assert_array_equal(image.array[0, 0], data + 1)
        with pytest.raises(ValueError, match="onto itself"):
            ndi.save_ome_zarr(image, out)
    for bad in ({"version": "0.6"}, {"downsample": "max"}, {"compressor": "xz"},
                {"levels": 0}, {"chunks": (1, 2)}):  # fmt: skip
        with pytest.raises(ValueError):
            ndi.save_ome_zarr(data, data_dir / "y.ome.zarr", **bad)
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "folder.zarr",
        "taken.zarr",
        "x.ome.zarr",
    ]


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_lz4_bitshuffle_round_trips(data_dir, version):
    """The view cache's codec, in both NGFF versions: the pixels come back
    and the store says which shuffle it used (other readers need it)."""
    data = _volume((20, 70, 90))
    out = ndi.save_ome_zarr(
        data, data_dir / "x.ome.zarr", compressor="lz4-bitshuffle", version=version
    )
    with ndi.open_zarr(out) as image:
        np.testing.assert_array_equal(image.array[0, 0], data)
        assert "lz4" in image.storage.describe()
    if version == "0.5":
        meta = json.loads((out / "0" / "zarr.json").read_text())
        [blosc] = [c for c in meta["codecs"] if c["name"] == "blosc"]
        assert blosc["configuration"]["shuffle"] == "bitshuffle"
    else:
        meta = json.loads((out / "0" / ".zarray").read_text())
        assert meta["compressor"]["cname"] == "lz4"
        assert meta["compressor"]["shuffle"] == 2  # Blosc.BITSHUFFLE


# --- atomic ------------------------------------------------------------------
def test_cancel_mid_run_leaves_nothing_and_keeps_the_old_store(data_dir):
    data = _volume((64, 128, 128))
    target = data_dir / "x.ome.zarr"
    steps = iter_save_ome_zarr(data, target, chunks=(4, 64, 64))
    for _ in range(3):
        done, total = next(steps)
    assert 0 < done < total
    assert any(p.name.endswith(".part") for p in data_dir.iterdir())
    steps.close()  # cancel
    assert list(data_dir.iterdir()) == []

    ndi.save_ome_zarr(data[:2], target)

    def cancel(done, total):
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ndi.save_ome_zarr(data, target, progress=cancel, chunks=(4, 64, 64))
    assert [p.name for p in data_dir.iterdir()] == ["x.ome.zarr"]
    with ndi.open_zarr(target) as image:
        assert image.shape[2] == 2  # the old store, untouched


def test_progress_counts_every_input_byte_once(data_dir):
    data = _volume((16, 64, 64))
    labels = (data > 2000).astype(np.uint8)
    seen = []
    ndi.save_ome_zarr(
        data, data_dir / "x.ome.zarr", labels={"m": labels},
        progress=lambda d, t: seen.append((d, t)),
    )  # fmt: skip
    assert seen[-1] == (data.nbytes + labels.nbytes, data.nbytes + labels.nbytes)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


# --- the command line and napari's reader and writers ------------------------------
def test_processing_reads_a_store_as_any_disk_image(data_dir):
    from napari_diskimage import process

    data = _volume((12, 40, 48))
    out = ndi.save_ome_zarr(data, data_dir / "p.ome.zarr", chunks=(4, 16, 16))
    with ndi.open_zarr(out) as image, ndi.copy(data) as mapped:
        from_store = process.gaussian(image, sigma=1.5)
        from_file = process.gaussian(mapped, sigma=1.5)
        np.testing.assert_array_equal(
            np.asarray(from_store.array), np.asarray(from_file.array)
        )
        from_store.close()
        from_file.close()


def test_cli_copy_to_ome_zarr_and_back(data_dir, capsys):
    from napari_diskimage._cli import main

    data = _volume((3, 40, 50))
    tifffile.imwrite(data_dir / "in.tif", data, photometric="minisblack")
    assert main(["copy", str(data_dir / "in.tif"), str(data_dir / "o.ome.zarr")]) == 0
    with ndi.open_zarr(data_dir / "o.ome.zarr") as image:
        np.testing.assert_array_equal(image.array[0, 0], data)
    assert main(["copy", str(data_dir / "o.ome.zarr"), str(data_dir / "b.tif")]) == 0
    np.testing.assert_array_equal(tifffile.imread(data_dir / "b.tif"), data)
    capsys.readouterr()
    assert main(["info", str(data_dir / "o.ome.zarr")]) == 0
    assert "format: ZARR" in capsys.readouterr().out


def test_napari_reader_takes_zarr_folders(data_dir):
    from napari_diskimage._napari.reader import napari_get_reader

    data = _volume((4, 600, 520))
    out = ndi.save_ome_zarr(data, data_dir / "scan.ome.zarr")
    reader = napari_get_reader(str(out))
    assert reader is not None
    ((levels, kwargs, kind),) = reader(str(out))
    assert kind == "image" and kwargs["name"] == "scan"
    shapes = [tuple(level.shape) for level in levels]
    # the store's levels while they have z planes (level 2 has one)
    assert shapes == [(4, 600, 520), (2, 300, 260)]
    np.testing.assert_array_equal(np.asarray(levels[1][1]), zarr.open_group(
        str(out), mode="r")["1"][1])  # fmt: skip
    (data_dir / "junk.zarr").mkdir()
    assert napari_get_reader(str(data_dir / "junk.zarr")) is None
    for level in levels:
        level.image.close()


def test_napari_writers_save_image_and_labels_layers(data_dir):
    from napari_diskimage._napari import writer

    data = _volume((4, 32, 32))
    (p,) = writer.write_ome_zarr(str(data_dir / "i.ome.zarr"), data, {"name": "i"})
    labels = RNG.integers(0, 3, (4, 32, 32)).astype(np.uint16)
    (q,) = writer.write_labels_ome_zarr(str(data_dir / "l.ome.zarr"), labels, {})
    assert _ome(p)["multiscales"][0]["type"] == "mean"
    assert _ome(q)["multiscales"][0]["type"] == "mode"
    with ndi.open_zarr(q) as image:
        np.testing.assert_array_equal(image.array[0, 0], labels)


# --- bounded memory -----------------------------------------------------------------
CAP = 256 << 20


@pytest.mark.slow
def test_convert_four_times_the_memory_cap(tmp_path):
    from _memcap import run_capped, unavailable_reason

    if unavailable_reason() is not None:
        pytest.skip(str(unavailable_reason()))
    z, y, x = 128, 2048, 2048  # uint16: 1 GiB, 4 x the cap
    src = tmp_path / "big.tif"
    with tifffile.TiffWriter(src) as tw:
        for k in range(z):
            tw.write(np.full((y, x), k * 37 % 4001, np.uint16), contiguous=True)
    assert src.stat().st_size > 4 * CAP
    script = textwrap.dedent(
        """
        import sys, numpy as np, zarr
        import napari_diskimage as ndi
        src, out = sys.argv[1], sys.argv[2]
        with ndi.open_tiff(src) as image:
            ndi.save_ome_zarr(image, out, compressor="lz4")
        root = zarr.open_group(out, mode="r")
        shapes = [root[str(i)].shape for i in range(4)]
        assert shapes == [(128, 2048, 2048), (64, 1024, 1024), (32, 512, 512),
                          (16, 256, 256)], shapes
        for k in (0, 77, 127):
            assert (root["0"][k] == k * 37 % 4001).all(), k
        v = lambda k: k * 37 % 4001
        for k in (0, 31):
            mean = np.floor((v(2 * k) + v(2 * k + 1)) / 2 + 0.5)
            assert (root["1"][k] == mean).all(), k
        print("ok")
        """
    )
    result = run_capped(
        CAP, [sys.executable, "-c", script, str(src), str(tmp_path / "o.ome.zarr")],
        timeout=600,
    )  # fmt: skip
    assert result.returncode != 137, "killed by the memory cap"
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"
