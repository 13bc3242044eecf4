"""A full disk, a file-size limit and a read-only disk-image directory.

The full-disk tests run on a real 8 MiB tmpfs that the test mounts (as
root); they are skipped, with the reason, where mounting is not possible.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import napari_diskimage as ndi
from _fs import mount_tmpfs as _mount_tmpfs
from _fs import unmount as _unmount
from _subprocess import run_python
from napari_diskimage import _scratch
from napari_diskimage.io import atomic as _io

MiB = 1 << 20


@pytest.fixture
def small_fs():
    """An empty 8 MiB file system."""
    folder = _mount_tmpfs("size=8m,mode=0755")
    yield folder
    _unmount(folder)


@pytest.fixture
def disk_images_on_small_fs(small_fs):
    folder = ndi.set_disk_image_dir(small_fs / "disk-images")
    yield folder
    # nothing left behind on the small disk either
    assert sorted(os.listdir(folder)) == []


def fill(folder: Path) -> Path:
    """Another program fills the disk: write until ENOSPC."""
    path = folder / "filler.bin"
    chunk = b"\xff" * (64 << 10)
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_free_space_is_checked_first_and_refusals_give_the_numbers(
    disk_images_on_small_fs, small_fs
):
    too_big = np.zeros((16, 1024, 1024), np.uint8)  # 16 MiB on an 8 MiB disk
    with pytest.raises(OSError) as info:
        ndi.copy(too_big)
    err = info.value
    assert err.errno == errno.ENOSPC
    assert "needs 16.0 MiB" in str(err) and "8.0 MiB free" in str(err)
    assert str(disk_images_on_small_fs) in str(err)

    previous = small_fs / "out.tif"
    previous.write_bytes(b"the user's previous file")
    for save in (ndi.save_tiff, ndi.save_raw):
        with pytest.raises(OSError) as info:
            save(too_big, previous)
        assert info.value.errno == errno.ENOSPC
        message = str(info.value)
        assert re.search(r"needs 1[67]\.0 MiB but .* has 8\.0 MiB free", message)
        assert str(small_fs) in message
    assert previous.read_bytes() == b"the user's previous file"
    assert sorted(os.listdir(small_fs)) == ["disk-images", "out.tif"]

    # what fits still works
    fits = np.arange(2 * MiB, dtype=np.uint8).reshape(2, 1024, 1024)
    with ndi.copy(fits) as out:
        np.testing.assert_array_equal(out.load_plane(z=1), fits[1])


def test_reservation_protects_a_copy_when_the_disk_fills_meanwhile(
    disk_images_on_small_fs, small_fs, data_dir
):
    """Space is reserved before writing: another program filling the disk
    during the copy gets ENOSPC, the copy completes intact."""
    pixels = np.random.default_rng(1).integers(0, 255, (6, 1024, 1024), np.uint8)
    src_path = data_dir / "src_1024x1024x6_UInt8.raw"
    pixels.tofile(src_path)
    filled = []

    def progress(done, total):
        if not filled:
            filled.append(fill(small_fs))

    with ndi.open_raw(src_path) as src, src.copy(progress=progress) as out:
        assert filled[0].stat().st_size < 2.1 * MiB  # the disk did fill up
        np.testing.assert_array_equal(out.array[0, 0], pixels)


SOURCES = ["file, kernel copy", "big-endian file, block copy", "numpy array"]


@pytest.fixture(params=SOURCES)
def source(request, data_dir):
    """A 6 MiB image: (DiskImage or array, checksum-able file or None)."""
    pixels = np.random.default_rng(2).integers(0, 2**16, (3, 1024, 1024), np.uint16)
    if request.param == "numpy array":
        yield pixels, pixels, None
        return
    order = ">" if request.param.startswith("big") else "<"
    path = data_dir / "src_1024x1024x3_UInt16.raw"
    pixels.astype(order + "u2").tofile(path)
    with ndi.open_raw(path, byte_order=order) as img:
        yield img, pixels, path


@pytest.fixture
def no_reservation(monkeypatch):
    """A file system where space cannot be reserved ahead (posix_fallocate
    unsupported): the disk then fills *during* the write."""
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, offset, length: None)


def test_disk_full_mid_copy_stops_cleanly_and_the_next_copy_works(
    disk_images_on_small_fs, small_fs, source, no_reservation
):
    image, pixels, path = source
    before = sha(path) if path else None
    steps = []

    def progress(done, total):
        steps.append(done)
        if len(steps) == 1:
            fill(small_fs)  # after the free-space check, before any pixel

    with pytest.raises(OSError) as info:
        ndi.copy(image, progress=progress)
    err = info.value
    assert err.errno == errno.ENOSPC
    message = str(err)
    assert str(disk_images_on_small_fs) in message and "failed part-way" in message
    assert "partial file was removed" in message
    assert os.listdir(disk_images_on_small_fs) == []  # partial file gone
    if path:
        assert sha(path) == before  # source intact
    (small_fs / "filler.bin").unlink()
    with ndi.copy(image) as out:
        np.testing.assert_array_equal(out.array[0, 0], pixels)


@pytest.mark.parametrize("save", [ndi.save_tiff, ndi.save_raw])
def test_disk_full_mid_save_keeps_the_previous_file(
    disk_images_on_small_fs, small_fs, source, no_reservation, save
):
    image, pixels, path = source
    before = sha(path) if path else None
    target = small_fs / ("out.tif" if save is ndi.save_tiff else "out.raw")
    target.write_bytes(b"previous version")
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == 1:
            fill(small_fs)

    with pytest.raises(OSError) as info:
        save(image, target, progress=progress)
    assert info.value.errno == errno.ENOSPC
    assert str(target) in str(info.value)
    assert target.read_bytes() == b"previous version"
    assert sorted(os.listdir(small_fs)) == ["disk-images", "filler.bin", target.name]
    if path:
        assert sha(path) == before
    (small_fs / "filler.bin").unlink()
    save(image, target)
    if save is ndi.save_raw:
        saved = np.fromfile(target, "<u2").reshape(pixels.shape)
    else:
        with ndi.open_tiff(target) as img:
            saved = img.array[0, 0]
    np.testing.assert_array_equal(saved, pixels)


def test_disk_filled_between_check_and_reservation(
    disk_images_on_small_fs, small_fs, monkeypatch
):
    """Another program takes the space right after the free-space check:
    the reservation fails with a clear ENOSPC, before any pixel is written."""
    check = _scratch.check_free_space

    def check_then_fill(folder, needed, what):
        check(folder, needed, what)
        fill(small_fs)

    monkeypatch.setattr(_scratch, "check_free_space", check_then_fill)
    monkeypatch.setattr(_io, "check_free_space", check_then_fill)
    pixels = np.ones((4, 1024, 1024), np.uint8)
    with pytest.raises(OSError) as info:
        ndi.copy(pixels)
    assert info.value.errno == errno.ENOSPC
    assert "cannot reserve 4.0 MiB" in str(info.value)
    assert os.listdir(disk_images_on_small_fs) == []
    (small_fs / "filler.bin").unlink()
    target = small_fs / "out.raw"
    with pytest.raises(OSError, match=r"cannot reserve 4\.0 MiB"):
        ndi.save_raw(pixels, target)
    assert sorted(os.listdir(small_fs)) == ["disk-images", "filler.bin"]


FSIZE = """
import json, os, resource, sys
import numpy as np
import napari_diskimage as ndi
folder, reserve = sys.argv[1], sys.argv[2] == "reserve"
if not reserve:  # a file system that cannot reserve space ahead
    os.posix_fallocate = lambda fd, offset, length: None
pixels = np.arange(8 << 20, dtype=np.uint8).reshape(8, 1024, 1024)
src = os.path.join(folder, "src_1024x1024x8_UInt8.raw")
pixels.tofile(src)
target = os.path.join(folder, "out.raw")
with open(target, "wb") as fh:
    fh.write(b"previous")
# writes past 3 MiB now fail with EFBIG (Python ignores SIGXFSZ)
resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, resource.RLIM_INFINITY))
results = {}
with ndi.open_raw(src) as img:
    for name, fn in (
        ("copy", lambda: ndi.copy(img)),
        ("copy_array", lambda: ndi.copy(pixels)),
        ("save_raw", lambda: ndi.save_raw(img, target)),
        ("save_tiff", lambda: ndi.save_tiff(img, target)),
    ):
        try:
            fn()
            results[name] = ["ok", 0, ""]
        except OSError as exc:
            results[name] = [type(exc).__name__, exc.errno, str(exc)]
    resource.setrlimit(resource.RLIMIT_FSIZE, (-1, -1))
    with ndi.copy(img) as out:
        results["next_ok"] = bool((out.array[0, 0] == pixels).all())
with open(target, "rb") as fh:
    results["target"] = fh.read().decode()
results["files"] = sorted(os.listdir(folder))
results["scratch"] = sorted(os.listdir(os.environ["NAPARI_DISKIMAGE_DIR"]))
print(json.dumps(results))
"""


@pytest.mark.parametrize("reserve", ["reserve", "no-reserve"])
def test_file_size_limit_fails_part_way_with_a_clear_error(
    data_dir, disk_image_dir, reserve
):
    """RLIMIT_FSIZE: the free-space check passes (the disk has room) but the
    write fails with EFBIG, at the reservation or, without one, part-way
    through the pixels.  Run in a subprocess: the limit is per process."""
    out = run_python(FSIZE, str(data_dir), reserve)
    for name in ("copy", "copy_array", "save_raw", "save_tiff"):
        kind, code, message = out[name]
        assert (kind, code) == ("OSError", errno.EFBIG), (name, out[name])
        # save_tiff: tifffile writes the header and the file's last byte
        # first, so the limit stops it before the reservation
        reserved = reserve == "reserve" and name != "save_tiff"
        expected = "cannot reserve" if reserved else "failed part-way"
        assert expected in message and "File too large" in message, message
        folder = str(disk_image_dir) if name.startswith("copy") else str(data_dir)
        assert folder in message
    assert out["next_ok"] is True
    assert out["target"] == "previous"
    assert out["files"] == ["out.raw", "src_1024x1024x8_UInt8.raw"]
    assert out["scratch"] == []


# --- a disk-image directory that cannot be written -------------------------
@pytest.fixture
def read_only_fs():
    folder = _mount_tmpfs("size=1m")
    (folder / "disk-images").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    yield folder
    _unmount(folder)


def test_read_only_disk_image_dir_is_refused_clearly(read_only_fs, monkeypatch):
    folder = read_only_fs / "disk-images"
    with pytest.raises(PermissionError) as info:
        ndi.set_disk_image_dir(folder)
    assert str(folder) in str(info.value) and "not writable" in str(info.value)
    # the same folder given through the environment: refused at allocation
    monkeypatch.setenv(_scratch.ENV_VAR, str(folder))
    with pytest.raises(PermissionError) as info:
        ndi.copy(np.zeros((4, 4), np.uint8))
    assert str(folder) in str(info.value)
    assert "set_disk_image_dir" in str(info.value)
    # a folder that would have to be created on it
    monkeypatch.setenv(_scratch.ENV_VAR, str(read_only_fs / "new"))
    with pytest.raises(PermissionError, match="cannot create disk-image directory"):
        ndi.copy(np.zeros((4, 4), np.uint8))
    assert os.listdir(read_only_fs) == ["disk-images"]


def test_disk_image_dir_under_a_regular_file_is_refused(data_dir, monkeypatch):
    plain = data_dir / "a-file"
    plain.write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        ndi.set_disk_image_dir(plain / "disk-images")
    assert str(plain / "disk-images") in str(info.value)
    with pytest.raises(NotADirectoryError, match="not a folder"):
        ndi.set_disk_image_dir(plain)
    monkeypatch.setenv(_scratch.ENV_VAR, str(plain / "disk-images"))
    with pytest.raises(NotADirectoryError):
        ndi.new_disk_image(ndi.Geometry("uint8", 4, 4))
    assert plain.read_text() == "x"
