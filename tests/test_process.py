"""Out-of-core processing: each operation against scipy / scikit-image on the
whole array in memory, with blocks forced small so that features cross
block borders; bad input, cancel and failure; a dask.distributed cluster;
a volume four times a memory cap."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import scipy.ndimage as sndi
import tifffile
from skimage.filters import threshold_otsu
from skimage.morphology import ball, disk

import napari_diskimage as ndi
from _arrays import local_cluster, smooth_volume
from _fs import mount_tmpfs, unmount
from _memcap import run_capped, unavailable_reason
from _subprocess import run_python
from napari_diskimage import process
from napari_diskimage.process import _blocks

BLOCKS = (7, 6, 5)  # x, y, z: many blocks, features cross every border


def pixels(image):
    """The (z, y, x) pixels of a one-channel disk image, read from its file."""
    return np.asarray(ndi.open_raw(image.path, image.geometry).array[0, 0])


SHAPES = {"2d": (23, 31), "3d": (13, 17, 19)}
DTYPES = ["uint8", "uint16", "float32"]


@pytest.fixture(params=[(d, s) for d in DTYPES for s in SHAPES])
def volume(request):
    dtype, kind = request.param
    data = smooth_volume(SHAPES[kind], dtype)
    image = ndi.copy(data)
    yield data, image
    image.close()


def as3d(a):
    return a if a.ndim == 3 else a[None]


def test_gaussian_equals_scipy(volume):
    data, image = volume
    out = process.gaussian(image, 1.5, block_shape=BLOCKS)
    assert out.dtype == data.dtype
    np.testing.assert_array_equal(pixels(out), as3d(sndi.gaussian_filter(data, 1.5)))


def test_median_and_mean_equal_scipy(volume):
    data, image = volume
    med = process.median(image, 3, block_shape=BLOCKS)
    np.testing.assert_array_equal(pixels(med), as3d(sndi.median_filter(data, 3)))
    mean = process.mean(image, 5, block_shape=BLOCKS)
    np.testing.assert_array_equal(pixels(mean), as3d(sndi.uniform_filter(data, 5)))


def test_threshold_and_otsu_equal_skimage(volume):
    data, image = volume
    value = process.otsu(image, block_shape=BLOCKS)
    assert value == pytest.approx(float(threshold_otsu(data)), rel=1e-6)
    mask = process.threshold(image, value, block_shape=BLOCKS)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(pixels(mask), as3d(data >= value).astype(np.uint8))
    band = process.threshold(image, value / 2, value, block_shape=BLOCKS)
    expected = (data >= value / 2) & (data <= value)
    np.testing.assert_array_equal(pixels(band), as3d(expected).astype(np.uint8))


@pytest.mark.parametrize(
    ("name", "scipy_name"),
    [
        ("dilate", "binary_dilation"),
        ("erode", "binary_erosion"),
        ("opening", "binary_opening"),
        ("closing", "binary_closing"),
    ],
)
@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_morphology_equals_scipy(name, scipy_name, kind):
    data = smooth_volume(SHAPES[kind], "uint8") > 120
    mask = ndi.copy(data.astype(np.uint8))
    footprint = ball(2) if kind == "3d" else disk(2)
    out = getattr(process, name)(mask, 2, block_shape=BLOCKS)
    expected = getattr(sndi, scipy_name)(data, structure=footprint)
    np.testing.assert_array_equal(pixels(out), as3d(expected).astype(np.uint8))


def same_partition(a, b):
    """True if label images ``a`` and ``b`` differ only by renumbering."""
    assert a.shape == b.shape
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@pytest.mark.parametrize(
    ("kind", "connectivity"),
    [("2d", 1), ("2d", 2), ("3d", 1), ("3d", 2), ("3d", 3)],
)
def test_label_is_scipys_partition(kind, connectivity):
    ndim = len(SHAPES[kind])
    data = smooth_volume(SHAPES[kind], "uint8", seed=3) > 140
    mask = ndi.copy(data.astype(np.uint8))
    out = process.label(mask, connectivity, block_shape=BLOCKS)
    expected, n = sndi.label(data, sndi.generate_binary_structure(ndim, connectivity))
    got = pixels(out)
    assert out.dtype == np.uint32
    assert n > 3  # a test with several components
    assert same_partition(got, as3d(expected))
    assert int(got.max()) == n  # numbered 1..N


def test_label_one_id_for_a_snake_across_many_blocks():
    """A 1-voxel-wide path that winds through dozens of blocks, with gaps
    beside it: one component, and the isolated voxels are their own."""
    mask = np.zeros((10, 40, 40), np.uint8)
    z = 0
    for row in range(0, 40, 4):  # a serpentine in each plane pair
        mask[z, row, :] = 1
        end = 39 if (row // 4) % 2 == 0 else 0
        mask[z, row : row + 4, end] = 1
    mask[z, 36:40, :] = 0
    mask[z, 36, :] = 1
    mask[0:10, 36, 0] = 1  # then up through every plane
    mask[9, :, 0] = 1
    mask[5, 20, 20] = 1  # an isolated voxel
    out = process.label(ndi.copy(mask), 1, block_shape=(3, 3, 2))
    got = pixels(out)
    expected, n = sndi.label(mask)
    assert n == 2
    assert same_partition(got, expected)
    assert len(np.unique(got[mask > 0])) == 2


def test_label_refuses_a_non_mask():
    values = ndi.copy(np.array([[0, 1, 2]], np.uint8))
    with pytest.raises(ValueError, match=r"mask of 0 .* found the value 2"):
        process.label(values)
    with pytest.raises(TypeError, match="expects a mask"):
        process.label(ndi.copy(np.ones((3, 3), np.float32)))


def test_label_and_distance_refuse_a_non_mask_with_one_message(disk_image_dir):
    """One check of 0/1 masks: the same message names the file, the value
    found and Threshold, and no output is left."""
    values = ndi.copy(np.full((3, 8, 8), 3, np.uint8))
    before = scratch_files(disk_image_dir)
    messages = []
    for operation in (process.label, process.distance, process.local_thickness):
        with pytest.raises(ValueError) as info:
            operation(values)
        message = str(info.value)
        assert str(values.path) in message and "found the value 3" in message
        assert "Threshold" in message
        messages.append(message.split(" expects ")[1])
        assert scratch_files(disk_image_dir) == before
    assert len(set(messages)) == 1


def test_each_operation_is_one_registration():
    """The Process tool's entry runs what the public function drives, and
    the public function takes the run's parameters plus out (an OME-Zarr
    store for the result) and progress."""
    import inspect

    for key, entry in process.OPERATIONS.items():
        public = getattr(process, key)
        assert entry.make_run is public.run
        params = list(inspect.signature(public).parameters)
        assert params[-2:] == ["out", "progress"]
        assert list(inspect.signature(entry.make_run).parameters) == params[:-2]
    image = ndi.copy(np.arange(64, dtype=np.uint8).reshape(8, 8))
    seen = []
    run = process.OPERATIONS["threshold"].make_run(image, 32)
    steps = list(iter(run))
    driven = process.threshold(image, 32, progress=lambda d, t: seen.append((d, t)))
    np.testing.assert_array_equal(pixels(run.output), pixels(driven))
    assert steps[-1] == seen[-1] == (run.total, run.total)


def test_arithmetic_clips_to_the_type(volume):
    data, image = volume
    info = np.iinfo(data.dtype) if data.dtype.kind in "iu" else None

    def expected(values):
        if info is None:
            return values.astype(data.dtype)
        return np.clip(
            np.rint(np.nan_to_num(values, nan=0)), info.min, info.max
        ).astype(data.dtype)

    f = data.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cases = [
            ("+", 200, f + 200),
            ("-", 30, f - 30),
            ("*", 3, f * 3),
            ("/", 0.5, f / 0.5),
            ("max", 40, np.maximum(f, 40)),
            ("min", 40, np.minimum(f, 40)),
        ]
        for op, b, values in cases:
            out = process.arithmetic(image, op, b, block_shape=BLOCKS)
            np.testing.assert_array_equal(pixels(out), as3d(expected(values)))
        out = process.arithmetic(image, "-", image, block_shape=BLOCKS)
        assert not pixels(out).any()


def test_arithmetic_of_two_images_and_division_by_zero():
    a = ndi.copy(np.array([[10, 0, 255]], np.uint8))
    b = ndi.copy(np.array([[0, 0, 5]], np.uint8))
    out = process.arithmetic(a, "/", b)
    assert pixels(out)[0, 0].tolist() == [255, 0, 51]  # x/0: max; 0/0: 0
    out = process.arithmetic(a, "/", b, dtype="float32")
    values = pixels(out)[0, 0]
    assert values[0] == np.inf and np.isnan(values[1]) and values[2] == 51


def test_convert_with_and_without_rescale(volume):
    data, image = volume
    lo, hi = float(data.min()), float(data.max())
    out = process.convert(image, "uint8", block_shape=BLOCKS)
    expected = np.rint((data.astype(np.float64) - lo) * 255 / (hi - lo))
    np.testing.assert_array_equal(pixels(out), as3d(expected).astype(np.uint8))
    kept = process.convert(image, "int16", rescale=False, block_shape=BLOCKS)
    expected = np.clip(np.rint(data.astype(np.float64)), -32768, 32767)
    np.testing.assert_array_equal(pixels(kept), as3d(expected).astype(np.int16))
    floats = process.convert(image, "float32", rescale=True, block_shape=BLOCKS)
    assert pixels(floats).min() == 0 and pixels(floats).max() == pytest.approx(1)


def test_bin_means_blocks_and_scales_spacing(volume):
    data, image = volume
    image.spacing = (2.0, 0.5, 0.25)
    out = process.bin(image, 2, block_shape=BLOCKS)
    d3 = as3d(data).astype(np.float64)
    fz = 2 if data.ndim == 3 else 1
    z, y, x = (d3.shape[0] // fz, d3.shape[1] // 2, d3.shape[2] // 2)
    blocks = d3[: z * fz, : y * 2, : x * 2].reshape(z, fz, y, 2, x, 2)
    means = blocks.mean(axis=(1, 3, 5))
    if data.dtype.kind in "iu":
        np.testing.assert_array_equal(pixels(out), np.rint(means).astype(data.dtype))
    else:
        np.testing.assert_allclose(pixels(out), means, rtol=1e-6)
    assert out.spacing == (2.0 * fz, 1.0, 0.5)


def test_crop_is_the_box_and_copies_whole_rows_by_the_kernel(volume, monkeypatch):
    data, image = volume
    d3 = as3d(data)
    z0 = 1 if d3.shape[0] > 1 else 0
    out = process.crop(image, 2, 3, z0, 5, 4, d3.shape[0] - z0)
    np.testing.assert_array_equal(pixels(out), d3[z0:, 3:7, 2:7])
    calls = []
    real = os.copy_file_range

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(os, "copy_file_range", counting)
    rows = process.crop(image, 0, 3, z0, d3.shape[2], 4)
    np.testing.assert_array_equal(pixels(rows), d3[z0:, 3:7, :])
    assert calls  # whole rows of a mapped file: the kernel copied them


def test_multi_channel_frames_are_filtered_separately():
    data = np.stack([smooth_volume((2, 9, 11, 13), "float32", seed=s) for s in (1, 2)])
    data = np.moveaxis(data, 0, 1)  # (t, c, z, y, x) = (2, 2, 9, 11, 13)
    image = ndi.copy(data)
    out = process.gaussian(image, 1.0, block_shape=(5, 5, 4))
    got = np.asarray(ndi.open_raw(out.path, out.geometry).array)
    for t in range(2):
        for c in range(2):
            np.testing.assert_array_equal(
                got[t, c], sndi.gaussian_filter(data[t, c], 1.0)
            )


def test_compressed_tiff_input(data_dir):
    data = smooth_volume((6, 40, 50), "uint16")
    path = data_dir / "lzw.tif"
    tifffile.imwrite(path, data, compression="zlib", tile=(16, 16))
    image = ndi.open_tiff(path)
    assert not image.is_mapped
    out = process.gaussian(image, 1.2, block_shape=(13, 11, 4))
    np.testing.assert_array_equal(pixels(out), sndi.gaussian_filter(data, 1.2))
    image.close()


def test_apply_with_halo_boundaries_and_several_images():
    data = smooth_volume((9, 14, 16), "float32")
    image = ndi.copy(data)
    out = ndi.apply(
        lambda b: sndi.maximum_filter(b, 5, mode="reflect"),
        image,
        depth=2,
        block_shape=(5, 4, 3),
    )
    np.testing.assert_array_equal(pixels(out), sndi.maximum_filter(data, 5))
    nearest = process.apply(
        lambda b: sndi.uniform_filter(b, 3, mode="nearest"),
        image,
        depth=1,
        boundary="nearest",
        block_shape=(5, 4, 3),
    )
    np.testing.assert_allclose(
        pixels(nearest), sndi.uniform_filter(data, 3, mode="nearest"), rtol=1e-6
    )
    two = process.apply(np.subtract, image, image, block_shape=(5, 4, 3))
    assert not pixels(two).any()
    typed = process.apply(lambda b: b > 50, image, dtype="uint8")
    np.testing.assert_array_equal(pixels(typed), (data > 50).astype(np.uint8))


def scratch_files(folder):
    return sorted(p.name for p in folder.glob("ndi-*")) if folder.is_dir() else []


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda im: process.gaussian(im, 0),
            ValueError,
            "sigma must be greater than 0",
        ),
        (lambda im: process.gaussian(im, -1), ValueError, "sigma must be"),
        (lambda im: process.median(im, 0), ValueError, "size must be at least 1"),
        (lambda im: process.mean(im, 2.5), ValueError, "whole number"),
        (lambda im: process.dilate(im, -1), ValueError, "radius must be 0 or more"),
        (lambda im: process.bin(im, 0), ValueError, "factor must be at least 1"),
        (lambda im: process.bin(im, 100), ValueError, "larger than the image"),
        (lambda im: process.crop(im, 10, 0, 0, 10, 2, 1), IndexError, "outside"),
        (lambda im: process.crop(im, -1, 0), IndexError, "outside"),
        (lambda im: process.threshold(im, 5, 1), ValueError, "below low"),
        (lambda im: process.arithmetic(im, "%", 2), ValueError, "unknown operation"),
        (
            lambda im: process.arithmetic(im, "+", np.zeros((3, 4), np.uint8)),
            ValueError,
            "differ in size",
        ),
        (lambda im: process.apply(lambda b: b, im, depth=20), ValueError, "halo"),
        (lambda im: process.label(im, 4), ValueError, "connectivity"),
        (lambda im: process.convert(im, "complex64"), ValueError, "pixel type"),
    ],
)
def test_bad_parameters_are_refused_before_any_file(call, error, match, disk_image_dir):
    data = np.arange(6 * 10, dtype=np.uint8).reshape(6, 10) % 2
    image = ndi.copy(data)
    before = scratch_files(disk_image_dir)
    with pytest.raises(error, match=match):
        call(image)
    assert scratch_files(disk_image_dir) == before
    np.testing.assert_array_equal(np.asarray(image.array[0, 0, 0]), data)


def test_exception_in_func_removes_the_output_and_keeps_the_input(disk_image_dir):
    data = smooth_volume((8, 20, 20), "uint16")
    image = ndi.copy(data)
    before = scratch_files(disk_image_dir)

    def broken(block):
        if block.mean() > 0:
            raise RuntimeError("my filter broke")
        return block

    with pytest.raises(RuntimeError, match="my filter broke") as info:
        process.apply(broken, image, block_shape=(5, 5, 2))
    assert "output file was removed" in " ".join(info.value.__notes__)
    assert scratch_files(disk_image_dir) == before
    np.testing.assert_array_equal(np.asarray(image.array[0, 0]), data)


def test_func_returning_the_wrong_shape_or_type_says_so():
    image = ndi.copy(np.ones((4, 6), np.uint8))
    with pytest.raises(ValueError, match="same shape"):
        process.apply(lambda b: b[:, :2], image)
    with pytest.raises(TypeError, match="dtype='float64'"):
        process.apply(lambda b: b * 0.5, image)


def test_cancel_from_progress_removes_the_output(disk_image_dir):
    image = ndi.copy(smooth_volume((8, 30, 30), "float32"))
    before = scratch_files(disk_image_dir)
    seen = []

    def progress(done, total):
        seen.append(done)
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process.gaussian(image, 1, block_shape=(8, 8, 2), progress=progress)
    assert scratch_files(disk_image_dir) == before
    assert 0 < seen[-1] < image.nbytes


def test_closing_the_steps_cancels_and_stops_the_blocks(disk_image_dir):
    """What the widget's Cancel does: the run stops within a block."""
    image = ndi.copy(smooth_volume((8, 30, 30), "uint8"))
    started = threading.Event()

    def slow(block):
        started.set()
        threading.Event().wait(0.05)
        return block

    inputs = scratch_files(disk_image_dir)
    run = process.OPERATIONS["gaussian"].make_run(image, 1.0)
    assert run.output.path.exists()  # the output exists before the first block
    cancelled = process.apply.run(slow, image, block_shape=(4, 4, 1))
    steps = iter(cancelled)
    next(steps)
    next(steps)
    steps.close()
    assert started.is_set()
    assert not cancelled.output.path.exists()
    assert list(iter(run))[-1] == (run.total, run.total)  # the other run is fine
    run.output.close()
    assert scratch_files(disk_image_dir) == inputs
    # the cancelled run's thread drops its queued blocks and ends after the
    # block in flight, in the background (Cancel returns at once); until
    # then those blocks hold the input (the fixture's leftover check)
    for thread in threading.enumerate():
        if thread.name == f"ndi-{cancelled.token}":
            thread.join(30)
            assert not thread.is_alive()


def test_blocks_written_in_slabs_give_the_same_result(monkeypatch):
    """A block is written a slab at a time (a cancel stops it between two);
    small slabs, cut along z, y or a single row, change nothing."""
    from napari_diskimage.process import _tasks

    data = smooth_volume((6, 20, 24), "float32")
    image = ndi.copy(data)
    expected = sndi.gaussian_filter(data, 1.0, mode="reflect")
    for slab in (1, 24 * 4 * 3, 20 * 24 * 4 * 2):  # bytes: a pixel, rows, planes
        monkeypatch.setattr(_tasks, "SLAB_BYTES", slab)
        with process.gaussian(image, 1.0, block_shape=(24, 10, 3)) as out:
            np.testing.assert_allclose(out.array[0, 0], expected, rtol=1e-5)
    image.close()


def test_a_cancelled_run_does_not_wait_at_exit_for_a_stuck_block(tmp_path):
    """A script cancelled (Ctrl+C) while a block is stuck, as a write behind a
    disk saturated by writeback is, exits without waiting for that block:
    Python joins dask's default pool at exit, which held a cancelled command
    for minutes.  The stuck block here would hold it for 600 s."""
    code = """
        import json, threading
        import numpy as np
        import napari_diskimage as ndi
        from napari_diskimage import process
        from napari_diskimage.process._engine import CANCEL_WAIT, drive

        image = ndi.copy(np.zeros((2, 30, 30), np.uint8))
        stuck, calls, lock = threading.Event(), [], threading.Lock()

        def slow_second(block):
            with lock:
                calls.append(1)
                second = len(calls) == 2
            if second:
                stuck.set()
                threading.Event().wait(600)
            return block

        def progress(done, total):
            if done > 0:
                assert stuck.wait(60)
                raise KeyboardInterrupt

        run = process.apply.run(slow_second, image, block_shape=(30, 30, 1))
        run.cancel_wait = CANCEL_WAIT  # as the command line sets it
        try:
            drive(run, progress)
        except KeyboardInterrupt:
            pass
        image.close()
        print(json.dumps({"stuck": stuck.is_set()}))
    """
    scratch = tmp_path / "scratch"
    try:
        out = run_python(code, timeout=60, NAPARI_DISKIMAGE_DIR=str(scratch))
    except subprocess.TimeoutExpired:
        pytest.fail("the script waited at exit for the cancelled run's block")
    assert out == {"stuck": True}
    assert list(scratch.glob("ndi-*")) == []


def test_a_cancelled_command_leaves_freeing_its_output_to_a_helper(tmp_path):
    """Freeing a cancelled output's blocks can take minutes (ext4 with
    ``discard`` discards them in the last close, behind a busy disk): a
    command that exits next deletes the name at once and leaves the last
    reference to a helper process, which ends once the command has ended."""
    code = """
        import json, os
        import numpy as np
        import napari_diskimage as ndi
        from napari_diskimage import process
        from napari_diskimage.process._engine import CANCEL_WAIT, drive

        image = ndi.copy(np.zeros((4, 30, 30), np.uint8))
        run = process.gaussian.run(image, 1.0, block_shape=(30, 30, 1))
        run.cancel_wait = CANCEL_WAIT  # as the command line sets it
        path = str(run.output.path)

        def progress(done, total):
            if done > 0:
                raise KeyboardInterrupt

        try:
            drive(run, progress)
        except KeyboardInterrupt:
            pass
        image.close()

        def holders():
            found = []
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                    links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds]
                except OSError:
                    continue
                if any(link.startswith(path) for link in links):
                    found.append(int(pid))
            return found

        print(json.dumps({"exists": os.path.exists(path), "holders": holders(),
                          "me": os.getpid(), "path": path}))
    """
    out = run_python(code, NAPARI_DISKIMAGE_DIR=str(tmp_path / "scratch"))
    assert not out["exists"]  # the name is gone at once
    assert out["holders"] and out["me"] not in out["holders"], out
    for pid in out["holders"]:  # the helper ends with the command
        for _ in range(200):
            if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail(f"helper {pid} outlived the command")


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def tiny_fs():
    folder = mount_tmpfs("size=640k,mode=0755")
    yield folder
    unmount(folder)


def test_full_disk_is_an_error_before_any_work(tiny_fs, disk_image_dir):
    source = ndi.copy(np.zeros((64, 64, 64), np.uint16))  # 512 KiB
    ndi.set_disk_image_dir(tiny_fs / "disk-images")
    first = process.threshold(source, 1)  # 256 KiB fits
    with pytest.raises(OSError) as info:
        process.gaussian(source, 1)  # 512 KiB more does not
    assert info.value.errno == errno.ENOSPC
    assert "free" in str(info.value)
    assert scratch_files(tiny_fs / "disk-images") == [first.path.name]
    first.close()
    assert scratch_files(tiny_fs / "disk-images") == []


def test_chained_steps_take_each_others_output():
    data = smooth_volume((10, 30, 30), "uint16", seed=5)
    image = ndi.copy(data)
    smooth = process.gaussian(image, 1, block_shape=BLOCKS)
    mask = process.threshold(smooth, process.otsu(smooth), block_shape=BLOCKS)
    labels = process.label(process.opening(mask, 1, block_shape=BLOCKS))
    ref_smooth = sndi.gaussian_filter(data, 1)
    ref_mask = ref_smooth >= threshold_otsu(ref_smooth)
    ref = sndi.label(sndi.binary_opening(ref_mask, ball(1)))[0]
    assert same_partition(pixels(labels), ref)


def test_choose_chunks_follows_the_layout():
    # pointwise: whole rows and planes, about BLOCK_BYTES
    t, c, z, y, x = _blocks.choose_chunks((1, 1, 256, 2048, 4096), 2)
    assert (t, c, x, y) == (1, 1, 4096, 2048) and z * y * x * 2 <= _blocks.BLOCK_BYTES
    # with a halo: tiles, all of z when it fits, thicker than the halo
    t, c, z, y, x = _blocks.choose_chunks((1, 1, 64, 2048, 4096), 2, (0, 0, 8, 8, 8))
    assert z == 64 and x == _blocks.TILE_X and y >= 16
    assert z * y * x * 2 <= _blocks.HALO_BLOCK_BYTES
    # a halo only in y and x: one plane per block
    assert _blocks.choose_chunks((1, 1, 64, 2048, 4096), 2, (0, 0, 0, 8, 8))[2] == 1


@pytest.mark.slow
def test_distributed_cluster_gives_the_same_pixels_and_reads_in_the_workers(
    data_dir, disk_image_dir
):
    """A LocalCluster of 2 worker processes: workers open the input by path
    and write their blocks into the output by path."""
    pytest.importorskip("distributed")
    data = smooth_volume((12, 40, 44), "uint16", seed=7)
    path = data_dir / "vol.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    image = ndi.open_tiff(path)
    threaded = process.gaussian(image, 1.5, block_shape=(16, 16, 4))
    expected = pixels(threaded)
    with local_cluster() as client:
        # the workers use the same disk-image directory (a shared folder)
        client.run(ndi.set_disk_image_dir, str(disk_image_dir))
        here = process.stats()["bytes_read"]
        out = process.gaussian(image, 1.5, block_shape=(16, 16, 4))
        worker_stats = client.run(process.stats)
        assert process.stats()["bytes_read"] == here  # nothing read here
        labels = process.label(process.threshold(out, 30000), block_shape=(16, 16, 4))
        n_workers_label = sum(
            s["blocks_written"] for s in client.run(process.stats).values()
        )
    np.testing.assert_array_equal(pixels(out), expected)
    read = [s["bytes_read"] for s in worker_stats.values()]
    assert len(read) == 2 and all(r > 0 for r in read)  # both workers read
    assert sum(read) >= image.nbytes
    ref = sndi.label(sndi.gaussian_filter(data, 1.5) >= 30000)[0]
    assert same_partition(pixels(labels), ref)
    assert n_workers_label > 0


def test_a_disk_image_pickles_as_a_reference():
    import pickle

    image = ndi.copy(np.zeros((100, 1000), np.uint16))  # 200 KB of pixels
    data = pickle.dumps(image)
    assert len(data) < 1000
    other = pickle.loads(data)
    assert other.path == image.path and not other.is_scratch and not other.writable
    image.write_pixel(7, 3, 2)
    assert int(other.array[0, 0, 0, 2, 3]) == 7  # the same file
    other.close()
    assert image.path.exists()  # the reference never deletes the file


def test_a_worker_that_cannot_see_the_file_names_it(tmp_path):
    import pickle

    image = ndi.copy(np.zeros((4, 4), np.uint8))
    data = pickle.dumps(image)
    path = image.path
    image.close()
    with pytest.raises(FileNotFoundError, match="shared by all workers") as info:
        pickle.loads(data)
    assert str(path) in str(info.value)


CAP = 160 << 20
OUT_OF_CORE = textwrap.dedent(
    """
    import sys, numpy as np, scipy.ndimage as sndi
    import napari_diskimage as ndi
    from napari_diskimage import process
    src, folder = sys.argv[1], sys.argv[2]
    ndi.set_disk_image_dir(folder)
    image = ndi.open_raw(src)
    out = process.gaussian(image, 2, block_shape=(1024, 128, 32))
    mask = process.threshold(out, 1000)
    # spot checks against scipy on small boxes well inside the volume
    for z in (40, 200):
        box = np.asarray(image.array[0, 0, z - 9 : z + 10, 500:540, 300:340])
        ref = sndi.gaussian_filter(box, 2)[9, 9:-9, 9:-9]
        got = np.asarray(out.array[0, 0, z, 509:531, 309:331])
        assert np.array_equal(got, ref), z
        assert np.array_equal(mask.array[0, 0, z, 509:531, 309:331], got >= 1000)
    print("ok")
    """
)


@pytest.mark.slow
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_gaussian_of_four_times_the_memory_cap(tmp_path):
    z, y, x = 320, 1024, 1024  # uint16: 640 MiB, 4 x the cap
    src = tmp_path / f"vol_{x}x{y}x{z}_UInt16.raw"
    rng = np.random.default_rng(0)
    with open(src, "wb") as fh:  # written slab by slab: the test stays small
        for _ in range(0, z, 16):
            fh.write(rng.integers(0, 2000, (16, y, x), dtype=np.uint16).tobytes())
    assert src.stat().st_size >= 4 * CAP
    result = run_capped(
        CAP,
        [sys.executable, "-c", OUT_OF_CORE, str(src), str(tmp_path / "scratch")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 137, "killed by the memory cap"
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
    assert list((tmp_path / "scratch").iterdir()) == []
