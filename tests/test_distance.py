"""Distance maps and local thickness out of core, against scipy and porespy.

Distances are checked on masks whose nearest background voxel lies many
blocks away (blocks forced small), with anisotropic spacing and in 2D;
local thickness voxel by voxel against porespy; bad input, cancel and a
full disk; each operation on a volume four times a memory cap.
"""

from __future__ import annotations

import errno
import sys
import textwrap

import numpy as np
import pytest
import scipy.ndimage as sndi

import napari_diskimage as ndi
from _fs import mount_tmpfs, unmount
from _memcap import run_capped, unavailable_reason
from napari_diskimage import process
from napari_diskimage.measure import size_distribution

porespy = pytest.importorskip("porespy")

BLOCKS = (7, 6, 5)  # x, y, z


def pixels(image):
    """The (z, y, x) pixels of a one-channel disk image, read from its file."""
    return np.asarray(ndi.open_raw(image.path, image.geometry).array[0, 0])


def scratch_files(folder):
    return sorted(p.name for p in folder.glob("ndi-*")) if folder.is_dir() else []


def sparse_mask(shape, n_zeros, seed=0):
    """All foreground but a few background voxels: distances run across
    the whole volume, through many blocks."""
    rng = np.random.default_rng(seed)
    mask = np.ones(shape, np.uint8)
    mask[tuple(rng.integers(0, n, n_zeros) for n in shape)] = 0
    return mask


def blobs(shape, seed=1, porosity=0.6, blobiness=1):
    return porespy.generators.blobs(
        shape, porosity=porosity, blobiness=blobiness, seed=seed
    ).astype(np.uint8)


@pytest.mark.parametrize("block_shape", [BLOCKS, (64, 1, 1), None])
def test_distance_equals_scipy_across_many_blocks(block_shape):
    mask = sparse_mask((21, 33, 40), 3)
    out = process.distance(mask, block_shape=block_shape)
    assert out.dtype == np.float32
    got = pixels(out)
    ref = sndi.distance_transform_edt(mask)
    assert ref.max() > 10  # farther than several blocks
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)


def test_distance_with_anisotropic_spacing_and_the_images_own():
    mask = sparse_mask((17, 29, 23), 4, seed=3)
    spacing = (2.5, 1.0, 0.4)  # z, y, x
    ref = sndi.distance_transform_edt(mask, sampling=spacing)
    got = pixels(process.distance(mask, spacing=spacing, block_shape=BLOCKS))
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)
    image = ndi.copy(mask)
    image.spacing = spacing  # the image's own spacing is the default
    out = process.distance(image, block_shape=BLOCKS)
    np.testing.assert_allclose(pixels(out), ref, atol=1e-3, rtol=0)
    assert out.spacing == spacing


def test_distance_in_2d_and_of_a_random_mask():
    mask2d = sparse_mask((57, 45), 2, seed=4)
    for block_shape in ((5, 4, 1), None):
        got = pixels(
            process.distance(mask2d, spacing=(1.0, 3.0), block_shape=block_shape)
        )
        ref = sndi.distance_transform_edt(mask2d, sampling=(1.0, 3.0))
        np.testing.assert_allclose(got[0], ref, atol=1e-3, rtol=0)
    rng = np.random.default_rng(2)
    mask = (rng.random((19, 22, 25)) > 0.2).astype(np.uint8)
    got = pixels(process.distance(mask, block_shape=BLOCKS))
    np.testing.assert_allclose(got, sndi.distance_transform_edt(mask), atol=1e-3)


def test_distance_of_a_multichannel_image_per_channel():
    a, b = sparse_mask((9, 14, 15), 2, seed=5), sparse_mask((9, 14, 15), 1, seed=6)
    image = ndi.copy(np.stack([a, b]))  # (c, z, y, x)
    out = process.distance(image, block_shape=(4, 4, 3))
    data = np.asarray(out.array[0])
    for c, m in enumerate((a, b)):
        np.testing.assert_allclose(data[c], sndi.distance_transform_edt(m), atol=1e-3)
    out.close()
    image.close()


def test_local_thickness_equals_porespy():
    for shape, block_shape in (((36, 44, 50), (12, 10, 9)), ((90, 110), (17, 23, 1))):
        mask = blobs(shape, seed=2)
        out = process.local_thickness(mask, block_shape=block_shape)
        assert out.dtype == np.float32
        got = pixels(out).reshape(shape)
        ref = porespy.filters.local_thickness(mask.astype(bool))
        assert ref.max() >= 3  # balls larger than one voxel
        assert (got == ref).mean() == 1.0, (got != ref).sum()


def test_small_pores_get_small_halos_and_the_same_thickness():
    # small pores everywhere but one large ball in a corner: the blocks far
    # from it take a halo of their own small radii, not the ball's
    mask = blobs((32, 64, 96), seed=5, porosity=0.5, blobiness=3)
    zz, yy, xx = np.ogrid[:32, :64, :96]
    mask[(zz - 12) ** 2 + (yy - 14) ** 2 + (xx - 14) ** 2 <= 12**2] = 1
    ref = porespy.filters.local_thickness(mask.astype(bool))
    assert ref.max() >= 11
    run = process.local_thickness.run(mask, block_shape=(16, 16, 16))
    for _ in run.steps():
        pass
    got = pixels(run.image)
    assert (got == ref).mean() == 1.0, (got != ref).sum()
    halos = run.info["halos"]  # per block, in file order (z, y, x)
    assert max(halos) == int(sndi.distance_transform_edt(mask).max())
    far = [h for h, box in zip(halos, run.info["boxes"], strict=True)
           if box[4][0] >= 48]  # fmt: skip
    assert max(far) <= ref[:, :, 40:].max() + 1 < max(halos) // 2
    run.image.close()


def test_size_distribution_equals_porespy():
    mask = blobs((30, 40, 50), seed=3)
    lt = process.local_thickness(mask)
    array = pixels(lt)
    for kwargs in ({}, {"bins": 5, "log": False, "voxel_size": 2.5}):
        got = size_distribution(lt, block_shape=(16, 16, 4), **kwargs)
        ref = porespy.metrics.pore_size_distribution(array.astype(float), **kwargs)
        for name in ("bin_centers", "bin_edges", "bin_widths", "pdf", "cdf", "satn"):
            np.testing.assert_allclose(
                getattr(got, name), getattr(ref, name), rtol=1e-12
            )
    assert np.isclose(got.satn.sum(), 1.0)
    with pytest.raises(ValueError, match="no voxel > 0"):
        size_distribution(np.zeros((4, 4), np.float32))
    lt.close()


# --- bad input, cancel, full disk --------------------------------------------
def test_not_a_mask_says_so_and_suggests_threshold(disk_image_dir):
    data = np.ones((6, 9, 8), np.uint16)
    data[4, 5, 6] = 7
    image = ndi.copy(data)
    before = scratch_files(disk_image_dir)
    for op in (process.distance, process.local_thickness, process.watershed_split):
        with pytest.raises(ValueError, match=r"found the value 7.*Threshold"):
            op(image, block_shape=(4, 4, 2))
        assert scratch_files(disk_image_dir) == before  # no partial output
    assert np.array_equal(pixels(image), data)  # the input is unchanged
    with pytest.raises(TypeError, match="threshold"):
        process.distance(np.zeros((4, 4), np.float32))
    image.close()


def test_bad_spacing_h_and_a_mask_without_background(disk_image_dir):
    mask = sparse_mask((5, 6, 7), 1)
    for spacing in (0, -1.0, (1, 0, 1), (1.0, float("nan"), 1.0)):
        with pytest.raises(ValueError, match="spacing along"):
            process.distance(mask, spacing=spacing)
    with pytest.raises(TypeError, match="spacing"):
        process.distance(mask, spacing=(1, 1))  # (y, x) for a 3D image
    for h in (0, -0.5):
        with pytest.raises(ValueError, match="h must be greater than 0"):
            process.watershed_split(mask, h)
    with pytest.raises(ValueError, match="connectivity"):
        process.watershed_split(mask, connectivity=4)
    for op in (process.distance, process.local_thickness, process.watershed_split):
        with pytest.raises(ValueError, match="no background"):
            op(np.ones((5, 6, 7), np.uint8), block_shape=(3, 3, 3))
    assert scratch_files(disk_image_dir) == []


@pytest.mark.parametrize("name", ["distance", "local_thickness", "watershed_split"])
def test_cancel_removes_every_file(disk_image_dir, name):
    image = ndi.copy(blobs((24, 40, 40), seed=4))
    before = scratch_files(disk_image_dir)
    seen = []

    def progress(done, total):
        seen.append(done)
        if done > total // 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        getattr(process, name)(image, block_shape=(8, 8, 4), progress=progress)
    assert scratch_files(disk_image_dir) == before  # output and scratch gone
    assert seen[-1] > 0
    image.close()


@pytest.fixture
def tiny_fs():
    folder = mount_tmpfs("size=640k,mode=0755")
    yield folder
    unmount(folder)


def test_full_disk_is_an_error_before_any_work(tiny_fs, disk_image_dir):
    mask = sparse_mask((48, 64, 64), 3)  # float32 output: 768 KiB
    mask[0, 0, 0] = 0
    ndi.set_disk_image_dir(tiny_fs / "disk-images")
    first = process.distance(mask[:8])  # 128 KiB fits
    for op in (process.distance, process.local_thickness, process.watershed_split):
        with pytest.raises(OSError) as info:
            op(mask)
        assert info.value.errno == errno.ENOSPC
        assert scratch_files(tiny_fs / "disk-images") == [first.path.name]
    first.close()
    assert scratch_files(tiny_fs / "disk-images") == []


def test_operations_table_and_command_line(data_dir):
    import tifffile

    from napari_diskimage._cli import main

    mask = sparse_mask((6, 20, 30), 2)
    src = data_dir / "mask.tif"
    tifffile.imwrite(src, mask)
    for key in ("distance", "local_thickness", "watershed_split"):
        assert process.OPERATIONS[key].mask_input
        dst = data_dir / f"{key}.tif"
        assert main(["process", key, str(src), str(dst)]) == 0
        got = tifffile.imread(dst)
        assert got.shape == mask.shape
    ref = sndi.distance_transform_edt(mask)
    np.testing.assert_allclose(
        tifffile.imread(data_dir / "distance.tif"), ref, atol=1e-3
    )
    labels = tifffile.imread(data_dir / "watershed_split.tif")
    assert labels.dtype == np.uint32
    assert np.array_equal(labels > 0, mask > 0)


# --- out of core --------------------------------------------------------------
# The capped process holds ~77 MiB of anonymous memory once numba's kernels
# are loaded (measured: 44 MiB after the imports, 77 MiB after a first
# distance map; ~95 MiB of mapped library files beside it, reclaimable).
CAP = 160 << 20
PERIOD = 6  # cubic cells of 5^3 pore voxels between walls of solid
CELLS = """
def cells(z0, z1, y, x):
    zz, yy, xx = np.ogrid[z0:z1, :y, :x]
    walls = (zz % P == 0) | (yy % P == 0) | (xx % P == 0)
    return (~walls).astype(np.uint8)
"""
OUT_OF_CORE = textwrap.dedent(
    """
    import sys, numpy as np
    import napari_diskimage as ndi
    from napari_diskimage import process
    P = {period}
    {cells}
    op, src, shape, folder = sys.argv[1:5]
    z, y, x = (int(n) for n in shape.split(","))
    ndi.set_disk_image_dir(folder)
    import threading, time
    peak = [0]
    def watch():  # the anonymous memory's peak (VmHWM counts file pages)
        while True:
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon"):
                    peak[0] = max(peak[0], int(line.split()[1]))
            time.sleep(0.02)
    threading.Thread(target=watch, daemon=True).start()
    mask = ndi.open_raw(src, ndi.Geometry("uint8", x, y, z))
    start = time.perf_counter()
    out = getattr(process, op)(mask)
    print(f"seconds:{{time.perf_counter() - start:.1f}}")
    for line in open("/proc/self/status"):  # the run's memory (not the checks')
        if line.startswith(("VmHWM", "RssAnon")):
            print("".join(line.split()))
    print(f"RssAnonPeak:{{peak[0]}}kB")
    planes = (1, 2, 3, z // 2, z - 2)
    rows = [(r, min(y, r + 256)) for r in range(0, y, 256)]  # checks: small
    if op == "distance":
        # the distance to the nearest wall plane, along each axis
        def axis(n):
            r = np.arange(n) % P
            return np.minimum(r, P - r)
        for k in planes:
            for r0, r1 in rows:
                ref = np.minimum(axis(y)[r0:r1, None], axis(x)[None, :])
                ref = np.minimum(ref, axis(z)[k])
                got = np.asarray(out.array[0, 0, k, r0:r1])
                assert np.abs(got - ref).max() < 1e-3, k
    elif op == "local_thickness":
        # every cell as one cell alone (porespy's values, passed in)
        cell = np.array({cell_lt}, np.float32).reshape((P + 1,) * 3)
        for k in planes:
            for r0, r1 in rows:
                got = np.asarray(out.array[0, 0, k, r0:r1])
                yy = np.arange(r0, r1)[:, None] % P
                ref = cell[k % P][yy, np.arange(x)[None, :] % P]
                assert np.array_equal(got, ref), k
    else:
        # one id per cell (cells cut by block borders too), none outside:
        # the planes of one layer of cells (k // P) show the same ids,
        # planes of different layers none in common
        layers = {{}}
        for k in planes:
            if k % P == 0:
                continue
            got = np.asarray(out.array[0, 0, k])
            assert np.array_equal(got > 0, cells(k, k + 1, y, x)[0] > 0), k
            inner = got[1::P, 1::P][: (y - 1) // P, : (x - 1) // P]
            for dy in range(P - 1):
                for dx in range(P - 1):
                    same = got[1 + dy :: P, 1 + dx :: P]
                    same = same[: inner.shape[0], : inner.shape[1]]
                    assert np.array_equal(same, inner), (k, dy, dx)
            assert len(np.unique(inner)) == inner.size, k
            if k // P in layers:
                assert np.array_equal(inner, layers[k // P]), k
            for layer, ids in layers.items():
                if layer != k // P:
                    assert not np.intersect1d(ids, inner).size, (k, layer)
            layers[k // P] = inner
        assert len(layers) >= 2, planes  # ids compared across layers too
    print("ok", out.nbytes)
    """
)
#: Runs each operation once on a tiny volume, uncapped, so that numba's
#: kernels are compiled into its on-disk cache (``cache=True``) before the
#: capped runs: those then load them and measure the operation, not the
#: compiler (measured on these three: 116 MiB of anonymous memory at the
#: peak and 11 s when they compile, 82 MiB and 2 s when they load; the
#: local_thickness run peaked at ~142 MiB under a 160 MiB cap, so its cap
#: is 192 MiB: see the params below).
WARM_UP = textwrap.dedent(
    """
    import sys, numpy as np
    import napari_diskimage as ndi
    from napari_diskimage import process
    ndi.set_disk_image_dir(sys.argv[1])
    mask = np.ones((13, 13, 13), np.uint8)
    mask[::6], mask[:, ::6], mask[:, :, ::6] = 0, 0, 0
    for op in ("distance", "local_thickness", "watershed_split"):
        getattr(process, op)(mask).close()
    """
)


@pytest.fixture(scope="module")
def warm_numba(tmp_path_factory):
    import subprocess

    folder = tmp_path_factory.mktemp("warm")
    subprocess.run([sys.executable, "-c", WARM_UP, str(folder)], check=True)


def _write_cells(path, shape):
    ns = {"np": np, "P": PERIOD}
    exec(CELLS, ns)
    z, y, x = shape
    with open(path, "wb") as fh:  # slab by slab: the test process stays small
        for z0 in range(0, z, 16):
            fh.write(ns["cells"](z0, min(z, z0 + 16), y, x).tobytes())


@pytest.mark.slow
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
@pytest.mark.parametrize(
    ("op", "shape", "cap", "ratio"),
    [
        # the result alone (float32 or uint32) is ``ratio`` x the cap; the
        # scratch files beside it (distance map, markers, labels) are not
        # counted.  67 x 1585 x 1585 (whole cells: sides 6 n + 1) of
        # float32: 642 MiB, 4.01 x 160 MiB
        ("distance", (67, 1585, 1585), CAP, 4),
        # local_thickness peaked at 142 MiB of 160: a 192 MiB cap leaves
        # room for the machine's noise (67 x 1735 x 1735: 4.01 x 192 MiB)
        ("local_thickness", (67, 1735, 1735), 192 << 20, 4),
        # watershed_split: the h-maxima and the flood hold ~30-40 B a voxel
        # of a block with its halo (~60 MiB a thread with the default
        # 10 MiB of float32 a block, ~82 MiB beside them once numba's
        # kernels are loaded), so the cap is higher; its result is 4.0 x
        # it (199 x 1303 x 1303 uint32: 1288.8 MiB; 33 layers of cells, the
        # sampled planes in layers 0, 16 and 32).  Rows of 1303 rather than
        # 2617 (49 x 2617 x 2617: 370 s at load 5-6): whole-row blocks fit
        # the budget better.  Measured: 352 s at load 3.5 beside a CI run,
        # anon peak 206 MiB; 2.0 x (55 x 1747 x 1747) took 81 s in a quiet CI
        ("watershed_split", (199, 1303, 1303), 320 << 20, 4),
    ],
)
def test_each_operation_under_a_memory_cap(tmp_path, warm_numba, op, shape, cap, ratio):
    src = tmp_path / "cells.raw"
    _write_cells(src, shape)
    cell = ndi_cell_local_thickness()
    script = OUT_OF_CORE.format(
        period=PERIOD, cells=CELLS.strip(), cell_lt=cell.ravel().tolist()
    )
    result = run_capped(
        cap,
        [sys.executable, "-c", script, op, str(src), ",".join(map(str, shape)),
         str(tmp_path / "scratch")],
        capture_output=True,
        text=True,
        timeout=1200,  # minutes on busy cores
    )  # fmt: skip
    assert result.returncode != 137, "killed by the memory cap"
    assert result.returncode == 0, result.stdout + result.stderr
    status, nbytes = result.stdout.split()[-2:]
    assert status == "ok"
    assert int(nbytes) == np.prod(shape) * 4  # float32 or uint32
    assert int(nbytes) >= ratio * cap  # the result alone, ratio x the cap
    print(op, result.stdout.split()[-6:-2])  # the capped process's time, memory
    assert list((tmp_path / "scratch").iterdir()) == []


def ndi_cell_local_thickness():
    """porespy's local thickness of one cell with its walls."""
    ns = {"np": np, "P": PERIOD}
    exec(CELLS, ns)
    one = ns["cells"](0, PERIOD + 1, PERIOD + 1, PERIOD + 1)
    return porespy.filters.local_thickness(one.astype(bool)).astype(np.float32)
