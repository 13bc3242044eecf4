"""The exception family: callers can tell a bad file from a closed image
from a bug, and every message names the file and the fix."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from napari_diskimage.storage import tiff as _tiff


def test_a_corrupt_tiff_is_a_corrupt_file_error(data_dir):
    path = data_dir / "not.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 100)
    with pytest.raises(ndi.CorruptFileError) as info:
        ndi.open_tiff(path)
    assert isinstance(info.value, ValueError)
    assert info.value.path == str(path.absolute())
    assert str(path.absolute()) in str(info.value)


def test_a_truncated_tiff_is_a_corrupt_file_error(data_dir):
    path = data_dir / "cut.tif"
    tifffile.imwrite(path, np.zeros((4, 64, 64), np.uint16), photometric="minisblack")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ndi.CorruptFileError, match="truncated"):
        ndi.open_tiff(path)


def test_a_closed_image_is_a_closed_image_error():
    image = ndi.copy(np.zeros((3, 4), np.uint8))
    path = image.path
    image.close()
    for use in (
        lambda: image.array,
        lambda: image.write_pixel(1, 0, 0),
        lambda: image.load_plane(),
        lambda: ndi.copy(image),
    ):
        with pytest.raises(ndi.ClosedImageError) as info:
            use()
        assert isinstance(info.value, ValueError)
        assert str(path) in str(info.value) and "is closed" in str(info.value)


def test_a_bug_is_not_disguised_as_a_bad_file(data_dir, monkeypatch):
    path = data_dir / "good.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))

    def broken(*_args):
        raise RuntimeError("a bug in our code")

    monkeypatch.setattr(_tiff, "TiffHandle", broken)
    with pytest.raises(RuntimeError, match="a bug in our code"):
        ndi.open_tiff(path)


def test_error_message_is_the_whole_sentence():
    from napari_diskimage._errors import error_message

    exc = OSError(28, "not enough free space for x: free some space", "/d/f")
    assert error_message(exc) == "not enough free space for x: free some space: '/d/f'"
    assert error_message(ndi.ClosedImageError("closed")) == "closed"
