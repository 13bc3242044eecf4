"""The display pyramid: lazy strided levels read through read_region."""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

import napari_diskimage as ndi
from napari_diskimage.display import (
    COARSEST_SIZE,
    DisplayLevel,
    display_axes,
    display_levels,
    sample_contrast_limits,
)
from napari_diskimage.display import cache as _cache


def _volume(shape=(2, 1, 5, 37, 41), dtype=np.uint16) -> np.ndarray:
    n = int(np.prod(shape))
    return (np.arange(n) % 1256).astype(dtype).reshape(shape)


@pytest.fixture
def volume_tiff(data_dir):
    """A (t, c, z, y, x) = (2, 1, 5, 37, 41) uint16 TIFF and its pixels."""
    data = _volume()
    path = data_dir / "volume.tif"
    ndi.save_tiff(data, path)
    return path, data


@pytest.mark.parametrize("factor", [1, 2, 4, 64])
def test_level_is_the_image_strided_in_y_and_x(volume_tiff, factor):
    path, data = volume_tiff
    with ndi.open_tiff(path) as image:
        level = DisplayLevel(image, 0, factor)
        expected = data[:, 0, :, ::factor, ::factor]
        assert level.shape == expected.shape
        assert level.ndim == 4 and level.size == expected.size
        assert level.dtype == np.uint16
        np.testing.assert_array_equal(np.asarray(level), expected)


KEYS = [
    (1,),
    (-1, 2),
    (Ellipsis, 3),
    (0, slice(1, 4), slice(None, None, -1)),
    (1, 4, slice(3, -2, 3), slice(None, None, -2)),
    (-1, -1, -1, -1),
    (slice(10, 2),),
    (slice(None), slice(None, None, 2), Ellipsis, np.int64(5)),
]


@pytest.mark.parametrize("key", KEYS)
def test_indexing_matches_numpy(volume_tiff, key):
    path, data = volume_tiff
    with ndi.open_tiff(path) as image:
        for factor in (1, 2):
            level = DisplayLevel(image, 0, factor)
            expected = data[:, 0, :, ::factor, ::factor][key]
            view = level[key]
            assert view.shape == expected.shape
            np.testing.assert_array_equal(np.asarray(view), expected)
            # views of views compose
            np.testing.assert_array_equal(np.asarray(view[...]), expected[...])


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(
        *[
            st.one_of(
                st.integers(-3, 40),
                st.slices(45),
                st.just(Ellipsis),
            )
            for _ in range(3)
        ]
    )
)
def test_random_keys_match_numpy(key):
    data = _volume((1, 1, 4, 23, 29))
    image = ndi.copy(data)
    try:
        level = DisplayLevel(image, 0, 2)
        reference = data[0, 0, :, ::2, ::2]
        try:
            expected = reference[key]
        except IndexError:
            with pytest.raises(IndexError):
                np.asarray(level[key])
            return
        np.testing.assert_array_equal(np.asarray(level[key]), expected)
    finally:
        image.close()


def test_indexing_reads_nothing_and_asarray_reads_only_the_view(data_dir):
    data = _volume((1, 1, 6, 300, 400))
    path = data_dir / "v.tif"
    ndi.save_tiff(data, path)
    with ndi.open_tiff(path) as image:
        level = display_levels(image)[0]
        view = level[:, 100:110, 50:60]  # what napari does before projecting
        assert image.bytes_read == 0
        plane = np.asarray(view[3])
        np.testing.assert_array_equal(plane, data[0, 0, 3, 100:110, 50:60])
        # 10 rows of 10 pixels: one block of 10 rows at most
        assert image.bytes_read <= 10 * 400 * 2


def test_unsupported_keys_are_refused(volume_tiff):
    path, _ = volume_tiff
    with ndi.open_tiff(path) as image:
        level = DisplayLevel(image, 0, 1)
        with pytest.raises(TypeError, match="integers, slices"):
            level[[0, 1]]
        with pytest.raises(IndexError, match="too many indices"):
            level[0, 0, 0, 0, 0]
        with pytest.raises(IndexError, match="out of bounds"):
            level[2]
        with pytest.raises(IndexError, match="single ellipsis"):
            level[..., 0, ...]


def test_axes_size_one_are_dropped_and_channels_are_separate(data_dir):
    data = _volume((1, 3, 1, 20, 30))
    with ndi.copy(data) as image:
        assert display_axes(image) == "yx"
        for c in range(3):
            level = DisplayLevel(image, c, 1)
            assert level.shape == (20, 30)
            np.testing.assert_array_equal(np.asarray(level), data[0, c, 0])
        with pytest.raises(IndexError, match="channel 3"):
            DisplayLevel(image, 3, 1)


def test_levels_halve_down_to_a_few_hundred_pixels():
    image = ndi.new_disk_image(ndi.Geometry("uint8", 3000, 1100, 2))
    with image:
        levels = display_levels(image)
        shapes = [lv.shape for lv in levels]
        assert shapes == [
            (2, 1100, 3000),
            (2, 550, 1500),
            (2, 275, 750),
            (2, 138, 375),
        ]
        assert max(shapes[-1][1:]) <= COARSEST_SIZE < max(shapes[-2][1:])
        assert [lv.factor for lv in levels] == [1, 2, 4, 8]
        # napari needs strictly decreasing sizes
        sizes = [lv.size for lv in levels]
        assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)


def test_small_image_has_one_level():
    with ndi.copy(np.zeros((97, 125), np.uint16)) as image:
        assert [lv.shape for lv in display_levels(image)] == [(97, 125)]


def test_written_pixel_shows_at_every_level_that_covers_it():
    data = np.zeros((1, 1, 3, 1200, 1300), np.uint16)
    with ndi.copy(data) as image:
        levels = display_levels(image)
        assert len(levels) == 3
        before = [np.asarray(lv[1]) for lv in levels]
        image.write_pixel(999, x=1288, y=1196, z=1)
        for lv, old in zip(levels, before, strict=True):
            assert old.max() == 0
            plane = np.asarray(lv[1])
            j, i = 1196 // lv.factor, 1288 // lv.factor
            assert plane[j, i] == 999
            assert plane.sum() == 999  # only that pixel changed
        image.write_pixel(7, x=1, y=1, z=1)  # not on the stride-2 grid
        assert np.asarray(levels[0][1, 1, 1]) == 7
        assert np.asarray(levels[1][1]).sum() == 999


def test_a_truncated_file_gives_oserror_not_a_crash(data_dir):
    data = _volume((1, 1, 4, 64, 64))
    path = data_dir / "trunc.tif"
    ndi.save_tiff(data, path)
    with ndi.open_tiff(path) as image:
        level = display_levels(image)[0]
        os.truncate(path, os.path.getsize(path) // 2)
        with pytest.raises(OSError, match="truncated"):
            np.asarray(level[3])


class _OtherImage:
    """A disk-image-like object with its own read_region (e.g. compressed)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.path = "other"
        self.calls = 0

    def read_region(self, t, c, z, y0, ny, sy, x0, nx, sx):
        self.calls += 1
        return self.data[
            t, c, z, y0 : y0 + (ny - 1) * sy + 1 : sy, x0 : x0 + (nx - 1) * sx + 1 : sx
        ].copy()


def test_levels_read_only_through_read_region():
    data = _volume((1, 2, 3, 50, 60))
    other = _OtherImage(data)
    level = DisplayLevel(other, 1, 2)
    np.testing.assert_array_equal(np.asarray(level), data[0, 1, :, ::2, ::2])
    assert other.calls == 3
    assert sample_contrast_limits(other, 1) == (data[0, 1].min(), data[0, 1].max())


# --- contrast limits ----------------------------------------------------------
def test_contrast_limits_are_those_of_the_data(data_dir):
    data = _volume((1, 1, 9, 97, 125))
    with ndi.copy(data) as image:
        assert sample_contrast_limits(image) == (0.0, 1255.0)


def test_contrast_limits_read_a_bounded_sample(data_dir):
    # 48 MiB of uint16: the sample may read at most 16 MiB of it
    shape = (1, 1, 24, 1024, 1024)
    path = data_dir / "big.tif"
    memmap = tifffile.memmap(
        path, shape=shape[2:], dtype=np.uint16, imagej=True, metadata={"axes": "ZYX"}
    )
    memmap[:] = 100
    memmap[:, 500:520, :] = 1100  # a band every sample crosses
    memmap.flush()
    del memmap
    with ndi.open_tiff(path) as image:
        lo, hi = sample_contrast_limits(image)
        assert image.bytes_read <= 16 << 20
        assert (lo, hi) == (100.0, 1100.0)
        image.bytes_read = 0
        sample_contrast_limits(image, budget=1 << 20)
        assert 0 < image.bytes_read <= 1 << 20


def test_contrast_limits_of_odd_data():
    with ndi.copy(np.full((4, 5), 7, np.uint8)) as image:
        assert sample_contrast_limits(image) == (7.0, 8.0)
    data = np.array([[np.nan, 1.5], [np.inf, -2.0]], np.float32)
    with ndi.copy(data) as image:
        assert sample_contrast_limits(image) == (-2.0, 1.5)
    with ndi.copy(np.full((3, 3), np.nan, np.float64)) as image:
        assert sample_contrast_limits(image) == (0.0, 1.0)
    # a row longer than the budget: part of one row is read
    with ndi.copy(np.arange(5000, dtype=np.uint16)[None]) as image:
        lo, hi = sample_contrast_limits(image, budget=1000)
        assert image.bytes_read <= 1000
        assert (lo, hi) == (0.0, 499.0)


# --- the plane cache of strided levels ----------------------------------------
def test_coarse_planes_are_read_once_until_written():
    data = _volume((1, 1, 3, 1200, 1300))
    with ndi.copy(data) as image:
        coarse = display_levels(image)[-1]
        first = np.asarray(coarse[2])
        read = image.bytes_read
        assert read > 0
        # napari asks again for the thumbnail, and for parts of it
        np.testing.assert_array_equal(np.asarray(coarse[2]), first)
        np.testing.assert_array_equal(
            np.asarray(coarse[2, 10:20, ::-3]), data[0, 0, 2, ::4, ::4][10:20, ::-3]
        )
        assert image.bytes_read == read
        # a coarser plane is derived from a finer cached one, without reading
        levels = display_levels(image)
        np.asarray(levels[1][1])
        read = image.bytes_read
        np.testing.assert_array_equal(np.asarray(levels[2][1]), data[0, 0, 1, ::4, ::4])
        assert image.bytes_read == read
        image.write_pixel(1, x=0, y=0, z=2)
        assert np.asarray(coarse[2, 0, 0]) == 1
        assert image.bytes_read > read


def test_cache_sees_a_file_changed_by_another_program(data_dir, monkeypatch):
    data = _volume((1, 1, 2, 1100, 600))
    path = data_dir / "shared_600x1100x2_UInt16.raw"
    data.tofile(path)
    with ndi.open_raw(path) as image:
        coarse = display_levels(image)[1]
        assert np.asarray(coarse[0, 0, 0]) == data[0, 0, 0, 0, 0]
        time.sleep(0.05)  # a new modification time
        with open(path, "r+b") as fh:
            fh.write(np.uint16(999).tobytes())
        assert np.asarray(coarse[0, 0, 0]) == 999
        # and, whatever the file system's clock, after CACHE_SECONDS
        monkeypatch.setattr(_cache, "CACHE_SECONDS", 0.0)
        with open(path, "r+b") as fh:
            fh.write(np.uint16(998).tobytes())
        assert np.asarray(coarse[0, 0, 0]) == 998


def test_cache_is_bounded_and_forgets_dropped_images():
    with ndi.copy(np.ones((40, 1100, 1100), np.uint8)) as image:
        np.asarray(display_levels(image)[1])  # 40 planes of 550 x 550
        assert 0 < _cache.plane_cache.nbytes <= _cache.CACHE_BYTES
        _cache.clear_cache(image)
        assert _cache.plane_cache.nbytes == 0
        np.asarray(display_levels(image)[1])
        assert _cache.plane_cache.nbytes > 0
    del image
    gc.collect()
    assert _cache.plane_cache.nbytes == 0


# --- stored pyramid levels, colour, contrast from the coarsest level ----------
def _pyramid_tiff(path, base: np.ndarray, stored: int = 2) -> list[np.ndarray]:
    """A tiled, compressed pyramidal TIFF (SubIFDs) and its stored levels.

    Each stored level k holds ``base[::2**k, ::2**k] + 1000 * k``: a level
    made by striding the base instead would show other values.
    """
    levels = [base] + [
        base[:: 2**k, :: 2**k] + np.uint16(1000 * k) for k in range(1, stored + 1)
    ]
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], subifds=stored, tile=(256, 256), compression="zlib")
        for level in levels[1:]:
            tw.write(level, subfiletype=1, tile=(256, 256), compression="zlib")
    return levels


def test_stored_levels_are_shown_then_strided_below_them(data_dir):
    base = _volume((1, 1, 1, 2400, 2000))[0, 0, 0]
    path = data_dir / "pyramid.tif"
    stored = _pyramid_tiff(path, base)
    with ndi.open_tiff(path) as image:
        levels = display_levels(image)
        assert [lv.shape for lv in levels] == [
            (2400, 2000),
            (1200, 1000),
            (600, 500),
            (300, 250),  # strided by 2 over the coarsest stored level
        ]
        assert [lv.image for lv in levels[:3]] == image.display_levels
        assert levels[3].image is image.display_levels[2] and levels[3].factor == 2
        sizes = [lv.size for lv in levels]
        assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4
        decoded = image.storage.chunks_decoded
        np.testing.assert_array_equal(np.asarray(levels[2]), stored[2])
        # the 600 x 500 level only: 3 x 2 tiles of 256, not the base's 80
        assert image.storage.chunks_decoded - decoded <= 6
        np.testing.assert_array_equal(
            np.asarray(levels[1][100:300:3]), stored[1][100:300:3]
        )
        np.testing.assert_array_equal(np.asarray(levels[3]), stored[2][::2, ::2])
        np.testing.assert_array_equal(np.asarray(levels[0][5, 7:9]), base[5, 7:9])


def test_colour_levels_have_a_trailing_colour_axis(data_dir):
    rgb = (np.arange(700 * 900 * 3) % 251).astype(np.uint8).reshape(700, 900, 3)
    path = data_dir / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    with ndi.open_tiff(path) as image:
        assert image.rgb and image.shape == (1, 3, 1, 700, 900)
        levels = display_levels(image, (0, 1, 2))
        assert [lv.shape for lv in levels] == [(700, 900, 3), (350, 450, 3)]
        expected = rgb[::2, ::2]
        np.testing.assert_array_equal(np.asarray(levels[1]), expected)
        for key in [(Ellipsis, 1), (slice(10, 20), slice(None, None, -3)), (-1, 4, 2)]:
            np.testing.assert_array_equal(np.asarray(levels[1][key]), expected[key])
        assert levels[1].channel == (0, 1, 2)


def test_contrast_sample_reads_only_pixels_of_the_coarsest_level(data_dir):
    # 2048 x 2048: the coarsest level takes every 4th row and column; every
    # other pixel is 50000, which napari's first view never shows
    path = data_dir / "grid.tif"
    memmap = tifffile.memmap(path, shape=(2048, 2048), dtype=np.uint16)
    memmap[:] = 50000
    memmap[::4, ::4] = 100
    memmap[8, 8] = 300
    memmap.flush()
    del memmap
    with ndi.open_tiff(path) as image:
        assert display_levels(image)[-1].factor == 4
        assert sample_contrast_limits(image) == (100.0, 300.0)
        assert image.bytes_read <= 16 << 20
    # a pyramidal TIFF: its coarsest stored level only (tiles of 600 x 500)
    base = _volume((1, 1, 1, 2400, 2000))[0, 0, 0]
    path = data_dir / "pyramid.tif"
    stored = _pyramid_tiff(path, base)
    with ndi.open_tiff(path) as image:
        lo, hi = sample_contrast_limits(image)
        coarsest = stored[2][::2, ::2]
        assert (lo, hi) == (coarsest.min(), coarsest.max())
        assert lo >= 2000  # the values of the stored level, not of the base
        assert image.storage.chunks_decoded <= 6


def test_contrast_sample_of_a_compressed_image_decodes_a_bounded_part(data_dir):
    # 4096 x 4096 in 256 x 256 compressed tiles: a row of tiles decodes 2 MiB
    data = _volume((1, 1, 1, 4096, 4096))[0, 0, 0]
    path = data_dir / "tiled.tif"
    tifffile.imwrite(path, data, tile=(256, 256), compression="zlib")
    with ndi.open_tiff(path) as image:
        assert not image.is_mapped
        lo, hi = sample_contrast_limits(image, budget=4 << 20)
        # two rows of 16 tiles, not the 256 tiles the coarse rows cross
        assert image.storage.chunks_decoded <= 2 * 16
        assert lo == 0 and 1200 <= hi <= 1255  # the data span 0..1255
