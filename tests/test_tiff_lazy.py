"""Compressed and tiled TIFFs: lazy reads, cache, read-only, copy, metadata,
several series and pyramids."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import tracemalloc

import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from napari_diskimage.io import stream


def ramp(shape, dtype="uint16"):
    """Pixels that differ along every axis and compress well."""
    total = np.zeros(shape, np.uint32)
    for axis, n in enumerate(shape):
        index = [1] * len(shape)
        index[axis] = n
        total += np.arange(n, dtype=np.uint32).reshape(index) * (7 + axis)
    return (total % 4001).astype(dtype)


@pytest.fixture
def tiled(data_dir):
    """A 4-plane 256x256 uint16 Deflate file in 64x64 tiles (16 per plane)."""
    data = ramp((4, 256, 256)) + np.random.default_rng(0).integers(
        0, 9, (4, 256, 256), dtype=np.uint16
    )
    path = data_dir / "tiled.tif"
    tifffile.imwrite(
        path, data, tile=(64, 64), compression="zlib", photometric="minisblack"
    )
    return path, data


def tile_bytes(path, page, index):
    with tifffile.TiffFile(path) as tif:
        return tif.pages[page].databytecounts[index]


# --- reading lazily ----------------------------------------------------------
def test_a_region_decodes_only_its_tiles_and_is_cached(tiled):
    path, data = tiled
    with ndi.open_tiff(path) as img:
        assert not img.is_mapped and ndi.is_disk_image(img)
        assert img.storage.chunks_decoded == 0
        opened = img.bytes_read
        # one tile: plane 2, rows 70..99, columns 130..159 lie in tile (1, 2)
        got = img.read_region(0, 0, 2, 70, 30, 1, 130, 30, 1)
        np.testing.assert_array_equal(got, data[2, 70:100, 130:160])
        assert img.storage.chunks_decoded == 1
        assert img.bytes_read - opened == tile_bytes(path, 2, 1 * 4 + 2)
        # the same region again comes from the cache: nothing read
        before = img.bytes_read
        np.testing.assert_array_equal(
            img.load_plane(2, size_x=30, size_y=30, offset_x=130, offset_y=70),
            data[2, 70:100, 130:160],
        )
        assert img.bytes_read == before and img.storage.chunks_decoded == 1
        # a strided read of a whole plane decodes that plane's 16 tiles only
        np.testing.assert_array_equal(
            img.load_plane(z=3, stride_x=8, stride_y=8), data[3, ::8, ::8]
        )
        assert img.storage.chunks_decoded == 1 + 16


def test_opening_does_not_grow_with_the_file(data_dir):
    """Header bytes only: a 64x bigger file costs the same to open."""
    costs = []
    for side in (64, 512):
        data = np.random.default_rng(1).integers(0, 4000, (side, side), np.uint16)
        path = data_dir / f"noise{side}.tif"
        tifffile.imwrite(path, data, compression="lzw", rowsperstrip=64)
        with ndi.open_tiff(path) as img:
            assert img.storage.chunks_decoded == 0
            costs.append(img.bytes_read)
            np.testing.assert_array_equal(img.load_plane(), data)
    small, large = costs
    assert large < 2 * small + 512, costs  # the strip table grows a little


def test_the_cache_is_bounded(tiled):
    path, data = tiled
    tile = 64 * 64 * 2
    with ndi.open_tiff(path, cache_bytes=5 * tile) as img:
        np.testing.assert_array_equal(img.array[0, 0], data)
        cache = img.storage.handle.cache
        assert 0 < cache.nbytes <= 5 * tile
        assert img.storage.chunks_decoded == 4 * 16
        # the last tiles read are still cached, the first ones are not
        decoded = img.storage.chunks_decoded
        img.read_region(0, 0, 3, 200, 10, 1, 200, 10, 1)  # tile (3, 3) of plane 3
        assert img.storage.chunks_decoded == decoded
        img.read_region(0, 0, 0, 0, 10, 1, 0, 10, 1)  # tile (0, 0) of plane 0
        assert img.storage.chunks_decoded == decoded + 1
    with pytest.raises(ValueError, match="cache_bytes=-1"):
        ndi.open_tiff(path, cache_bytes=-1)


def test_reads_from_several_threads_agree(tiled):
    path, data = tiled
    errors = []
    with ndi.open_tiff(path) as img:

        def worker(z):
            try:
                for step in (1, 3, 5):
                    got = img.load_plane(z=z, stride_x=step, stride_y=step)
                    np.testing.assert_array_equal(got, data[z, ::step, ::step])
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(z % 4,)) for z in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors


def test_lazy_image_is_read_only_and_says_to_copy(tiled):
    path, _ = tiled
    with ndi.open_tiff(path) as img:
        assert not img.writable and img.mode == "r"
        with pytest.raises(IndexError, match="size_x is 256"):
            img.write_pixel(1, 256, 0)
        with pytest.raises(PermissionError) as info:
            img.write_pixel(1, 0, 0)
        message = str(info.value)
        assert "tiled.tif" in message and "compressed" in message
        assert "copy" in message
        assert "decoded lazily" in repr(img)
    with pytest.raises(PermissionError, match="copy"):
        ndi.open_tiff(path, mode="r+")


def test_closing_releases_the_file(tiled):
    path, _ = tiled

    def open_fds():
        found = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                found.add(os.readlink(f"/proc/self/fd/{fd}"))
        return found

    img = ndi.open_tiff(path)
    assert str(path) in open_fds()
    img.close()
    assert img.closed and str(path) not in open_fds()
    with pytest.raises(ValueError, match="closed"):
        img.load_plane()
    img = ndi.open_tiff(path)
    img.load_plane()
    del img  # dropped without close
    gc.collect()
    assert str(path) not in open_fds()


def test_contiguous_pixels_without_a_view_are_decoded(data_dir):
    """1-bit pixels, and channels apart from their RGB samples, cannot be
    mapped as (t, c, z, y, x) even uncompressed: read lazily, said why."""
    bits = np.indices((20, 30)).sum(axis=0) % 3 == 0
    path = data_dir / "bits.tif"
    tifffile.imwrite(path, bits)
    with ndi.open_tiff(path) as img:
        assert img.dtype == np.uint8 and not img.is_mapped
        np.testing.assert_array_equal(img.load_plane(), bits.astype(np.uint8))
        with pytest.raises(PermissionError, match="1 bit per pixel"):
            img.write_pixel(1, 0, 0)


def test_fancy_indexing_is_refused_with_advice(tiled):
    path, _ = tiled
    with ndi.open_tiff(path) as img, pytest.raises(TypeError, match="copy"):
        img.array[0, 0, [0, 1]]


def test_corrupt_tile_is_an_os_error_naming_the_file(data_dir):
    data = ramp((128, 128))
    path = data_dir / "broken.tif"
    tifffile.imwrite(path, data, tile=(64, 64), compression="zstd")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[3]
        nbytes = tif.pages[0].databytecounts[3]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * nbytes)
    with ndi.open_tiff(path) as img:
        np.testing.assert_array_equal(
            img.read_region(0, 0, 0, 0, 64, 1, 0, 64, 1), data[:64, :64]
        )
        with pytest.raises(OSError, match=r"broken\.tif"):
            img.load_plane()


def test_truncated_compressed_file_is_refused_at_open(data_dir):
    path = data_dir / "cut.tif"
    tifffile.imwrite(
        path, ramp((3, 64, 64)), compression="zlib", photometric="minisblack"
    )
    size = path.stat().st_size
    with tifffile.TiffFile(path) as tif:
        end = max(
            o + n
            for o, n in zip(
                tif.pages[-1].dataoffsets, tif.pages[-1].databytecounts, strict=True
            )
        )
    assert end <= size
    with open(path, "r+b") as fh:
        fh.truncate(end - 10)
    with pytest.raises(ValueError, match="truncated"):
        ndi.open_tiff(path)


# --- copy and save -----------------------------------------------------------
def test_copy_streams_into_a_mapped_scratch_image(tiled):
    path, data = tiled
    steps = []
    with ndi.open_tiff(path) as img:
        assert stream.Source(img).byte_runs(np.dtype("<u2")) is None
        out = ndi.copy(
            img,
            progress=lambda done, total: steps.append((done, total)),
            block_bytes=64 << 10,  # one 128-row band
        )
    with out:
        assert out.is_mapped and out.writable and out.is_scratch
        np.testing.assert_array_equal(out.array[0, 0], data)
        out.write_pixel(7, 3, 2, 1)
        assert out.array[0, 0, 1, 2, 3] == 7
    total = data.nbytes
    assert steps[-1] == (total, total) and len(steps) >= 8
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)


def test_copy_memory_stays_bounded(data_dir):
    """A 16 MiB compressed stack copies with about one block in memory."""
    data = ramp((16, 512, 1024))
    path = data_dir / "stack.tif"
    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=32)
    del data
    with ndi.open_tiff(path, cache_bytes=1 << 20) as img:
        tracemalloc.start()
        try:
            out = ndi.copy(img, block_bytes=1 << 20)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    with out:
        assert peak < 6 << 20, f"peak {peak / 2**20:.1f} MiB while copying 16 MiB"
        np.testing.assert_array_equal(out.array[0, 0, 15], ramp((16, 512, 1024))[15])


def test_save_tiff_of_a_lazy_image_round_trips(data_dir):
    data = ramp((3, 2, 40, 50), "uint8")  # ZCYX
    path = data_dir / "in.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        compression="lzw",
        resolution=(1 / 0.5, 1 / 0.25),
        metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "um"},
    )
    with ndi.open_tiff(path) as img:
        assert not img.is_mapped
        assert img.spacing == pytest.approx((2.0, 0.25, 0.5))
        saved = img.save_tiff(data_dir / "out.tif")
    with ndi.open_tiff(saved) as back:
        assert back.is_mapped
        np.testing.assert_array_equal(back.array[0], data.transpose(1, 0, 2, 3))
        assert back.spacing == pytest.approx((2.0, 0.25, 0.5))
        assert back.unit == "um"


# --- physical pixel size -----------------------------------------------------
def test_spacing_from_imagej(data_dir):
    path = data_dir / "ij.tif"
    tifffile.imwrite(
        path,
        ramp((3, 20, 30), "uint16"),
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.3),
        metadata={"axes": "ZYX", "spacing": 1.5, "unit": "micron"},
    )
    with ndi.open_tiff(path) as img:
        assert img.spacing == pytest.approx((1.5, 0.3, 0.2))
        assert img.unit == "um"


def test_spacing_from_ome_in_mixed_units(data_dir):
    path = data_dir / "ome.ome.tif"
    tifffile.imwrite(
        path,
        ramp((3, 20, 30)),
        ome=True,
        compression="zlib",
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.1,
            "PhysicalSizeY": 0.2,
            "PhysicalSizeZ": 500.0,
            "PhysicalSizeZUnit": "nm",
        },
    )
    with ndi.open_tiff(path) as img:
        assert img.spacing == pytest.approx((0.5, 0.2, 0.1))
        assert img.unit == "um"


@pytest.mark.parametrize("dtype", ["uint16", "int16", "float64"])
def test_save_tiff_writes_spacing_back(data_dir, dtype):
    """ImageJ types and tifffile's shaped TIFF both keep z, y, x and unit."""
    img = ndi.copy(ramp((3, 20, 30), dtype))
    img.spacing, img.unit = (4.0, 0.5, 0.25), "um"
    with img:
        saved = img.save_tiff(data_dir / "s.tif")
    with ndi.open_tiff(saved) as back:
        assert back.spacing == pytest.approx((4.0, 0.5, 0.25))
        assert back.unit == "um"
    # Fiji / tifffile see the same pixel size
    with tifffile.TiffFile(saved) as tif:
        xres = tif.pages[0].tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(4.0)


# --- RGB, series ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "kwargs", "rgb"),
    [
        ((20, 30, 3), {"photometric": "rgb"}, True),  # mapped
        ((20, 30, 3), {"photometric": "rgb", "compression": "jpeg"}, True),
        (
            (3, 20, 30),
            {"photometric": "rgb", "planarconfig": "separate", "compression": "lzw"},
            True,
        ),
        (
            (20, 30, 4),
            {
                "photometric": "rgb",
                "extrasamples": ["unassalpha"],
                "compression": "zlib",
                "dtype": "uint16",
            },
            True,
        ),
        ((20, 30, 3), {"photometric": "rgb", "dtype": "float32"}, False),
        ((3, 20, 30), {"photometric": "minisblack"}, False),  # 3 planes
    ],
    ids=["rgb8", "jpeg", "planar", "rgba16", "float-rgb", "gray-stack"],
)
def test_rgb_samples_are_channels_flagged_rgb(data_dir, shape, kwargs, rgb):
    kwargs = dict(kwargs)
    data = ramp(shape, kwargs.pop("dtype", "uint8"))
    path = data_dir / "c.tif"
    tifffile.imwrite(path, data, **kwargs)
    with ndi.open_tiff(path) as img:
        assert img.rgb is rgb
        if rgb or kwargs.get("photometric") == "rgb":
            assert img.shape[1] == min(shape) and img.shape[2] == 1
        else:
            assert img.shape[2] == 3 and img.shape[1] == 1
    [info] = ndi.tiff_series(path)
    assert info.rgb is rgb
    with ndi.open_tiff(path) as img, ndi.copy(img) as copied:
        assert copied.rgb is rgb  # an edited copy still shows in colour


def test_several_series(data_dir):
    gray = ramp((4, 20, 30))
    rgb = ramp((10, 12, 3), "uint8")
    path = data_dir / "two.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            gray, compression="zlib", photometric="minisblack", metadata={"axes": "ZYX"}
        )
        tw.write(rgb, photometric="rgb")
    infos = ndi.tiff_series(path)
    assert [i.shape for i in infos] == [(1, 1, 4, 20, 30), (1, 3, 1, 10, 12)]
    assert [i.mapped for i in infos] == [False, True]
    assert [i.rgb for i in infos] == [False, True]
    with ndi.open_tiff(path) as first:
        np.testing.assert_array_equal(first.array[0, 0], gray)
    with ndi.open_tiff(path, series=infos[1].index) as second:
        assert second.rgb
        np.testing.assert_array_equal(second.array[0, :, 0], rgb.transpose(2, 0, 1))
    with pytest.raises(IndexError, match=r"2 series \(0..1\)"):
        ndi.open_tiff(path, series=2)
    with pytest.raises(TypeError, match="integer"):
        ndi.open_tiff(path, series="1")


# --- pyramids ----------------------------------------------------------------
def write_pyramid(path, data, ome=False, compression="zlib", **kwargs):
    """Base level plus two SubIFD levels, each half the size of the last."""
    with tifffile.TiffWriter(path, ome=ome) as tw:
        tw.write(data, subifds=2, tile=(32, 32), compression=compression, **kwargs)
        tw.write(
            data[..., ::2, ::2], subfiletype=1, tile=(32, 32), compression=compression
        )
        tw.write(
            data[..., ::4, ::4], subfiletype=1, tile=(32, 32), compression=compression
        )


@pytest.mark.parametrize("ome", [False, True], ids=["subifds", "ome"])
def test_pyramid_levels_are_exposed(data_dir, ome):
    data = ramp((2, 256, 192))
    path = data_dir / "pyramid.tif"
    write_pyramid(
        path,
        data,
        ome=ome,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    with ndi.open_tiff(path) as img:
        levels = img.display_levels
        assert levels[0] is img
        assert [lv.shape for lv in levels] == [
            (1, 1, 2, 256, 192),
            (1, 1, 2, 128, 96),
            (1, 1, 2, 64, 48),
        ]
        assert img.storage.chunks_decoded == 0
        for k, level in enumerate(levels):
            f = 2**k
            np.testing.assert_array_equal(level.load_plane(z=1), data[1, ::f, ::f])
            assert not level.writable and ndi.is_disk_image(level)
        # the coarsest level was read from its own tiles (2x2 tiles per plane)
        decoded = img.storage.chunks_decoded
        levels[2].read_region(0, 0, 0, 0, 64, 1, 0, 48, 1)
        assert img.storage.chunks_decoded - decoded == 4
        if ome:
            assert levels[2].spacing == pytest.approx((1.0, 2.0, 2.0))
    assert all(level.closed for level in levels)
    infos = ndi.tiff_series(path)
    assert infos[0].levels == 3
    # levels tifffile lists as series of their own are flagged reduced
    assert [i.reduced for i in infos] == [False] + [True] * (len(infos) - 1)


def test_mapped_pyramid_maps_the_base_level(data_dir):
    data = ramp((256, 256))
    path = data_dir / "raw-pyramid.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, subifds=1)
        tw.write(data[::2, ::2], subfiletype=1)
    with ndi.open_tiff(path) as img:
        assert img.is_mapped
        coarse = img.display_levels[1]
        assert coarse.shape == (1, 1, 1, 128, 128)
        np.testing.assert_array_equal(coarse.load_plane(), data[::2, ::2])
    assert coarse.closed  # closed with the image: the file is released


def test_a_plain_image_is_its_only_level(tiled):
    path, _ = tiled
    with ndi.open_tiff(path) as img:
        assert img.display_levels == [img]


def test_the_display_pyramid_reads_lazy_images(tiled):
    """napari's levels (``display``) read a compressed file through read_region."""
    pyramid = pytest.importorskip("napari_diskimage.display")
    path, data = tiled
    with ndi.open_tiff(path) as img:
        level = pyramid.display_levels(img)[0]
        np.testing.assert_array_equal(
            np.asarray(level[2, 10:50:3, ::7]), data[2, 10:50:3, ::7]
        )
        lo, hi = pyramid.sample_contrast_limits(img)
        assert data.min() <= lo < hi <= data.max()


def test_ome_series_each_get_their_own_pixel_size(data_dir):
    path = data_dir / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            ramp((2, 20, 30)),
            compression="zlib",
            metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "Name": "a"},
        )
        tw.write(
            ramp((3, 16, 24), "uint8"),
            photometric="minisblack",
            metadata={
                "axes": "ZYX",
                "PhysicalSizeX": 2.0,
                "PhysicalSizeY": 2.0,
                "Name": "b",
            },
        )
    infos = ndi.tiff_series(path)
    assert [i.name for i in infos] == ["a", "b"]
    with ndi.open_tiff(path, series=1) as img:
        assert img.shape == (1, 1, 3, 16, 24)
        assert img.spacing[1:] == pytest.approx((2.0, 2.0))
        np.testing.assert_array_equal(img.array[0, 0], ramp((3, 16, 24), "uint8"))
    with ndi.open_tiff(path) as img:
        assert img.spacing[2] == pytest.approx(0.5)
