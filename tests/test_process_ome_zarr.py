"""Processing writes OME-Zarr: ``out="result.ome.zarr"`` on an operation.

The stores are read back with zarr and with ``ndi.open_zarr`` and compared
with the same operation's scratch result (itself checked against scipy in
test_process.py) and with block means / modes computed here; a cancel or a
failure leaves nothing; a LocalCluster's worker processes write the chunks.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

import napari_diskimage as ndi
from _arrays import cancel_at_first_step, local_cluster, smooth_volume
from napari_diskimage import process
from napari_diskimage._cli import main
from napari_diskimage.process import stats
from test_ome_zarr import _block_reduce, _mean_half_up, _mode_smallest, _ome


def _volume(shape=(10, 300, 280), seed=3):
    return smooth_volume(shape, "uint16", seed, sigma=2)


def _leftovers(folder, name):
    """Anything of a save to ``name`` in ``folder``: the store or its
    temporary folders."""
    return sorted(p.name for p in folder.iterdir() if name in p.name)


def _level(path, i):
    return np.asarray(zarr.open_group(str(path), mode="r")[str(i)])


@pytest.fixture
def image(data_dir):
    data = _volume()
    path = data_dir / "scan.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    with ndi.open_tiff(path) as img:
        img.spacing, img.unit = (1.0, 0.5, 0.5), "um"
        yield img


def test_a_filter_with_a_halo_writes_the_same_pixels_and_mean_levels(image, data_dir):
    before = stats()["partial_chunk_writes"]
    out = process.gaussian(image, 1.5, out=data_dir / "smooth.ome.zarr")
    expected = np.asarray(process.gaussian(image, 1.5))[0, 0]
    with out:
        assert out.path == data_dir / "smooth.ome.zarr"
        assert out.meta.kind == "zarr" and not out.writable
        np.testing.assert_array_equal(np.asarray(out)[0, 0], expected)
        assert out.spacing == (1.0, 0.5, 0.5) and out.unit == "micrometer"
    # every block covered whole chunks: no chunk was shared by two blocks
    assert stats()["partial_chunk_writes"] == before
    store = data_dir / "smooth.ome.zarr"
    np.testing.assert_array_equal(_level(store, 0), expected)
    level1 = _block_reduce(expected, (1, 2, 2), _mean_half_up)  # z 1.0 > 0.5*2? no
    np.testing.assert_array_equal(_level(store, 1), level1)
    ms = _ome(store)["multiscales"][0]
    assert ms["type"] == "mean"
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[1.0, 0.5, 0.5], [1.0, 1.0, 1.0]]
    assert _leftovers(data_dir, "smooth") == ["smooth.ome.zarr"]


def test_aligned_blocks_write_every_level_and_level_0_is_never_read_back(
    image, data_dir, monkeypatch
):
    """Each block writes its mean into the coarser levels as it lands: the
    finish has nothing to rebuild (it would read level 0 back)."""
    from napari_diskimage.io.zarr_output import ZarrOutput

    def no_rebuild(self, *args):
        raise AssertionError("level 0 read back to build the levels")

    monkeypatch.setattr(ZarrOutput, "_rebuild", no_rebuild)
    data = _volume((3, 520, 264))
    with ndi.copy(data) as big:
        big.spacing = (0.5, 1.0, 1.0)  # z halves too: levels 2 x 2 x 2
        out = process.gaussian(
            big, 1.0, block_shape=(256, 256, 4), out=data_dir / "l.ome.zarr"
        )
        expected = np.asarray(process.gaussian(big, 1.0))[0, 0]
    out.close()
    store = data_dir / "l.ome.zarr"
    np.testing.assert_array_equal(_level(store, 0), expected)
    finer = expected
    for i in (1, 2):
        finer = _block_reduce(finer, (2, 2, 2), _mean_half_up)
        np.testing.assert_array_equal(_level(store, i), finer)
    assert len(_ome(store)["multiscales"][0]["datasets"]) == 3
    assert not (store / ".ndi-stale").exists()


def test_threshold_and_label_equal_their_scratch_results(image, data_dir):
    mask = process.threshold(image, low=40000, out=data_dir / "mask.zarr")
    np.testing.assert_array_equal(np.asarray(mask), np.asarray(image) >= 40000)
    assert mask.dtype == np.uint8
    labels = process.label(mask, out=data_dir / "labels.ome.zarr")
    expected = np.asarray(process.label(mask))[0, 0]
    assert labels.dtype == np.uint32 and expected.max() > 3
    np.testing.assert_array_equal(np.asarray(labels)[0, 0], expected)
    store = data_dir / "labels.ome.zarr"
    ome = _ome(store)
    assert "image-label" in ome and ome["multiscales"][0]["type"] == "mode"
    level1 = _block_reduce(expected, (1, 2, 2), _mode_smallest)
    np.testing.assert_array_equal(_level(store, 1), level1)


def test_time_points_and_channels_become_axes_of_the_store(data_dir):
    data = np.random.default_rng(1).integers(0, 100, (2, 3, 5, 300, 270))
    with ndi.copy(data.astype(np.uint16)) as image:
        out = process.gaussian(image, 1.0, out=data_dir / "tc.ome.zarr")
        expected = np.asarray(process.gaussian(image, 1.0))
    with out:
        assert out.shape == (2, 3, 5, 300, 270)
        np.testing.assert_array_equal(np.asarray(out), expected)
    axes = [a["name"] for a in _ome(data_dir / "tc.ome.zarr")["multiscales"][0]["axes"]]
    assert axes == ["t", "c", "z", "y", "x"]
    assert _level(data_dir / "tc.ome.zarr", 1).shape == (2, 3, 3, 150, 135)


def test_the_store_is_valid_for_ome_zarr_py_and_ngff_zarr(image, data_dir):
    from ngff_zarr import from_ngff_zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    out = process.median(image, 3, out=data_dir / "m.ome.zarr")
    expected = np.asarray(out)[0, 0]
    out.close()
    pyramid = next(iter(Reader(parse_url(str(data_dir / "m.ome.zarr")))())).data
    np.testing.assert_array_equal(np.asarray(pyramid[0]), expected)
    ms = from_ngff_zarr(str(data_dir / "m.ome.zarr"), validate=True)
    assert ms.images[0].scale == {"z": 1.0, "y": 0.5, "x": 0.5}


def test_blocks_are_whole_chunks_even_when_asked_smaller(image, data_dir):
    before = stats()["partial_chunk_writes"]
    out = process.gaussian(
        image, 1.0, block_shape=(40, 30, 3), out=data_dir / "s.ome.zarr"
    )
    chunks = zarr.open_group(str(data_dir / "s.ome.zarr"), mode="r")["0"].chunks
    assert chunks == (8, 256, 256)  # z: the largest power of 2 in 10
    assert stats()["partial_chunk_writes"] == before
    np.testing.assert_array_equal(
        np.asarray(out),
        np.asarray(process.gaussian(image, 1.0, block_shape=(40, 30, 3))),
    )
    out.close()


def test_blocks_across_chunks_are_locked_and_still_right(image, data_dir):
    """distance works along whole lines: its blocks cannot all be whole chunks;
    the chunks they share are written one block at a time."""
    mask = process.threshold(image, low=40000)
    before = stats()["partial_chunk_writes"]
    blocks = (100, 100, 3)
    out = process.distance(mask, block_shape=blocks, out=data_dir / "d.ome.zarr")
    assert stats()["partial_chunk_writes"] > before
    expected = process.distance(mask, block_shape=blocks)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    assert not (data_dir / "d.ome.zarr" / ".ndi-locks").exists()
    level1 = _block_reduce(np.asarray(expected)[0, 0], (1, 2, 2), _mean_half_up)
    np.testing.assert_array_equal(_level(data_dir / "d.ome.zarr", 1), level1)
    for image_ in (out, expected, mask):
        image_.close()


def test_a_cancel_leaves_no_store_and_keeps_the_old_one(image, data_dir):
    old = process.threshold(image, low=1, out=data_dir / "r.ome.zarr")
    old.close()
    with pytest.raises(KeyboardInterrupt):
        process.gaussian(
            image, 1.0, block_shape=(280, 300, 1), out=data_dir / "r.ome.zarr",
            progress=cancel_at_first_step([]),
        )  # fmt: skip
    assert _leftovers(data_dir, "r.ome.zarr") == ["r.ome.zarr"]
    with ndi.open_zarr(data_dir / "r.ome.zarr") as kept:  # the old store
        assert kept.dtype == np.uint8

    def boom(block):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        process.apply(boom, image, out=data_dir / "f.ome.zarr")
    assert _leftovers(data_dir, "f.ome.zarr") == []


def test_bad_targets_are_refused_before_any_work(image, data_dir):
    (data_dir / "x.ome.zarr").write_text("not a store")
    with pytest.raises(FileExistsError, match=r"x\.ome\.zarr"):
        process.gaussian(image, 1.0, out=data_dir / "x.ome.zarr")
    with pytest.raises(ValueError, match=r"ending in '.zarr'"):
        process.gaussian(image, 1.0, out=data_dir / "x.tif")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        process.gaussian(image, 1.0, out=data_dir / "no" / "x.ome.zarr")
    src = process.threshold(image, low=1, out=data_dir / "in.ome.zarr")
    with pytest.raises(ValueError, match="is the store the run reads"):
        process.gaussian(src, 1.0, out=data_dir / "in.ome.zarr")
    src.close()
    assert _leftovers(data_dir, "x.ome.zarr") == ["x.ome.zarr"]
    assert (data_dir / "x.ome.zarr").read_text() == "not a store"


def test_cli_process_writes_the_store_directly(image, data_dir, capsys):
    path = image.path
    rc = main(["process", "gaussian", str(path), str(data_dir / "c.ome.zarr"),
               "--sigma", "1.5"])  # fmt: skip
    assert rc == 0
    with ndi.open_zarr(data_dir / "c.ome.zarr") as out:
        np.testing.assert_array_equal(
            np.asarray(out), np.asarray(process.gaussian(image, 1.5))
        )
    assert _leftovers(data_dir, "c.ome.zarr") == ["c.ome.zarr"]


@pytest.mark.slow
def test_cluster_workers_write_their_own_chunks(image, data_dir, disk_image_dir):
    """A LocalCluster of 2 worker processes: each opens the store by path
    and writes its blocks' chunks; nothing is written here."""
    pytest.importorskip("distributed")
    expected = np.asarray(process.gaussian(image, 1.5))
    with local_cluster() as client:
        client.run(ndi.set_disk_image_dir, str(disk_image_dir))
        here = process.stats()["blocks_written"]
        out = process.gaussian(
            image, 1.5, block_shape=(256, 256, 10), out=data_dir / "w.ome.zarr"
        )
        written = [s["blocks_written"] for s in client.run(process.stats).values()]
        assert process.stats()["blocks_written"] == here  # none here
    assert len(written) == 2 and sum(written) == 4  # 2 x 2 chunks of 256
    with out:
        np.testing.assert_array_equal(np.asarray(out), expected)


def test_progress_ends_at_its_total_and_counts_the_levels(image, data_dir):
    seen = []
    out = process.gaussian(
        image,
        1.0,
        out=data_dir / "p.ome.zarr",
        progress=lambda d, t: seen.append((d, t)),
    )
    out.close()
    done, total = seen[-1]
    assert done == total == image.nbytes + image.nbytes // 8  # run, then levels
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_killed_runs_temporary_store_is_swept(image, data_dir):
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = data_dir / f".k.ome.zarr.ndi-{gone.pid}-0123456789ab.part"
    (stale / "0").mkdir(parents=True)
    process.threshold(image, low=1, out=data_dir / "k.ome.zarr").close()
    assert _leftovers(data_dir, "k.ome.zarr") == ["k.ome.zarr"]


#: A 1 GiB volume under a cap of a quarter of it.  Measured peaks: about
#: 190 MiB of anonymous memory with every level written by the blocks as
#: they land (before, with level 0 read back to build the levels: 330 MiB,
#: and killed under this cap).
CAP = 256 << 20
OUT_OF_CORE = """
import sys, numpy as np, scipy.ndimage as sndi
import napari_diskimage as ndi
from napari_diskimage import process
src, store, folder = sys.argv[1], sys.argv[2], sys.argv[3]
ndi.set_disk_image_dir(folder)
image = ndi.open_raw(src)
out = process.gaussian(image, 1, block_shape=(256, 256, 16), out=store)
for z in (40, 400):  # spot checks against scipy well inside the volume
    box = np.asarray(image.array[0, 0, z - 5 : z + 6, 500:540, 300:340])
    ref = sndi.gaussian_filter(box, 1)[5, 5:-5, 5:-5]
    assert np.array_equal(out.load_plane(z=z)[505:535, 305:335], ref), z
level = ndi.open_zarr(store, level=1)
box = np.asarray(out.array[0, 0, 100:104, 200:208, 300:308], np.float64)
mean = np.floor(box.reshape(2, 2, 4, 2, 4, 2).mean(axis=(1, 3, 5)) + 0.5)
assert np.array_equal(np.asarray(level.array[0, 0, 50:52, 100:104, 150:154]), mean)
print("ok")
"""


@pytest.mark.slow
def test_out_of_a_volume_four_times_the_memory_cap(tmp_path):
    import sys

    from _memcap import run_capped, unavailable_reason

    if unavailable_reason() is not None:
        pytest.skip(str(unavailable_reason()))
    z, y, x = 512, 1024, 1024  # uint16: 1 GiB, 4 x the cap
    src = tmp_path / f"vol_{x}x{y}x{z}_UInt16.raw"
    rng = np.random.default_rng(0)
    with open(src, "wb") as fh:  # written slab by slab: the test stays small
        for _ in range(0, z, 16):
            fh.write(rng.integers(0, 2000, (16, y, x), dtype=np.uint16).tobytes())
    store = tmp_path / "big.ome.zarr"
    result = run_capped(
        CAP,
        [sys.executable, "-c", OUT_OF_CORE, str(src), str(store), str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 137, "killed by the memory cap"
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
    assert _leftovers(tmp_path, "big.ome.zarr") == ["big.ome.zarr"]
    assert len(_ome(store)["multiscales"][0]["datasets"]) == 3  # 1024 -> 256
    assert list((tmp_path / "s").iterdir()) == []  # no scratch file


def test_blocks_rounded_to_whole_chunks_hold_no_more_than_planned(data_dir):
    """The planner's gaussian block of a 320 x 1024 x 1024 volume is all of z
    by 100 rows: rounded up to chunk rows it would be 2.5 x larger (2.5 x
    the memory); it takes fewer planes instead."""
    from napari_diskimage.io.zarr_output import ZarrOutput
    from napari_diskimage.process import _blocks, _out

    volume = np.broadcast_to(np.uint16(0), (320, 1024, 1024))  # no memory
    depth = (0, 0, 8, 8, 8)
    planned = _blocks.block_chunks(volume, 2, depth, None)
    target = ZarrOutput(data_dir / "b.ome.zarr")
    with _out._pending(target):
        blocks = _blocks.block_chunks(volume, 2, depth, None)
        store = target.chunks((1, 1, 320, 1024, 1024))
    assert all(b % s == 0 or b == n for b, s, n in
               zip(blocks, store, (1, 1, 320, 1024, 1024), strict=True))  # fmt: skip
    assert np.prod(blocks) <= np.prod(planned)
    assert blocks[3] == 256 and planned[3] < 256  # rows: up to a chunk row
