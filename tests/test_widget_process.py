"""The Process widget, driven like a user: choose, set, Run, watch, Cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.ndimage as sndi

import napari_diskimage as ndi
from napari_diskimage import process
from napari_diskimage.process import _tasks

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")

from napari_diskimage import _qt as w  # noqa: E402
from napari_diskimage._qt.process import ProcessImage  # noqa: E402


def volume(seed=0):
    rng = np.random.default_rng(seed)
    field = sndi.gaussian_filter(rng.random((12, 60, 70)), 2)
    field = (field - field.min()) / (field.max() - field.min())
    return np.rint(field * 4000).astype(np.uint16)


def add(viewer, data, name="vol"):
    return w.add_disk_image(viewer, ndi.copy(data), name)[0]


def press(button):
    button.native.click()


def scratch_files(folder):
    return sorted(p.name for p in folder.glob("ndi-*")) if folder.is_dir() else []


#: Blocks of a run the tests watch (x, y, z): five bands of 12 rows of volume().
SMALL_BLOCKS = (70, 12, 12)
#: Two blocks of 30 rows.
TWO_BLOCKS = (70, 30, 12)


@pytest.fixture
def slow_writes(monkeypatch):
    """Blocks land one by one, slowly, so a test sees the run in progress;
    ``gate`` lets the test hold the run after the first block."""
    gate = threading.Event()
    gate.set()
    real = _tasks.BlockWriter.write

    def write(self, location, block):
        gate.wait(10)
        threading.Event().wait(0.02)
        return real(self, location, block)

    monkeypatch.setattr(_tasks.BlockWriter, "write", write)
    return gate


def test_result_appears_while_written_and_equals_the_core(viewer, qtbot, slow_writes):
    data = volume()
    layer = add(viewer, data)
    widget = ProcessImage(viewer)
    widget.block_shape = SMALL_BLOCKS
    assert widget.layer.value is layer
    widget.operation.value = "gaussian"
    widget.fields["sigma"].value = 1.5
    press(widget.run_button)
    job = widget.job
    assert job is not None and job.running
    (result,) = widget.result_layers
    assert result in viewer.layers  # at once, before any block is done
    assert "gaussian" in result.name
    out = result.metadata["disk_image"]
    qtbot.waitUntil(lambda: job.pbar.n > 0, timeout=20000)
    assert job.running
    partial = np.asarray(out.array[0, 0])
    assert partial.any() and not partial.all()  # some blocks landed, not all
    # what the layer shows follows the file while it is written
    shown = np.asarray(result.data[0][viewer.dims.current_step[0]])
    qtbot.waitUntil(lambda: job.done, timeout=60000)
    expected = sndi.gaussian_filter(data, 1.5)
    np.testing.assert_array_equal(np.asarray(out.array[0, 0]), expected)
    z = viewer.dims.current_step[0]
    np.testing.assert_array_equal(np.asarray(result.data[0][z]), expected[z])
    assert shown.shape == expected[z].shape
    assert widget.status.value.startswith("Gaussian smoothing")
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_cancel_removes_the_layer_and_its_file(
    viewer, qtbot, slow_writes, disk_image_dir, messages
):
    add(viewer, volume())
    widget = ProcessImage(viewer)
    widget.block_shape = SMALL_BLOCKS
    before = scratch_files(disk_image_dir)
    press(widget.run_button)
    job = widget.job
    (result,) = widget.result_layers
    assert len(scratch_files(disk_image_dir)) == len(before) + 1
    qtbot.waitUntil(lambda: job.pbar.n > 0, timeout=20000)
    press(widget.cancel_button)
    qtbot.waitUntil(lambda: job.done, timeout=5000)  # stops within a block
    assert job.cancelled
    assert result not in viewer.layers
    qtbot.waitUntil(lambda: scratch_files(disk_image_dir) == before, timeout=5000)
    assert widget.status.value.startswith("cancelled")
    assert any("cancelled" in m for m in messages())


@pytest.fixture
def stuck_block(monkeypatch):
    """The second block's write hangs until the test lets it go, as a write
    behind a disk saturated by writeback does; returns (entered, go).  With
    :data:`TWO_BLOCKS` no other block is left to run meanwhile."""
    entered, go = threading.Event(), threading.Event()
    real = _tasks.BlockWriter.write
    calls = []

    def write(self, location, block):
        calls.append(location)
        if len(calls) == 2:
            entered.set()
            go.wait(60)
        return real(self, location, block)

    monkeypatch.setattr(_tasks.BlockWriter, "write", write)
    yield entered, go
    go.set()


def start_gaussian(viewer, disk_image_dir, blocks):
    """A gaussian run started from the tool, as a user does, on volume()."""
    from types import SimpleNamespace

    data = volume()
    layer = add(viewer, data)
    widget = ProcessImage(viewer)
    widget.block_shape = blocks
    before = scratch_files(disk_image_dir)
    press(widget.run_button)
    (result,) = widget.result_layers
    return SimpleNamespace(
        data=data,
        source=layer.metadata["disk_image"],
        widget=widget,
        before=before,
        job=widget.job,
        result=result,
        output=result.metadata["disk_image"].path,
    )


def test_cancel_gives_the_tool_back_while_a_block_is_stuck(
    viewer, qtbot, stuck_block, disk_image_dir, messages
):
    entered, go = stuck_block
    started = start_gaussian(viewer, disk_image_dir, TWO_BLOCKS)
    data, source, widget = started.data, started.source, started.widget
    before, job, result, output = (
        started.before, started.job, started.result, started.output,
    )  # fmt: skip
    assert entered.wait(20)  # a block is stuck in its write
    press(widget.cancel_button)
    # what the user sees, before the stuck block has moved: told, the result
    # layer and its file gone, the tool ready for another run
    qtbot.waitUntil(lambda: widget.status.value.startswith("cancelled"), timeout=5000)
    assert not go.is_set() and not job.done  # the worker still waits
    assert any("cancelled" in m for m in messages())
    assert result not in viewer.layers
    qtbot.waitUntil(lambda: not output.exists(), timeout=5000)  # closed aside
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert not job.running and job.cancelled
    # the worker ends once the block lets go; nothing of the run is left
    go.set()
    qtbot.waitUntil(lambda: job.done, timeout=20000)
    assert scratch_files(disk_image_dir) == before
    assert not output.exists()
    assert widget.status.value.startswith("cancelled")  # not overwritten
    np.testing.assert_array_equal(np.asarray(source.array[0, 0]), data)


@pytest.fixture
def stuck_close(monkeypatch):
    """Deleting a scratch file hangs until the test lets it go, as the last
    close of a large deleted file does on a file system mounted with
    ``discard``; returns (entered, go, threads): ``threads`` are the threads
    the deletions ran in."""
    from napari_diskimage._scratch import ScratchFile

    entered, go = threading.Event(), threading.Event()
    threads = []
    real = ScratchFile.release

    def release(self):
        threads.append(threading.current_thread())
        entered.set()
        go.wait(10)
        real(self)

    monkeypatch.setattr(ScratchFile, "release", release)
    yield entered, go, threads
    go.set()


def test_cancel_does_not_wait_for_the_output_file_to_be_freed(
    viewer, qtbot, slow_writes, stuck_close, disk_image_dir, messages
):
    entered, go, threads = stuck_close
    started = start_gaussian(viewer, disk_image_dir, SMALL_BLOCKS)
    data, source, widget = started.data, started.source, started.widget
    before, job, result, output = (
        started.before, started.job, started.result, started.output,
    )  # fmt: skip
    qtbot.waitUntil(lambda: job.pbar.n > 0, timeout=20000)
    press(widget.cancel_button)
    # the click has returned while the output's deletion is stuck: the user
    # is told and has the tool back
    assert entered.wait(5) and not go.is_set()
    assert threads and threading.main_thread() not in threads
    assert widget.status.value.startswith("cancelled")
    assert any("cancelled" in m for m in messages())
    assert result not in viewer.layers
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    # once the deletion goes through, nothing of the run is left
    go.set()
    qtbot.waitUntil(lambda: job.done, timeout=20000)
    qtbot.waitUntil(lambda: scratch_files(disk_image_dir) == before, timeout=5000)
    assert not output.exists()
    assert widget.status.value.startswith("cancelled")
    np.testing.assert_array_equal(np.asarray(source.array[0, 0]), data)


def store_folders(folder, name):
    """The store ``name`` in ``folder`` and any temporary folder of it."""
    return sorted(p.name for p in folder.iterdir() if name in p.name)


def test_write_to_ome_zarr_shows_the_result_while_written_then_the_store(
    viewer, qtbot, stuck_block, data_dir, disk_image_dir
):
    entered, go = stuck_block
    data = volume()
    add(viewer, data)
    widget = ProcessImage(viewer)
    widget.block_shape = TWO_BLOCKS
    assert widget.out_path.native.isHidden()
    widget.write_to.value = "ome-zarr"
    assert not widget.out_path.native.isHidden()
    widget.out_path.value = data_dir / "smooth"  # typed without a suffix
    widget.fields["sigma"].value = 1.5
    before = scratch_files(disk_image_dir)
    press(widget.run_button)
    job = widget.job
    (result,) = widget.result_layers
    assert result in viewer.layers  # at once, from the store being written
    assert entered.wait(20)  # the second block waits
    qtbot.waitUntil(lambda: job.pbar.n > 0, timeout=20000)  # the first landed
    partial = np.asarray(result.metadata["disk_image"].array[0, 0])
    assert partial.any() and not partial.all()
    assert store_folders(data_dir, "smooth") != ["smooth.ome.zarr"]  # temporary
    go.set()
    qtbot.waitUntil(lambda: job.done, timeout=60000)
    (shown,) = widget.result_layers
    saved = shown.metadata["disk_image"]
    assert saved.path == data_dir / "smooth.ome.zarr" and not saved.closed
    assert store_folders(data_dir, "smooth") == ["smooth.ome.zarr"]
    expected = sndi.gaussian_filter(data, 1.5)
    np.testing.assert_array_equal(np.asarray(saved.array[0, 0]), expected)
    z = viewer.dims.current_step[0]
    np.testing.assert_array_equal(np.asarray(shown.data[0][z]), expected[z])
    assert shown.visible and "gaussian" in shown.name
    assert scratch_files(disk_image_dir) == before  # no scratch file
    assert widget.status.value.startswith("Gaussian smoothing")


def test_labels_written_to_ome_zarr_show_as_a_labels_layer(viewer, qtbot, data_dir):
    """Ids, not intensities: a label run into a store is a labels layer while
    it is written and after (read-only: painting is for disk labels)."""
    data = (volume() > 1000).astype(np.uint8)
    add(viewer, data)
    widget = ProcessImage(viewer)
    widget.operation.value = "label"
    widget.write_to.value = "ome-zarr"
    widget.out_path.value = data_dir / "ids.ome.zarr"
    press(widget.run_button)
    job = widget.job
    (result,) = widget.result_layers
    assert isinstance(result, napari.layers.Labels)
    qtbot.waitUntil(lambda: job.done, timeout=60000)
    (shown,) = widget.result_layers
    assert isinstance(shown, napari.layers.Labels) and shown is not result
    assert shown.metadata["disk_image"].path == data_dir / "ids.ome.zarr"
    expected, n = sndi.label(data)
    labels = np.asarray(shown.metadata["disk_image"].array[0, 0])
    assert labels.max() == n
    z = viewer.dims.current_step[0]
    level = shown.data[0] if shown.multiscale else shown.data
    np.testing.assert_array_equal(np.asarray(level[z]) > 0, expected[z] > 0)


def test_cancel_of_an_ome_zarr_run_leaves_no_folder(
    viewer, qtbot, stuck_block, data_dir, messages
):
    entered, go = stuck_block
    add(viewer, volume())
    widget = ProcessImage(viewer)
    widget.block_shape = TWO_BLOCKS
    widget.write_to.value = "ome-zarr"
    widget.out_path.value = data_dir / "c.ome.zarr"
    press(widget.run_button)
    job = widget.job
    (result,) = widget.result_layers
    assert entered.wait(20)  # a block is being written
    assert store_folders(data_dir, "c.ome.zarr")  # its temporary folder
    press(widget.cancel_button)
    go.set()
    qtbot.waitUntil(lambda: job.done, timeout=20000)
    assert job.cancelled and result not in viewer.layers
    qtbot.waitUntil(lambda: store_folders(data_dir, "c.ome.zarr") == [], timeout=5000)
    assert widget.status.value.startswith("cancelled")
    # no store chosen: told before anything starts
    widget.out_path.line_edit.value = ""  # the field cleared
    assert widget.start() is None
    assert any("choose the store" in m for m in messages())


def test_failure_is_a_notification_and_leaves_nothing(
    viewer, qtbot, disk_image_dir, messages
):
    add(viewer, np.full((4, 20, 20), 2, np.uint8), "not a mask")
    widget = ProcessImage(viewer)
    widget.operation.value = "label"
    before = scratch_files(disk_image_dir)
    press(widget.run_button)
    qtbot.waitUntil(lambda: widget.job.done, timeout=20000)
    assert widget.result_layers == []
    qtbot.waitUntil(lambda: scratch_files(disk_image_dir) == before, timeout=5000)
    assert any("mask of 0" in m for m in messages())
    assert "failed" in widget.status.value


def test_bad_parameter_is_refused_before_anything(viewer, disk_image_dir, messages):
    add(viewer, volume())
    widget = ProcessImage(viewer)
    widget.operation.value = "threshold"
    widget.fields["high"].value = "not a number"
    before = scratch_files(disk_image_dir)
    assert widget.start() is None
    assert scratch_files(disk_image_dir) == before
    assert any("neither a number nor a layer" in m for m in messages())
    widget.fields["high"].value = ""
    widget.fields["low"].value = "10"
    widget.operation.value = "crop"
    widget.fields["x"].value = 69
    widget.fields["size_x"].value = 5
    assert widget.start() is None
    assert any("outside the image" in m for m in messages())


def test_chain_threshold_prefilled_by_otsu_then_label(viewer, qtbot):
    data = volume(3)
    add(viewer, data)
    widget = ProcessImage(viewer)
    widget.operation.value = "threshold"
    widget.phase.value = "bright"
    low = float(widget.fields["low"].value)
    assert widget.fields["high"].value == ""
    # prefilled: Otsu's value of a sample (here all of it: a small volume)
    from skimage.filters import threshold_otsu

    assert low == pytest.approx(float(threshold_otsu(data)), rel=0.02)
    press(widget.run_button)
    qtbot.waitUntil(lambda: widget.job.done, timeout=20000)
    (mask_layer,) = widget.result_layers
    mask = mask_layer.metadata["disk_image"]
    np.testing.assert_array_equal(
        np.asarray(mask.array[0, 0]), (data >= low).astype(np.uint8)
    )
    # the result is a disk-image layer the next step takes
    widget.layer.value = mask_layer
    widget.operation.value = "label"
    press(widget.run_button)
    qtbot.waitUntil(lambda: widget.job.done, timeout=20000)
    (labels_layer,) = widget.result_layers
    assert isinstance(labels_layer, napari.layers.Labels)
    labels = np.asarray(labels_layer.metadata["disk_image"].array[0, 0])
    _expected, n = sndi.label(data >= low)
    assert labels.max() == n
    assert "components" in widget.status.value


def test_two_image_arithmetic_by_layer_name(viewer, qtbot):
    a, b = volume(1), volume(2)
    add(viewer, a, "a")
    add(viewer, b, "b")
    widget = ProcessImage(viewer)
    widget.layer.value = viewer.layers["a"]
    widget.operation.value = "arithmetic"
    widget.fields["op"].value = "-"
    widget.fields["b"].value = "b"
    press(widget.run_button)
    qtbot.waitUntil(lambda: widget.job.done, timeout=20000)
    out = widget.result_layers[0].metadata["disk_image"]
    expected = np.clip(a.astype(float) - b, 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(np.asarray(out.array[0, 0]), expected)


def test_in_memory_layer_is_processed_too(viewer, qtbot):
    data = volume()
    viewer.add_image(data, name="mem", scale=(2, 1, 1))
    widget = ProcessImage(viewer)
    widget.operation.value = "median"
    widget.fields["size"].value = 3
    press(widget.run_button)
    qtbot.waitUntil(lambda: widget.job.done, timeout=20000)
    (result,) = widget.result_layers
    assert tuple(result.scale) == (2, 1, 1)  # placed over its input
    np.testing.assert_array_equal(
        np.asarray(result.metadata["disk_image"].array[0, 0]),
        sndi.median_filter(data, 3),
    )


def test_every_operation_has_fields(viewer):
    add(viewer, volume())
    widget = ProcessImage(viewer)
    for key, op in process.OPERATIONS.items():
        widget.operation.value = key
        assert set(widget.fields) == {p.name for p in op.parameters}
        widget.parameter_values()  # every prefilled value is valid
