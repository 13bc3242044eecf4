"""Display levels read views that are not XY from the view cache while it
is valid: YZ / XZ planes, 3D overviews of block means, full-resolution
boxes; XY planes and stale caches go to the file."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from napari_diskimage.display import display_levels
from napari_diskimage.display.box import Box, read_box
from napari_diskimage.display.cached_views import valid_view_cache

pytestmark = pytest.mark.usefixtures("view_caches_cleared")


def _levels(image):
    # a small overview budget, so that this volume gets a 3D overview
    return display_levels(image, 0, overview_bytes=1 << 20, overview_voxels=1 << 20)


def _block_means(data: np.ndarray, fz: int, f: int) -> np.ndarray:
    z, y, x = (n // s for n, s in zip(data.shape, (fz, f, f), strict=True))
    whole = data[: z * fz, : y * f, : x * f].astype(np.float64)
    return whole.reshape(z, fz, y, f, x, f).mean(axis=(1, 3, 5))


def test_yz_planes_read_cache_chunks_not_the_file(scan_tiff):
    path, data = scan_tiff
    with ndi.open_tiff(path) as image:
        ndi.view_cache(image).close()
        levels = _levels(image)
        cache = valid_view_cache(image)
        assert cache is not None
        before, cached_before = image.bytes_read, cache.bytes_read
        np.testing.assert_array_equal(np.asarray(levels[0][:, :, 333]), data[:, :, 333])
        # a coarser 2D level keeps every z plane: the cache's exact values,
        # strided as the level is
        np.testing.assert_array_equal(
            np.asarray(levels[1][:, :, 100]), data[:, ::2, 200]
        )
        np.testing.assert_array_equal(
            np.asarray(levels[0][::-1, 5:50, 9]), data[::-1, 5:50, 9]
        )
        assert image.bytes_read == before  # not a byte of the file
        assert cache.bytes_read > cached_before
        # XY planes stay exact planes of the file, and XZ planes (a row of
        # each plane) are read from the file as they lie
        np.testing.assert_array_equal(np.asarray(levels[0][40]), data[40])
        assert image.bytes_read > before
        before, cached_before = image.bytes_read, cache.bytes_read
        np.testing.assert_array_equal(np.asarray(levels[0][:, 77, :]), data[:, 77, :])
        assert image.bytes_read - before == data[:, 77, :].nbytes
        assert cache.bytes_read == cached_before


def test_3d_overview_is_block_means_with_a_cache(scan_tiff):
    path, data = scan_tiff
    with ndi.open_tiff(path) as image:
        strided = _levels(image)[-1]
        shown = np.asarray(strided)  # no cache: strided samples of the file
        f, fz = strided.factor, strided.zfactor
        np.testing.assert_array_equal(shown, data[::fz, ::f, ::f])
        ndi.view_cache(image).close()
        overview = _levels(image)[-1]
        f, fz = overview.factor, overview.zfactor
        assert (fz, f) == (4, 4)  # the grid of the cache's second mean level
        shown = np.asarray(overview)
        means = _block_means(data, fz, f)
        part = shown[: means.shape[0], : means.shape[1], : means.shape[2]]
        # two levels of means, each rounded to the nearest grey level
        assert np.abs(part - means).max() <= 1.0
        # a strided sample is far from the means on a noisy scan_tiff
        sample = data[::fz, ::f, ::f][: means.shape[0], : means.shape[1]]
        assert np.abs(sample[:, :, : means.shape[2]] - means).max() > 1000


def test_zoomed_out_xy_planes_are_block_means_with_a_cache(scan_tiff):
    path, data = scan_tiff
    with ndi.open_tiff(path) as image:
        coarse = _levels(image)[1]
        assert (coarse.factor, coarse.zfactor) == (2, 1)
        # no cache: every other pixel of the plane
        np.testing.assert_array_equal(np.asarray(coarse[37]), data[37, ::2, ::2])
        ndi.view_cache(image).close()
        coarse = _levels(image)[1]
        shown = np.asarray(coarse[37])
        assert shown.shape == (300, 350)
        # the mean of 2 x 2 pixels of the 2 planes (36, 37) of its block
        means = _block_means(data[36:38], 2, 2)[0]
        assert np.abs(shown - means).max() <= 0.5
        assert np.abs(data[37, ::2, ::2] - means).max() > 1000  # not a sample
        shown = np.asarray(coarse[38, 10:90, 21:41])  # a region of the level
        np.testing.assert_allclose(
            shown, _block_means(data[38:40], 2, 2)[0, 10:90, 21:41], atol=0.5
        )
        # full resolution stays the exact planes of the file
        np.testing.assert_array_equal(np.asarray(_levels(image)[0][37]), data[37])


def test_our_write_falls_back_to_the_file(scan_tiff):
    path, data = scan_tiff
    with ndi.open_tiff(path, mode="r+") as image:
        ndi.view_cache(image).close()
        levels = _levels(image)
        np.asarray(levels[0][:, :, 333])
        assert valid_view_cache(image) is not None
        image.write_pixel(7, z=5, y=6, x=333)
        before = image.bytes_read
        yz = np.asarray(levels[0][:, :, 333])
        assert yz[5, 6] == 7  # never the stale cache
        expected = data[:, :, 333].copy()
        expected[5, 6] = 7
        np.testing.assert_array_equal(yz, expected)
        assert image.bytes_read > before
        assert valid_view_cache(image) is None


def test_a_changed_file_is_never_read_from_its_cache(scan_tiff):
    path, data = scan_tiff
    image = ndi.open_tiff(path)
    ndi.view_cache(image).close()
    levels = _levels(image)
    np.asarray(levels[0][:, :, 10])
    image.close()
    changed = data.copy()
    changed[:, :, 10] = 1
    tifffile.imwrite(path, changed)  # another program rewrites the file
    with ndi.open_tiff(path) as image:
        levels = _levels(image)
        np.testing.assert_array_equal(
            np.asarray(levels[0][:, :, 10]), changed[:, :, 10]
        )
        assert valid_view_cache(image) is None


def test_3d_box_reads_the_cache_when_valid(scan_tiff):
    path, data = scan_tiff
    box = Box(t=0, c=0, z=(30, 90), y=(100, 260), x=(50, 400))
    with ndi.open_tiff(path) as image:
        before = image.bytes_read
        expected = data[30:90, 100:260, 50:400]
        np.testing.assert_array_equal(read_box(image, box), expected)  # the file
        assert image.bytes_read - before >= expected.nbytes
        ndi.view_cache(image).close()
        cache = valid_view_cache(image)
        assert cache is not None
        before, cached_before = image.bytes_read, cache.bytes_read
        np.testing.assert_array_equal(read_box(image, box), expected)
        assert image.bytes_read == before
        assert cache.bytes_read > cached_before


def test_labels_levels_never_read_the_cache(scan_tiff):
    """Labels layers ask for levels without the view cache: a mean of labels
    is no label."""
    path, data = scan_tiff
    with ndi.open_tiff(path) as image:
        ndi.view_cache(image).close()
        assert valid_view_cache(image) is not None
        levels = display_levels(
            image, 0, overview_bytes=1 << 20, overview_voxels=1 << 20, view_cache=False
        )
        overview = levels[-1]
        fz, f = overview.zfactor, overview.factor
        assert (fz, f) != (4, 4)  # not on the cache's grid
        np.testing.assert_array_equal(np.asarray(overview), data[::fz, ::f, ::f])
        before = image.bytes_read
        np.testing.assert_array_equal(np.asarray(levels[0][:, :, 5]), data[:, :, 5])
        assert image.bytes_read > before  # the file, exact


def _decodes_by_thread(monkeypatch) -> list[tuple[str, int]]:
    """Record each chunk decode of a Zarr store: (thread name, x start)."""
    import threading

    from napari_diskimage.storage import zarr_array

    seen: list[tuple[str, int]] = []
    decode = zarr_array.ZarrStorage._decode

    def spy(self, arr, box, key=None):
        seen.append((threading.current_thread().name, box[-1].start))
        return decode(self, arr, box, key)

    monkeypatch.setattr(zarr_array.ZarrStorage, "_decode", spy)
    return seen


def _slab_cached(cache, x0: int) -> list[bool]:
    """Whether each chunk of the slab at column ``x0`` is decoded in memory
    (level 0, every z and y of the scan: 2 x 10 chunks)."""
    handle, arr = cache.storage.handle, cache.storage.zarr_array
    cz, cy, cx = arr.chunks[-3:]
    lead = (0,) * (arr.ndim - 3)
    return [
        ("0", (*lead, kz, ky, x0 // cx)) in handle.cache
        for kz in range(-(-cache.shape[2] // cz))
        for ky in range(-(-cache.shape[3] // cy))
    ]


def test_x_steps_decode_nothing_and_the_next_slab_is_decoded_ahead(
    scan_tiff, monkeypatch
):
    from napari_diskimage._settings import save_setting
    from napari_diskimage.display import cached_views, slab_prefetch
    from napari_diskimage.storage import zarr_array

    path, data = scan_tiff
    # The store default below two YZ slices of chunks (96 x 600 x 64 pixels,
    # 7.4 MB each), as 128 MiB is below them at 16 GiB (407 x 3248 planes).
    monkeypatch.setattr(zarr_array, "CACHE_BYTES", 4 << 20)
    monkeypatch.setattr(slab_prefetch, "PIECE_BYTES", 1 << 20)  # 10 pieces
    decodes = _decodes_by_thread(monkeypatch)
    with ndi.open_tiff(path) as image:
        ndi.view_cache(image).close()
        levels = _levels(image)
        cache = valid_view_cache(image)
        assert cache is not None
        handle = cache.storage.handle
        slabs = cached_views._entries[image].slabs
        assert handle.cache.max_bytes == cached_views.chunk_cache_bytes(image)
        assert handle.cache.max_bytes >= 2 * data[:, :, :64].nbytes
        np.testing.assert_array_equal(np.asarray(levels[0][:, :, 64]), data[:, :, 64])
        assert slabs.started == 0  # a view, no step yet: nothing ahead
        decodes.clear()
        for x in range(65, 128):  # x-steps through the slab of x 64..127
            np.testing.assert_array_equal(np.asarray(levels[0][:, :, x]), data[:, :, x])
        slabs.wait()
        # the first step started decoding the next slab (x 128..191) in the
        # background; the steps themselves decoded nothing
        assert slabs.started == 1
        assert {name for name, _ in decodes} == {"ndi-slab_0"}
        assert {x0 for _, x0 in decodes} == {128}
        assert all(_slab_cached(cache, 128))  # before the step that needs it
        decodes.clear()
        np.testing.assert_array_equal(np.asarray(levels[0][:, :, 128]), data[:, :, 128])
        slabs.wait()
        # entering it decoded nothing in the foreground; the slab after it
        # (x 192..255) is on its way
        assert [x0 for name, x0 in decodes if name == "MainThread"] == []
        assert {x0 for _, x0 in decodes} == {192}
        assert all(_slab_cached(cache, 192))
        assert handle.cache.nbytes <= handle.cache.max_bytes
        # stepping back: the slab before the one shown (x 64..127)
        decodes.clear()
        for x in (127, 126):
            np.testing.assert_array_equal(np.asarray(levels[0][:, :, x]), data[:, :, x])
        slabs.wait()
        assert all(_slab_cached(cache, 0))
        assert handle.cache.nbytes <= handle.cache.max_bytes

        save_setting(cached_views.MEMORY_KEY, 1 << 20)  # the user's bound
        assert cached_views.chunk_cache_bytes(image) == 4 << 20
        # a bound that holds one slab but not two: nothing decoded ahead
        save_setting(cached_views.MEMORY_KEY, 12 << 20)
        handle.cache.max_bytes = cached_views.chunk_cache_bytes(image)
        started = slabs.started
        for x in range(300, 310):
            np.asarray(levels[0][:, :, x])
        slabs.wait()
        assert slabs.started == started
        assert handle.cache.nbytes <= 12 << 20


def test_a_step_the_other_way_cancels_the_slab_decoded_ahead(scan_tiff, monkeypatch):
    import threading

    from napari_diskimage.display import cached_views, slab_prefetch
    from napari_diskimage.storage import zarr_array

    path, data = scan_tiff
    monkeypatch.setattr(slab_prefetch, "PIECE_BYTES", 1 << 20)  # 10 pieces
    decodes = _decodes_by_thread(monkeypatch)
    spy = zarr_array.ZarrStorage._decode
    gate, held = threading.Event(), threading.Event()

    def slow(self, arr, box, key=None):  # the first piece waits for the test
        if threading.current_thread().name.startswith("ndi-slab"):
            held.set()
            assert gate.wait(10)
        return spy(self, arr, box, key)

    monkeypatch.setattr(zarr_array.ZarrStorage, "_decode", slow)
    with ndi.open_tiff(path) as image:
        ndi.view_cache(image).close()
        levels = _levels(image)
        cache = valid_view_cache(image)
        assert cache is not None
        slabs = cached_views._entries[image].slabs
        np.asarray(levels[0][:, :, 300])  # slab x 256..319
        np.asarray(levels[0][:, :, 301])  # a step forward: x 320..383 ahead
        assert held.wait(10)  # its first piece is being decoded
        yz = np.asarray(levels[0][:, :, 300])  # a step back: x 192..255 ahead
        np.testing.assert_array_equal(yz, data[:, :, 300])
        gate.set()
        slabs.wait()
        assert slabs.cancelled == 1
        ahead = [x0 for name, x0 in decodes if name != "MainThread"]
        assert ahead.count(320) == 1  # the stale slab: its first piece only
        assert sum(_slab_cached(cache, 320)) == 2  # 2 chunks deep, 1 row
        assert all(_slab_cached(cache, 192))


def test_zoomed_out_xy_from_rows_of_chunks_larger_than_the_cache_is_the_file(
    scan_tiff, monkeypatch
):
    from napari_diskimage.display import cached_views
    from napari_diskimage.storage import zarr_array

    path, data = scan_tiff
    with ndi.open_tiff(path) as image:
        ndi.view_cache(image).close()
        coarse = _levels(image)[1]
        cache = valid_view_cache(image)
        assert cache is not None
        level1 = cache.display_levels[1]
        # a row of level 1's chunks: 48 planes x 300 x 350 -> 5 x 6 chunks
        row = 48 * 5 * 64 * 6 * 64 * 2
        assert level1.storage.handle.cache.max_bytes >= 2 * row
        shown = np.asarray(coarse[37])
        assert np.abs(shown - _block_means(data[36:38], 2, 2)[0]).max() <= 0.5
        # the store's chunk cache smaller than two such rows (as 128 MiB is
        # at 2 GiB with 64-deep chunks): every z-step would decode its row
        monkeypatch.setattr(zarr_array, "CACHE_BYTES", 2 * row - 1)
        monkeypatch.setattr(cached_views, "chunk_cache_bytes", lambda _: 2 * row - 1)
        cached_views._close(cached_views._entries[image])
        cached_views._entries[image].stamp = None  # reopened with that cache
        assert valid_view_cache(image) is not None
        before = image.bytes_read
        np.testing.assert_array_equal(np.asarray(coarse[37]), data[37, ::2, ::2])
        assert image.bytes_read > before  # the file's strided pixels
