"""The bounded 3D overview and full-resolution 3D boxes (GUI-free core).

napari renders 3D from the coarsest level of a multiscale layer; these
tests check that the coarsest level of the display pyramid reads a bounded
part of the file whatever the size of the volume (sparse files up to
64 GiB: no disk space used), that every other level keeps every z plane
(exact 2D planes), and that a 3D box reads exactly its own voxels.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import napari_diskimage as ndi
from napari_diskimage.display import (
    OVERVIEW_BYTES,
    OVERVIEW_SIDE,
    OVERVIEW_VOXELS,
    display_levels,
)
from napari_diskimage.display.box import Box, fit_box, read_box

GiB = 1 << 30


def _sparse_volume(tmp_path, x, y, z, dtype="UInt16"):
    path = tmp_path / f"vol_{x}x{y}x{z}_{dtype}.raw"
    with open(path, "wb") as fh:
        fh.truncate(x * y * z * np.dtype(dtype.lower()).itemsize)
    return path


@pytest.mark.parametrize(
    "size",
    [
        (4096, 2048, 64),  # 1 GiB
        (4096, 2048, 256),  # 4 GiB: today's 3D read 507 MiB
        (8192, 4096, 256),  # 16 GiB
        (8192, 4096, 1024),  # 64 GiB
        (65536, 256, 2048),  # 64 GiB of long rows
        (256, 256, 65536),  # 8 GiB of many small planes
    ],
)
def test_the_coarsest_level_reads_a_bounded_part_of_any_volume(tmp_path, size):
    path = _sparse_volume(tmp_path, *size)
    with ndi.open_raw(path) as img:
        levels = display_levels(img)
        shapes = [lv.shape for lv in levels]
        assert all(
            all(a >= b for a, b in zip(s, t, strict=True)) and s != t
            for s, t in itertools.pairwise(shapes)
        ), shapes  # strictly decreasing, as napari requires
        assert all(lv.zfactor == 1 for lv in levels[:-1])  # exact 2D planes
        coarsest = levels[-1]
        assert coarsest.size <= OVERVIEW_VOXELS
        assert max(coarsest.shape) <= OVERVIEW_SIDE
        before = img.bytes_read
        data = np.asarray(coarsest)  # what napari reads for 3D
        read = img.bytes_read - before
        assert data.shape == coarsest.shape
        assert 0 < read <= OVERVIEW_BYTES, read
        if coarsest.zfactor > 1:  # y/x coarser than every 2D level
            assert coarsest.factor > levels[-2].factor


def test_the_overview_holds_the_files_strided_voxels(tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 60000, (96, 300, 520), dtype=np.uint16)
    path = tmp_path / "vol_520x300x96_UInt16.raw"
    vol.tofile(path)
    with ndi.open_raw(path) as img:
        levels = display_levels(img, overview_bytes=1 << 20)
        ov = levels[-1]
        assert ov.zfactor > 1
        expected = vol[:: ov.zfactor, :: ov.factor, :: ov.factor]
        np.testing.assert_array_equal(np.asarray(ov), expected)
        # every finer level keeps every plane: the 2D view shows exact planes
        for lv in levels[:-1]:
            assert lv.shape[0] == 96
            np.testing.assert_array_equal(
                np.asarray(lv[37]), vol[37, :: lv.factor, :: lv.factor]
            )


def test_a_volume_within_the_budget_gets_no_overview(tmp_path):
    path = _sparse_volume(tmp_path, 512, 512, 64)
    with ndi.open_raw(path) as img:
        levels = display_levels(img)
        assert [lv.zfactor for lv in levels] == [1]


def test_a_single_plane_gets_no_overview(tmp_path):
    path = _sparse_volume(tmp_path, 32768, 16384, 1, "UInt8")
    with ndi.open_raw(path) as img:
        assert all(lv.zfactor == 1 for lv in display_levels(img))


def test_a_box_reads_its_own_voxels_only(tmp_path):
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 255, (40, 600, 2000), dtype=np.uint8)
    path = tmp_path / "vol_2000x600x40_UInt8.raw"
    vol.tofile(path)
    with ndi.open_raw(path) as img:
        box, messages = fit_box(img, y=(100, 228), x=(300.2, 555.7), z=(5, 24))
        assert messages == []
        assert box == Box(t=0, c=0, z=(5, 25), y=(100, 228), x=(300, 556))
        before = img.bytes_read
        data = read_box(img, box)
        np.testing.assert_array_equal(data, vol[5:25, 100:228, 300:556])
        assert img.bytes_read - before <= 1.1 * data.nbytes


def test_a_box_around_the_current_slice_fits_the_budget(tmp_path):
    path = _sparse_volume(tmp_path, 4096, 4096, 1024)
    with ndi.open_raw(path) as img:
        box, messages = fit_box(img, y=(0, 1024), x=(0, 1024), z=500, max_voxels=2**26)
        assert box.voxels <= 2**26
        assert box.z[0] <= 500 < box.z[1] and box.shape == (64, 1024, 1024)
        assert messages == []
        # near the end of the volume the range is shifted, not cut
        box, _ = fit_box(img, y=(0, 1024), x=(0, 1024), z=1020, max_voxels=2**26)
        assert box.z == (960, 1024)


def test_a_box_too_large_is_clipped_with_a_message(tmp_path):
    path = _sparse_volume(tmp_path, 8192, 8192, 512)
    with ndi.open_raw(path) as img:
        box, messages = fit_box(img, y=(-50, 9000), x=(0, 8192), z=(0, 511))
        assert box.voxels <= 512**3 and max(box.shape) <= OVERVIEW_SIDE
        assert any("texture limit" in m for m in messages)
        assert any("planes" in m for m in messages)
        small, messages = fit_box(
            img, y=(0, 2048), x=(0, 2048), z=3, max_voxels=2048 * 2048
        )
        assert small.shape[0] == 16 and small.voxels <= 2048 * 2048
        assert "zoom in" in messages[0]


def test_a_box_outside_the_volume_or_of_a_single_plane_is_refused(tmp_path):
    path = _sparse_volume(tmp_path, 100, 100, 10)
    with ndi.open_raw(path) as img:
        with pytest.raises(ValueError, match=r"outside the volume.*pan the view"):
            fit_box(img, y=(200, 300), x=(0, 50), z=3)
        with pytest.raises(ValueError, match=r"t = 2 is outside 0\.\.0"):
            fit_box(img, y=(0, 50), x=(0, 50), z=3, t=2)
    flat = _sparse_volume(tmp_path, 100, 100, 1)
    single = pytest.raises(ValueError, match=r"single z plane.*2D")
    with ndi.open_raw(flat) as img, single:
        fit_box(img, y=(0, 50), x=(0, 50), z=0)


def test_every_channel_and_processing_outputs_get_the_overview(tmp_path):
    path = tmp_path / "vol_2048x2048x256x3_UInt16.raw"
    with open(path, "wb") as fh:
        fh.truncate(2048 * 2048 * 256 * 3 * 2)
    with ndi.open_raw(path) as img:
        for c in range(3):
            coarsest = display_levels(img, c)[-1]
            assert coarsest.zfactor > 1 and coarsest.channel == c
            before = img.bytes_read
            np.asarray(coarsest)
            assert img.bytes_read - before <= OVERVIEW_BYTES
    out = ndi.new_disk_image(ndi.Geometry("uint16", 2048, 2048, 256))
    with out:  # a processing result is a scratch disk image like this one
        assert display_levels(out)[-1].zfactor > 1
