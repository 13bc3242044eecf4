"""The view cache: built once, reused, never shown when stale, atomic."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from napari_diskimage.display import view_cache as vc

pytestmark = pytest.mark.usefixtures("view_caches_cleared")


@pytest.fixture
def volume(data_dir: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(24)
    data = rng.integers(0, 60000, (70, 130, 150), dtype=np.uint16)
    path = data_dir / "scan.tif"
    tifffile.imwrite(path, data)
    return path, data


def _stores(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".ome.zarr" in p.name)


def test_built_then_reused_across_opens(volume, disk_image_dir):
    path, data = volume
    image = ndi.open_tiff(path)
    assert ndi.view_cache(image, build=False) is None
    steps: list[tuple[int, int]] = []
    cache = ndi.view_cache(image, progress=lambda d, t: steps.append((d, t)))
    assert cache is not None
    assert steps[-1][0] == steps[-1][1] == data.nbytes
    store = vc.view_cache_path(image)
    assert store.parent == disk_image_dir and store.is_dir()
    assert cache.path == store
    assert np.array_equal(cache[0, 0], data)
    assert (store / "0" / "zarr.json").is_file()
    chunks = json.loads((store / "0" / "zarr.json").read_text())
    assert chunks["chunk_grid"]["configuration"]["chunk_shape"] == [64, 64, 64]
    # the fastest codec to write and to decode: Blosc lz4, bit shuffle
    [blosc] = [c for c in chunks["codecs"] if c["name"] == "blosc"]
    assert blosc["configuration"]["cname"] == "lz4"
    assert blosc["configuration"]["shuffle"] == "bitshuffle"
    stamp = (store / vc.IDENTITY_FILE).stat().st_mtime_ns
    zarr_stamp = (store / "zarr.json").stat().st_mtime_ns
    image.close()
    cache.close()

    again = ndi.open_tiff(path)  # a new session's image of the same file
    steps.clear()
    cache = ndi.view_cache(again, progress=lambda d, t: steps.append((d, t)))
    assert cache is not None and steps == []  # not rebuilt
    assert (store / vc.IDENTITY_FILE).stat().st_mtime_ns == stamp
    assert (store / "zarr.json").stat().st_mtime_ns == zarr_stamp
    assert np.array_equal(cache[0, 0, :, :, 77], data[:, :, 77])
    assert _stores(disk_image_dir) == [store.name]
    again.close()
    cache.close()


def test_yz_xz_planes_and_levels_are_block_means(data_dir):
    rng = np.random.default_rng(7)
    data = rng.integers(0, 60000, (20, 300, 531), dtype=np.uint16)
    path = data_dir / "wide.tif"
    tifffile.imwrite(path, data)
    with ndi.open_tiff(path) as image:
        cache = ndi.view_cache(image)
    assert cache is not None
    for x in (0, 63, 64, 149):
        assert np.array_equal(cache[0, 0, :, :, x], data[:, :, x])  # YZ
    for y in (0, 65, 129):
        assert np.array_equal(cache[0, 0, :, y, :], data[:, y, :])  # XZ
    levels = cache.display_levels
    assert len(levels) >= 2
    level1 = np.asarray(levels[1][0, 0], dtype=np.float64)
    # Level 1 is the mean of 2 x 2 x 2 blocks (odd edges: what they hold).
    z, y, x = data.shape
    assert level1.shape == (z // 2, y // 2, (x + 1) // 2)
    blocks = data[:, :, :-1].reshape(z // 2, 2, y // 2, 2, x // 2, 2)
    expect = np.floor(blocks.mean(axis=(1, 3, 5)) + 0.5)
    assert np.abs(level1[:, :, :-1] - expect).max() <= 1  # rounding
    edge = data[:, :, -1].reshape(z // 2, 2, y // 2, 2).mean(axis=(1, 3))
    assert np.abs(level1[:, :, -1] - np.floor(edge + 0.5)).max() <= 1
    cache.close()


def test_changed_file_is_never_shown(volume):
    path, data = volume
    with ndi.open_tiff(path) as image:
        ndi.view_cache(image).close()
    time.sleep(0.01)
    changed = data.copy()
    changed[:, :, 5] = 7
    tifffile.imwrite(path, changed[:, :100])  # new size and mtime
    with ndi.open_tiff(path) as image:
        assert ndi.view_cache(image, build=False) is None
        cache = ndi.view_cache(image)
    assert cache.shape == (1, 1, 70, 100, 150)
    assert np.array_equal(cache[0, 0, :, :, 5], changed[:, :100, 5])
    cache.close()


def test_same_size_rewrite_is_detected(volume):
    path, _data = volume
    with ndi.open_tiff(path) as image:
        ndi.view_cache(image).close()
    st = path.stat()
    with open(path, "r+b") as fh:  # another program edits the file
        fh.seek(st.st_size - 2)
        fh.write(b"\x01\x02")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    with ndi.open_tiff(path) as image:
        assert ndi.view_cache(image, build=False) is None


def test_our_write_pixel_invalidates(volume):
    path, _data = volume
    image = ndi.open_tiff(path, mode="r+")
    ndi.view_cache(image).close()
    store = vc.view_cache_path(image)
    mtime = path.stat().st_mtime_ns
    image.write_pixel(9, 1, 2, 3)  # x, y, z
    # Even with the file's mtime put back, the cache is not shown.
    os.utime(path, ns=(mtime, mtime))
    assert not (store / vc.IDENTITY_FILE).exists()
    assert ndi.view_cache(image, build=False) is None
    cache = ndi.view_cache(image)
    assert cache[0, 0, 3, 2, 1] == 9
    image.write_pixel(11, 1, 2, 3)
    image.close()
    with ndi.open_tiff(path) as reopened:
        assert ndi.view_cache(reopened, build=False) is None
    cache.close()


def test_killed_build_is_not_used(volume, disk_image_dir):
    path, data = volume
    code = f"""
        import os, sys, time
        import napari_diskimage as ndi
        image = ndi.open_tiff({str(path)!r})
        def progress(done, total):
            if done:
                print("started", flush=True)
                time.sleep(60)
        ndi.view_cache(image, progress=progress)
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    parts = [p for p in disk_image_dir.iterdir() if p.name.endswith(".part")]
    assert len(parts) == 1
    with ndi.open_tiff(path) as image:
        assert ndi.view_cache(image, build=False) is None
        cache = ndi.view_cache(image)
    assert np.array_equal(cache[0, 0, :, :, 9], data[:, :, 9])
    assert not parts[0].exists()  # swept by the next build
    cache.close()


def test_store_without_identity_is_rebuilt(volume):
    """Killed between the rename and the identity file: not used."""
    path, _data = volume
    with ndi.open_tiff(path) as image:
        ndi.view_cache(image).close()
        store = vc.view_cache_path(image)
        (store / vc.IDENTITY_FILE).unlink()
        assert ndi.view_cache(image, build=False) is None
        ndi.view_cache(image).close()
        assert (store / vc.IDENTITY_FILE).is_file()


def test_cache_of_an_older_layout_is_not_used(volume, monkeypatch):
    """A cache built by an earlier version (2 x 64 x 64 chunks for large
    planes, an identity file without the layout) stays unused: rebuilt."""
    from napari_diskimage.display import display_levels
    from napari_diskimage.display.cached_views import valid_view_cache

    path, data = volume
    with ndi.open_tiff(path) as image:
        monkeypatch.setattr(vc, "CHUNKS", (2, 64, 64))
        monkeypatch.setattr(vc, "CODEC", "zstd")
        ndi.view_cache(image).close()
        monkeypatch.setattr(vc, "CHUNKS", (64, 64, 64))
        monkeypatch.setattr(vc, "CODEC", "lz4-bitshuffle")
        store = vc.view_cache_path(image)
        old = json.loads((store / vc.IDENTITY_FILE).read_text())
        old.pop("layout", None)  # as the earlier version wrote it
        (store / vc.IDENTITY_FILE).write_text(json.dumps(old))
        meta = json.loads((store / "0" / "zarr.json").read_text())
        assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [2, 64, 64]
        assert ndi.view_cache(image, build=False) is None
        assert valid_view_cache(image) is None
        before = image.bytes_read
        yz = np.asarray(display_levels(image, 0)[0][:, :, 77])
        np.testing.assert_array_equal(yz, data[:, :, 77])
        assert image.bytes_read > before  # the file, not the old cache
        steps: list[tuple[int, int]] = []
        ndi.view_cache(image, progress=lambda d, t: steps.append((d, t))).close()
        assert steps[-1][0] == data.nbytes  # rebuilt
        meta = json.loads((store / "0" / "zarr.json").read_text())
        assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [64, 64, 64]
        assert valid_view_cache(image) is not None


def test_clear_removes_only_caches(volume, disk_image_dir):
    path, _data = volume
    with ndi.open_tiff(path) as image:
        ndi.view_cache(image).close()
        store = vc.view_cache_path(image)
    mine = disk_image_dir / "notes.ome.zarr"
    mine.mkdir()
    (mine / "zarr.json").write_text("{}")
    other = disk_image_dir / "ndi-view-keep.txt"
    other.write_text("mine")
    link = disk_image_dir / ("ndi-view-" + "0" * 24 + ".ome.zarr")
    link.symlink_to(mine)
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    assert ndi.clear_view_caches() == size
    assert not store.exists()
    assert mine.is_dir() and (mine / "zarr.json").is_file()
    assert other.read_text() == "mine"
    assert link.is_symlink()
    link.unlink()
    other.unlink()
    assert ndi.clear_view_caches() == 0


def test_size_estimate_bounds_the_store(volume):
    path, data = volume
    with ndi.open_tiff(path) as image:
        estimate = ndi.view_cache_size(image)
        assert data.nbytes <= estimate
        ndi.view_cache(image).close()
        store = vc.view_cache_path(image)
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    # noise does not compress, and edge chunks keep some of their padding
    # (x: 150 = 2 x 64 + 22 columns): the store is 1.14 x the pixels here
    assert size < estimate < size * 1.25


def test_full_disk_is_refused_before_work(volume, disk_image_dir, monkeypatch):
    import shutil as _shutil

    path, _data = volume
    real = _shutil.disk_usage

    def small(where):
        usage = real(where)
        return type(usage)(usage.total, usage.total - 1000, 1000)

    monkeypatch.setattr("napari_diskimage._scratch.shutil.disk_usage", small)
    with ndi.open_tiff(path) as image, pytest.raises(OSError) as err:
        ndi.view_cache(image)
    assert err.value.errno == errno.ENOSPC
    assert "view cache" in str(err.value) and "1000 B free" in str(err.value)
    assert _stores(disk_image_dir) == []
    assert not [p for p in disk_image_dir.iterdir() if ".part" in p.name]


def test_disk_full_part_way_leaves_no_cache(volume, data_dir, monkeypatch):
    from tests._fs import mount_tmpfs, unmount

    path, _data = volume
    folder = mount_tmpfs("size=600k")
    try:
        ndi.set_disk_image_dir(folder)
        # The estimate would refuse the build at once: let it start.
        monkeypatch.setattr(vc, "check_free_space", lambda *a: None)
        with ndi.open_tiff(path) as image:
            with pytest.raises(OSError) as err:
                ndi.view_cache(image, build=True)
            assert err.value.errno == errno.ENOSPC
            assert ndi.view_cache(image, build=False) is None
        assert list(folder.iterdir()) == []
    finally:
        ndi.set_disk_image_dir(data_dir)
        unmount(folder)


def test_read_only_disk_image_dir(volume, data_dir, monkeypatch):
    from tests._fs import mount_tmpfs, unmount

    from napari_diskimage import _scratch

    path, _data = volume
    folder = mount_tmpfs("size=1m,ro")  # root writes through chmod
    try:
        monkeypatch.setattr(_scratch, "_dir", folder)
        with ndi.open_tiff(path) as image:
            with pytest.raises(PermissionError, match="not writable"):
                ndi.view_cache(image)
            assert ndi.view_cache(image, build=False) is None
    finally:
        monkeypatch.setattr(_scratch, "_dir", None)
        unmount(folder)


def test_iter_view_cache_cancel_removes_partial(volume, disk_image_dir):
    path, _data = volume
    with ndi.open_tiff(path) as image:
        steps = ndi.iter_view_cache(image)
        next(steps)
        next(steps)
        steps.close()
        assert ndi.view_cache(image, build=False) is None
    assert [p.name for p in disk_image_dir.iterdir() if "view" in p.name] == []


def test_not_a_disk_image():
    with pytest.raises(TypeError, match="disk image"):
        ndi.view_cache(np.zeros((4, 4)))  # type: ignore[arg-type]


def test_cli_builds_and_clears(volume, disk_image_dir, capsys):
    from napari_diskimage._cli import main

    path, data = volume
    assert main(["view-cache", str(path)]) == 0
    out = capsys.readouterr()
    store = Path(out.out.strip())
    assert store.parent == disk_image_dir and (store / vc.IDENTITY_FILE).is_file()
    assert "at most" in out.err
    with ndi.open_zarr(store) as cache:
        assert np.array_equal(cache[0, 0, :, 4, :], data[:, 4, :])
    assert main(["view-cache", "--clear"]) == 0
    assert "freed" in capsys.readouterr().err
    assert not store.exists()
    assert main(["view-cache"]) == 2
    assert main(["view-cache", str(path.with_name("missing.tif"))]) == 1


def _means(data: np.ndarray) -> np.ndarray:
    """Means of 2 x 2 x 2 blocks (even sizes), rounded half up."""
    z, y, x = (n // 2 for n in data.shape)
    blocks = data[: 2 * z, : 2 * y, : 2 * x].reshape(z, 2, y, 2, x, 2)
    return np.floor(blocks.mean(axis=(1, 3, 5), dtype=np.float64) + 0.5)


def test_large_planes_keep_deep_chunks_and_bounded_memory(data_dir, monkeypatch):
    import tracemalloc

    rng = np.random.default_rng(3)
    data = rng.integers(0, 60000, (130, 256, 1000), dtype=np.uint16)
    path = data_dir / "wide.tif"
    tifffile.imwrite(path, data)
    slab = 64 * data[0].nbytes  # one chunk row of planes: 31 MiB
    budget = 4 << 20
    monkeypatch.setattr(vc, "SLAB_BUDGET", budget)
    with ndi.open_tiff(path) as image:
        tracemalloc.start()
        try:
            cache = ndi.view_cache(image)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert cache is not None
    # A block of whole chunks (128 planes x 128 rows x 128 columns, 4 MiB),
    # its means and zarr's copies: 12 MiB; streamed slabs of 64 planes: 67 MiB.
    assert peak < 4 * budget < slab
    store = cache.path
    for level in ("0", "1"):
        meta = json.loads((store / level / "zarr.json").read_text())
        assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [64, 64, 64]
    for x in (0, 63, 64, 500, 999):
        assert np.array_equal(cache[0, 0, :, :, x], data[:, :, x])  # YZ
    levels = cache.display_levels
    level1 = np.asarray(levels[1][0, 0])
    expect1 = _means(data)
    assert np.array_equal(level1, expect1)
    level2 = np.asarray(levels[2][0, 0], dtype=np.float64)
    expect2 = _means(expect1)
    assert np.array_equal(level2[: expect2.shape[0]], expect2)
    cache.close()


@pytest.mark.gui
def test_labels_painted_in_napari_invalidate(make_napari_viewer, data_dir):
    from napari_diskimage._napari.labels import DiskLabels

    path = data_dir / "cells.tif"
    tifffile.imwrite(path, np.zeros((8, 40, 50), np.uint16))
    labels = ndi.open_labels(path, mode="r+")
    cache = ndi.view_cache(labels)
    assert cache is not None
    cache.close()
    viewer = make_napari_viewer()
    layer = DiskLabels.attach(viewer, labels, name="cells")
    assert ndi.view_cache(labels, build=False) is not None
    layer.brush_size = 1
    mtime = path.stat().st_mtime_ns
    layer.paint((3, 4, 5), 9)  # as the brush does
    assert labels[0, 0, 3, 4, 5] == 9
    os.utime(path, ns=(mtime, mtime))  # the edit shows in no timestamp
    assert ndi.view_cache(labels, build=False) is None
    cache = ndi.view_cache(labels)
    assert cache[0, 0, 3, 4, 5] == 9
    cache.close()
    viewer.layers.clear()
