"""Folders of TIFF slices opened as one volume (open_tiff_sequence)."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from napari_diskimage._napari.reader import napari_get_reader
from napari_diskimage.storage import SequenceStorage

RNG = np.random.default_rng(7)


def _volume(z=6, y=40, x=52, dtype=np.uint16):
    return RNG.integers(0, 4000, (z, y, x)).astype(dtype)


def _write(folder, vol, name="rec_{:05d}.tif", **kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    for k, plane in enumerate(vol):
        tifffile.imwrite(folder / name.format(k), plane, **kwargs)
    return folder


def _stacked(folder):
    files = sorted(folder.glob("*.tif"))
    return np.stack([tifffile.imread(f) for f in files])


@pytest.mark.parametrize(
    "kwargs, mapped",
    [
        ({}, True),
        ({"compression": "lzw"}, False),
        ({"tile": (16, 16)}, False),
        ({"compression": "zlib", "predictor": True}, False),
    ],
    ids=["uncompressed", "lzw", "tiled", "deflate-predictor"],
)
def test_a_folder_opens_as_the_stacked_slices(tmp_path, kwargs, mapped):
    vol = _volume()
    folder = _write(tmp_path / "scan", vol, **kwargs)
    with ndi.open_tiff_sequence(folder) as img:
        assert img.shape == (1, 1, 6, 40, 52) and img.dtype == np.uint16
        assert img.path == folder and img.files == sorted(folder.glob("*.tif"))
        assert isinstance(img.storage, SequenceStorage)
        assert img.storage.headers_parsed == 1  # only the first, at open
        np.testing.assert_array_equal(img.array[0, 0], _stacked(folder))
        np.testing.assert_array_equal(
            img.load_plane(z=3, offset_x=5, stride_x=3, stride_y=2), vol[3, ::2, 5::3]
        )
        runs = img.storage.byte_runs((0, 1, 2, 3, 4), np.dtype("<u2"))
        assert (runs is not None) == mapped
        with pytest.raises(PermissionError, match="copy"):
            img.write_pixel(1, 0, 0, 0)


def test_pillow_and_libtiff_slices(tmp_path):
    from PIL import Image

    vol = _volume(z=4, dtype=np.uint8)
    folder = tmp_path / "pil"
    folder.mkdir()
    for k, plane in enumerate(vol):
        Image.fromarray(plane).save(folder / f"s{k}.tif")
    with ndi.open_tiff_sequence(folder) as img:
        np.testing.assert_array_equal(img.array[0, 0], vol)
    if shutil.which("tiffcp") is None:
        pytest.skip("libtiff's tiffcp is not installed (apt-get install libtiff-tools)")
    src = _write(tmp_path / "plain", vol)
    out = tmp_path / "tiffcp"
    out.mkdir()
    for k, f in enumerate(sorted(src.glob("*.tif"))):
        subprocess.run(
            ["tiffcp", "-c", "packbits", str(f), str(out / f"s{k}.tif")], check=True
        )
    with ndi.open_tiff_sequence(out) as img:
        assert "PACKBITS" in img.storage.describe().upper() or not img.is_mapped
        np.testing.assert_array_equal(img.array[0, 0], vol)


def test_natural_order_glob_and_t_stacks(tmp_path):
    folder = tmp_path / "n"
    folder.mkdir()
    planes = {}
    for k in (1, 2, 10, 11, 100):
        planes[k] = np.full((4, 5), k, np.uint8)
        tifffile.imwrite(folder / f"slice_{k}.tif", planes[k])
    tifffile.imwrite(folder / "other_1.tif", np.zeros((4, 5), np.uint8))
    (folder / "notes.txt").write_text("not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ndi.SequenceGapWarning)
        with ndi.open_tiff_sequence(folder / "slice_*.tif") as img:
            assert [f.name for f in img.files] == [
                "slice_1.tif", "slice_2.tif", "slice_10.tif", "slice_11.tif",
                "slice_100.tif",
            ]  # fmt: skip
            assert img.array[0, 0, :, 0, 0].tolist() == [1, 2, 10, 11, 100]
        with ndi.open_tiff_sequence(folder, pattern="slice_1*.tif") as img:
            assert img.shape[2] == 4
    # a t stack of multi-page files: each file one time point of 3 planes
    tfolder = tmp_path / "t"
    tfolder.mkdir()
    frames = [RNG.integers(0, 255, (3, 8, 9), dtype=np.uint8) for _ in range(4)]
    for k, frame in enumerate(frames):
        tifffile.imwrite(tfolder / f"t{k}.tif", frame, photometric="minisblack")
    with ndi.open_tiff_sequence(tfolder, axis="t") as img:
        assert img.shape == (4, 1, 3, 8, 9)
        np.testing.assert_array_equal(img.array[:, 0], np.stack(frames))
    with ndi.open_tiff_sequence(tfolder) as img:  # along z: pages stacked
        assert img.shape == (1, 1, 12, 8, 9)
        np.testing.assert_array_equal(img.array[0, 0], np.concatenate(frames))


def test_rgb_slices(tmp_path):
    vol = RNG.integers(0, 255, (3, 10, 12, 3), dtype=np.uint8)
    folder = _write(tmp_path / "rgb", vol, photometric="rgb")
    with ndi.open_tiff_sequence(folder) as img:
        assert img.shape == (1, 3, 3, 10, 12) and img.rgb
        np.testing.assert_array_equal(img.array[0, :, 2], np.moveaxis(vol[2], -1, 0))


def test_ten_thousand_slices_open_with_one_header_parsed(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    plane = np.arange(16, dtype=np.uint8).reshape(4, 4)
    first = folder / "img_00000.tif"
    tifffile.imwrite(first, plane)
    for k in range(1, 10_000):
        os.link(first, folder / f"img_{k:05d}.tif")  # same bytes, no disk
    with ndi.open_tiff_sequence(folder) as img:
        assert img.shape == (1, 1, 10_000, 4, 4)
        assert img.storage.headers_parsed == 1
        np.testing.assert_array_equal(img.load_plane(z=9_999), plane)
        assert img.storage.headers_parsed == 2  # the slice read, no other


def test_copy_save_and_process_a_folder(tmp_path):
    vol = _volume(z=8)
    folder = _write(tmp_path / "scan", vol)
    with ndi.open_tiff_sequence(folder) as img:
        out = ndi.copy(img)
        assert out.is_mapped and out.is_scratch
        np.testing.assert_array_equal(out.array[0, 0], vol)
        saved = img.save_tiff(tmp_path / "one.tif")
        np.testing.assert_array_equal(tifffile.imread(saved), vol)
        from napari_diskimage import process

        smooth = process.gaussian(img, 1.5)
        import scipy.ndimage as sndi

        np.testing.assert_array_equal(
            smooth.array[0, 0], sndi.gaussian_filter(vol, 1.5)
        )
        smooth.close()
        out.close()
        again = pickle.loads(pickle.dumps(img))  # a reference, not the pixels
        assert len(pickle.dumps(img)) < 10_000
        np.testing.assert_array_equal(again.array[0, 0], vol)
    lzw = _write(tmp_path / "lzw", vol, compression="lzw")
    with ndi.open_tiff_sequence(lzw) as img, ndi.copy(img) as copied:
        np.testing.assert_array_equal(copied.array[0, 0], vol)


# --- bad input -----------------------------------------------------------------
def test_a_slice_of_another_shape_is_named_at_open(tmp_path):
    folder = _write(tmp_path / "s", _volume(z=5))
    tifffile.imwrite(folder / "rec_00003.tif", np.zeros((40, 60), np.uint16))
    with pytest.raises(ValueError, match=r"rec_00003\.tif.*60 x 40.*52 x 40"):
        ndi.open_tiff_sequence(folder)
    tifffile.imwrite(folder / "rec_00003.tif", np.zeros((40, 52), np.float32))
    with pytest.raises(ValueError, match=r"rec_00003\.tif.*float32.*uint16"):
        ndi.open_tiff_sequence(folder)


def test_a_compressed_slice_of_another_shape_is_named_at_first_read(tmp_path):
    vol = _volume(z=5)
    folder = _write(tmp_path / "s", vol, compression="lzw")
    tifffile.imwrite(folder / "rec_00002.tif", np.zeros((30, 52), np.uint16))
    with ndi.open_tiff_sequence(folder) as img:
        np.testing.assert_array_equal(img.load_plane(z=1), vol[1])
        with pytest.raises(ValueError, match=r"rec_00002\.tif.*52 x 30.*52 x 40"):
            img.load_plane(z=2)
        np.testing.assert_array_equal(img.load_plane(z=3), vol[3])


def test_a_slice_replaced_after_opening_is_named(tmp_path):
    vol = _volume(z=4)
    folder = _write(tmp_path / "s", vol)
    with ndi.open_tiff_sequence(folder) as img:
        np.testing.assert_array_equal(img.load_plane(z=2), vol[2])
        tifffile.imwrite(folder / "rec_00002.tif", np.zeros((41, 52), np.uint16))
        with pytest.raises(ValueError, match=r"rec_00002\.tif.*52 x 41"):
            img.load_plane(z=2)
        (folder / "rec_00001.tif").unlink()
        with pytest.raises(FileNotFoundError, match=r"rec_00001\.tif.*restore"):
            img.load_plane(z=1)
        np.testing.assert_array_equal(img.load_plane(z=3), vol[3])


def test_truncated_and_corrupt_slices_fail_alone(tmp_path):
    vol = _volume(z=4)
    folder = _write(tmp_path / "s", vol)
    path = folder / "rec_00001.tif"
    os.truncate(path, path.stat().st_size // 2)
    (folder / "rec_00002.tif").write_bytes(b"II*\x00" + b"\xff" * 500)
    with ndi.open_tiff_sequence(folder) as img:
        with pytest.raises((OSError, ValueError), match=r"rec_00001\.tif.*truncated"):
            img.load_plane(z=1)
        with pytest.raises(ndi.CorruptFileError, match=r"rec_00002\.tif"):
            img.load_plane(z=2)
        np.testing.assert_array_equal(img.load_plane(z=3), vol[3])
        np.testing.assert_array_equal(img.load_plane(z=0), vol[0])


def test_a_corrupt_header_is_named_whichever_slice_it_is(tmp_path):
    vol = _volume(z=3)
    folder = _write(tmp_path / "s", vol)
    bad_ifd = b"MM\x00*\x00\x00\x00\x08\x00\x05" + b"\x01" * 40  # tifffile raises
    (folder / "rec_00001.tif").write_bytes(bad_ifd)
    corrupt = pytest.raises(ndi.CorruptFileError, match=r"rec_00001\.tif.*not a valid")
    with ndi.open_tiff_sequence(folder) as img, corrupt:
        img.load_plane(z=1)
    (folder / "rec_00000.tif").write_bytes(bad_ifd)
    with pytest.raises(ndi.CorruptFileError, match=r"rec_00000\.tif.*not a valid"):
        ndi.open_tiff_sequence(folder)


def test_gaps_in_the_numbering_are_warned(tmp_path):
    vol = _volume(z=8)
    folder = _write(tmp_path / "s", vol)
    for k in (3, 5):
        (folder / f"rec_{k:05d}.tif").unlink()
    with pytest.warns(ndi.SequenceGapWarning, match=r"2 slices are missing.*: 3, 5"):
        img = ndi.open_tiff_sequence(folder)
    assert img.shape[2] == 6
    img.close()


def test_folders_without_slices(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no TIFF slices.*empty"):
        ndi.open_tiff_sequence(empty)
    junk = tmp_path / "junk"
    junk.mkdir()
    for k in range(3000):
        (junk / f"log_{k}.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no TIFF slices.*\(3000 other files\)"):
        ndi.open_tiff_sequence(junk)
    assert napari_get_reader(str(junk)) is None  # napari's own reader may take it
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ndi.open_tiff_sequence(tmp_path / "missing")
    (tmp_path / "f.tif").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="open_tiff"):
        ndi.open_tiff_sequence(tmp_path / "f.tif")
    folder = _write(tmp_path / "z", _volume(z=2))
    (folder / "rec_00001.tif").write_bytes(b"")
    with pytest.raises(ValueError, match=r"rec_00001\.tif.*empty"):
        ndi.open_tiff_sequence(folder)
    with pytest.raises(ValueError, match="axis must be"):
        ndi.open_tiff_sequence(folder, axis="c")


def test_the_napari_reader_takes_a_folder(tmp_path):
    vol = _volume(z=5)
    folder = _write(tmp_path / "scan", vol)
    reader = napari_get_reader(str(folder))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(folder))
    assert kind == "image" and kwargs["name"] == "scan" and kwargs["multiscale"]
    np.testing.assert_array_equal(np.asarray(data[0][2]), vol[2])
    lo, hi = kwargs["contrast_limits"]
    assert vol.min() <= lo < hi <= vol.max()
    kwargs["metadata"]["disk_image"].close()


def test_the_terminal_takes_a_folder(tmp_path, capsys):
    from napari_diskimage._cli import main

    vol = _volume(z=5)
    folder = _write(tmp_path / "scan", vol, compression="lzw")
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert (
        "a folder of 5 TIFF slices" in out and "rec_00000.tif ... rec_00004.tif" in out
    )
    target = tmp_path / "one.tif"
    assert main(["copy", str(folder), str(target)]) == 0
    np.testing.assert_array_equal(tifffile.imread(target), vol)
