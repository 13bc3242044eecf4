"""copy, save_tiff, save_raw: pixels, progress, cancellation, atomicity, lifecycle."""

import errno
import gc
import os
import shutil
import subprocess
import sys
from collections import namedtuple

import dask.array as da
import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from napari_diskimage import Geometry
from napari_diskimage.io import stream


@pytest.fixture
def stack(data_dir):
    data = np.arange(3 * 4 * 50 * 60, dtype=np.uint16).reshape(3, 4, 50, 60) % 4099
    path = data_dir / "stack.tif"
    tifffile.imwrite(path, data, metadata={"axes": "CZYX"}, photometric="minisblack")
    return path, data


def fail_block_write(monkeypatch, call: int, code: int, message: str) -> None:
    """Make the ``call``-th block write fail (stream in 4 KiB blocks:
    ``block_bytes=4096``)."""
    calls = 0
    real = stream.pwrite_all

    def fail_later(*args):
        nonlocal calls
        calls += 1
        if calls == call:
            raise OSError(code, message)  # a new one: no frames kept alive
        real(*args)

    monkeypatch.setattr(stream, "pwrite_all", fail_later)


def scratch_files():
    folder = ndi.get_disk_image_dir()
    return sorted(folder.glob("ndi-*")) if folder.is_dir() else []


# --- copy ------------------------------------------------------------------
def test_copy_of_a_tiff_is_a_scratch_disk_image(stack):
    path, data = stack
    with ndi.open_tiff(path) as img:
        out = ndi.copy(img)
    assert ndi.is_disk_image(out) and out.is_scratch and out.writable
    assert out.path.parent == ndi.get_disk_image_dir()
    assert out.geometry == Geometry("uint16", 60, 50, 4, 3)
    np.testing.assert_array_equal(out.array[0], data)
    # the scratch file is raw, little-endian, (t, c, z, y, x), named by its geometry
    np.testing.assert_array_equal(ndi.open_raw(out.path).array[0], data)
    assert os.stat(out.path).st_mode & 0o777 == 0o600
    out.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,  # numpy
        lambda a: da.from_array(a, chunks=(1, 2, 17, 60)),  # dask
        lambda a: np.asfortranarray(a),  # non-contiguous numpy
        lambda a: a.astype(">u2"),  # big-endian numpy
    ],
    ids=["numpy", "dask", "fortran", "big-endian"],
)
def test_copy_of_arrays(stack, make):
    _, data = stack
    with ndi.copy(make(data)) as out:
        assert out.shape == (1, 3, 4, 50, 60)
        np.testing.assert_array_equal(out.array[0], data)


def test_copy_of_a_2d_list():
    with ndi.copy([[1, 2, 3], [4, 5, 6]]) as out:
        assert out.geometry.sizes == (3, 2, 1, 1, 1)
        np.testing.assert_array_equal(out.load_plane(), [[1, 2, 3], [4, 5, 6]])


def test_copy_streams_in_blocks(monkeypatch, stack):
    """Memory is bounded by the block size: no block larger than BLOCK_BYTES."""
    _, data = stack
    seen = []
    real = stream.Source.block

    def spy(self, key):
        block = real(self, key)
        seen.append(block.nbytes)
        return block

    monkeypatch.setattr(stream.Source, "block", spy)
    with ndi.copy(data, block_bytes=4096) as out:
        np.testing.assert_array_equal(out.array[0], data)
    assert len(seen) >= data.nbytes // 4096 and max(seen) <= 4096


def test_the_block_size_is_a_parameter_or_an_environment_setting(
    monkeypatch, stack, data_dir
):
    """``block_bytes`` bounds each step of a copy or save; the environment
    variable is the default the tools use; a bad size is an error naming
    it, before any file is made."""
    _, data = stack

    def step_sizes(**kwargs):
        done = []
        with ndi.copy(data, progress=lambda d, _t: done.append(d), **kwargs) as out:
            np.testing.assert_array_equal(out.array[0], data)
        return np.diff([0, *done])

    assert step_sizes().max() == data.nbytes  # 32 MiB: one block
    assert step_sizes(block_bytes=4096).max() <= 4096
    monkeypatch.setenv(stream.BLOCK_BYTES_ENV, "8192")
    from_env = step_sizes()
    assert from_env.max() <= 8192 and from_env.sum() == data.nbytes
    assert step_sizes(block_bytes=4096).max() <= 4096  # the call wins
    steps = []
    ndi.save_raw(data, data_dir / "out.raw", progress=lambda d, t: steps.append(d))
    assert np.diff([0, *steps]).max() <= 8192
    np.testing.assert_array_equal(
        np.fromfile(data_dir / "out.raw", "<u2").reshape(data.shape), data
    )

    monkeypatch.setenv(stream.BLOCK_BYTES_ENV, "1MiB")
    with pytest.raises(ValueError, match=r"NAPARI_DISKIMAGE_BLOCK_BYTES='1MiB'.*"):
        ndi.copy(data)
    monkeypatch.delenv(stream.BLOCK_BYTES_ENV)
    with pytest.raises(ValueError, match=r"block_bytes=0.*at least 1 byte"):
        ndi.save_tiff(data, data_dir / "bad.tif", block_bytes=0)
    assert scratch_files() == []
    assert not (data_dir / "bad.tif").exists()


def test_copy_of_a_contiguous_file_uses_the_kernel(monkeypatch, stack):
    path, data = stack
    calls = []
    real = os.copy_file_range

    def spy(*args):
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(os, "copy_file_range", spy)
    with ndi.open_tiff(path) as img, ndi.copy(img) as out:
        np.testing.assert_array_equal(out.array[0], data)
    assert sum(calls) >= data.nbytes


def test_copy_falls_back_when_the_kernel_cannot(monkeypatch, stack):
    path, data = stack

    def refuse(*args):
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    with ndi.open_tiff(path) as img, ndi.copy(img) as out:
        np.testing.assert_array_equal(out.array[0], data)


def test_copy_reports_progress(stack):
    _, data = stack
    steps = []
    with ndi.copy(data, progress=lambda done, total: steps.append((done, total))):
        pass
    assert steps[0] == (0, data.nbytes)
    assert steps[-1] == (data.nbytes, data.nbytes)
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)


def test_cancelled_copy_removes_its_file(stack):
    _, data = stack

    class Cancelled(Exception):
        pass

    def cancel_half_way(done, total):
        assert len(scratch_files()) == 1  # the partial file exists meanwhile
        if done > total // 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        ndi.copy(data, progress=cancel_half_way, block_bytes=4096)
    assert scratch_files() == []


def test_closing_the_copy_generator_cancels(stack):
    _, data = stack
    steps = ndi.iter_copy(data)
    next(steps)
    assert len(scratch_files()) == 1
    steps.close()  # what a napari worker's quit() does
    assert scratch_files() == []


def test_copy_checks_free_space_first(monkeypatch, stack):
    _, data = stack
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 1000))
    with pytest.raises(OSError) as info:
        ndi.copy(data)
    assert info.value.errno == errno.ENOSPC
    msg = str(info.value)
    assert "needs 70.3 KiB" in msg and "1000 B free" in msg
    assert str(ndi.get_disk_image_dir()) in msg
    assert scratch_files() == []


def test_failed_copy_removes_its_file(monkeypatch, stack):
    _, data = stack
    fail_block_write(monkeypatch, 5, errno.EIO, "simulated write error")
    with pytest.raises(OSError, match="simulated"):
        ndi.copy(data, block_bytes=4096)
    assert scratch_files() == []


def test_copy_rejects_unsupported_arrays():
    with pytest.raises(ValueError, match="pixel type"):
        ndi.copy(np.zeros((3, 3), complex))
    with pytest.raises(ValueError, match="1 to 5 axes"):
        ndi.copy(np.zeros((1,) * 6))
    assert scratch_files() == []


# --- lifecycle ----------------------------------------------------------------
def test_scratch_file_lives_as_long_as_the_image(stack):
    _, data = stack
    out = ndi.copy(data)
    path = out.path
    assert path.exists()
    out = None
    gc.collect()
    assert not path.exists()

    out = ndi.copy(data)
    path = out.path
    out.close()
    assert not path.exists() and out.closed
    out.close()  # idempotent

    with ndi.copy(data) as out:
        path = out.path
        assert path.exists()
    assert not path.exists()


def test_views_outlive_close(stack):
    _, data = stack
    out = ndi.copy(data)
    view = out.array[0, 1]
    out.close()
    np.testing.assert_array_equal(view, data[1])  # still mapped, file unlinked


def test_scratch_files_are_removed_at_exit(tmp_path):
    folder = tmp_path / "dir"
    code = (
        "import napari_diskimage as ndi, numpy as np;"
        f"ndi.set_disk_image_dir({str(folder)!r});"
        "keep = ndi.copy(np.ones((64, 64), np.uint8));"
        "print(keep.path)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert folder.is_dir()
    assert not os.path.exists(out.stdout.strip())
    assert list(folder.iterdir()) == []


def test_new_disk_image_is_zeroed_and_allocated():
    with ndi.new_disk_image(Geometry("float32", 32, 16, 4)) as img:
        assert img.writable and img.is_scratch
        assert not img.array.any()
        st = os.stat(img.path)
        assert st.st_blocks * 512 >= img.nbytes  # space reserved, not sparse


# --- save -------------------------------------------------------------------
def test_save_tiff_round_trip_with_axes(stack, data_dir):
    path, data = stack
    with ndi.open_tiff(path) as img:
        saved = img.save_tiff(data_dir / "out.tif")
    assert saved == data_dir / "out.tif"
    with tifffile.TiffFile(saved) as tif:
        assert tif.series[0].axes == "ZCYX"  # ImageJ hyperstack for uint16
        assert tif.is_imagej
        np.testing.assert_array_equal(tif.asarray(), data.transpose(1, 0, 2, 3))
    with ndi.open_tiff(saved) as back:
        assert back.geometry == Geometry("uint16", 60, 50, 4, 3)
        np.testing.assert_array_equal(back.array[0], data)


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "int16", "uint32", "int64", "float32", "float64"]
)
def test_save_tiff_every_dtype(data_dir, dtype):
    data = (np.arange(2 * 3 * 5 * 7) % 100).astype(dtype).reshape(2, 3, 5, 7)
    with ndi.copy(data) as img:
        img.save_tiff(data_dir / "o.tif")
    on_disk = tifffile.imread(data_dir / "o.tif")
    if dtype in ("uint8", "float32"):  # ImageJ hyperstack: z before c
        on_disk = on_disk.transpose(1, 0, 2, 3)
    np.testing.assert_array_equal(on_disk, data)
    with ndi.open_tiff(data_dir / "o.tif") as back:
        assert back.shape == (1, 2, 3, 5, 7)
        np.testing.assert_array_equal(back.array[0], data)


def test_save_tiff_keeps_pixel_size(data_dir):
    data = np.zeros((3, 8, 8), np.uint16)
    src = data_dir / "cal.tif"
    tifffile.imwrite(
        src,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.5),
        metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"},
    )
    with ndi.open_tiff(src) as img:
        assert img.spacing == pytest.approx((2.0, 0.5, 0.25))
        assert img.unit == "um"
        img.save_tiff(data_dir / "again.tif")
    with ndi.open_tiff(data_dir / "again.tif") as back:
        assert back.spacing == pytest.approx((2.0, 0.5, 0.25))
        assert back.unit == "um"


def test_save_raw_round_trip(stack, data_dir):
    path, data = stack
    with ndi.open_tiff(path) as img:
        name = img.geometry.filename("stack")
        img.save_raw(data_dir / name)
        img.save_raw(data_dir / "be.raw", byte_order=">")
    assert (data_dir / name).stat().st_size == data.nbytes
    with ndi.open_raw(data_dir / name) as back:
        np.testing.assert_array_equal(back.array[0], data)
    np.testing.assert_array_equal(
        np.fromfile(data_dir / "be.raw", ">u2").reshape(data.shape), data
    )


def test_failed_save_keeps_previous_file_and_leaves_no_temp(
    monkeypatch, stack, data_dir
):
    path, data = stack
    target = data_dir / "result.tif"
    target.write_bytes(b"previous result")
    fail_block_write(monkeypatch, 3, errno.ENOSPC, "No space left on device")
    with ndi.open_tiff(path, mode="r") as img:
        big_endian = ndi.copy(img)  # any source: forces the block path below
    with pytest.raises(OSError, match="No space"):
        ndi.save_tiff(np.asarray(big_endian.array), target, block_bytes=4096)
    big_endian.close()
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in data_dir.iterdir()) == ["result.tif", "stack.tif"]
    np.testing.assert_array_equal(tifffile.imread(path), data)  # source intact


def test_cancelled_save_leaves_nothing(stack, data_dir):
    path, _ = stack
    with ndi.open_tiff(path) as img:
        steps = ndi.iter_save_tiff(img, data_dir / "x.tif")
        next(steps)
        steps.close()
    assert sorted(p.name for p in data_dir.iterdir()) == ["stack.tif"]


def test_save_refuses_to_overwrite_its_source(stack):
    path, data = stack
    with ndi.open_tiff(path) as img, pytest.raises(ValueError, match="onto itself"):
        img.save_tiff(path)
    np.testing.assert_array_equal(tifffile.imread(path), data)


def test_save_into_missing_folder(stack, data_dir):
    path, _ = stack
    with (
        ndi.open_tiff(path) as img,
        pytest.raises(FileNotFoundError, match="does not exist"),
    ):
        img.save_tiff(data_dir / "no" / "such.tif")


def test_saved_file_has_normal_permissions(stack, data_dir):
    path, _ = stack
    old = os.umask(0o022)
    try:
        with ndi.open_tiff(path) as img:
            img.save_tiff(data_dir / "perm.tif")
    finally:
        os.umask(old)
    assert os.stat(data_dir / "perm.tif").st_mode & 0o777 == 0o644


# --- the disk-image directory --------------------------------------------------
def test_disk_image_dir_default_and_env(monkeypatch, tmp_path):
    from napari_diskimage import _scratch

    monkeypatch.delenv(_scratch.ENV_VAR)
    default = ndi.get_disk_image_dir()
    assert "napari-diskimage" in str(default)
    assert not str(default).startswith("/tmp")
    monkeypatch.setenv(_scratch.ENV_VAR, str(tmp_path / "env"))
    assert ndi.get_disk_image_dir() == tmp_path / "env"


def test_set_disk_image_dir_creates_and_is_used(tmp_path):
    new = tmp_path / "a" / "b"
    assert ndi.set_disk_image_dir(new) == new
    assert new.is_dir()
    assert ndi.get_disk_image_dir() == new
    with ndi.copy(np.zeros((4, 4), np.uint8)) as out:
        assert out.path.parent == new


def test_set_disk_image_dir_not_writable(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(OSError, match=r"not a folder|choose a folder"):
        ndi.set_disk_image_dir(afile)
    with pytest.raises(OSError, match="file"):
        ndi.set_disk_image_dir(afile / "sub")
    assert ndi.get_disk_image_dir() != afile
