"""The Measure tool, driven like a user: choose layers, Measure, click a row,
read the histogram, export the CSV, Cancel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from skimage.measure import regionprops_table

import napari_diskimage as ndi
from napari_diskimage import measure

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")
from qtpy.QtCore import Qt  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_diskimage import _qt  # noqa: E402
from napari_diskimage._qt.measure import MeasureLabels  # noqa: E402


def pores(shape=(14, 48, 56), seed=0):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), 1.5)
    labels, _ = ndimage.label(field > np.quantile(field, 0.75))
    image = np.rint(field * 4000).astype(np.uint16)
    return labels.astype(np.uint32), image


def wait(qtbot, tool):
    qtbot.waitUntil(lambda: tool.job is not None and tool.job.done, timeout=30000)


def test_measure_in_memory_labels_fills_features_table_and_histogram(viewer, qtbot):
    labels, image = pores()
    viewer.add_image(image, name="scan", scale=(2.0, 0.5, 0.5))
    layer = viewer.add_labels(labels, name="pores", scale=(2.0, 0.5, 0.5))
    tool = MeasureLabels(viewer)
    assert tool.layer.value is layer
    tool.intensity.value = viewer.layers["scan"]
    tool.properties.value = ["label", "area", "bbox", "intensity_mean"]
    assert "2, 0.5, 0.5" in tool.spacing.value
    tool.start_button.native.click()  # the Measure button
    wait(qtbot, tool)
    props = [
        "label", "area", "num_pixels", "bbox", "centroid",
        "equivalent_diameter_area", "intensity_mean",
    ]  # fmt: skip
    ref = regionprops_table(labels, image, properties=props, spacing=(2, 0.5, 0.5))
    assert list(tool.table.columns) == list(ref)
    for key, values in ref.items():
        np.testing.assert_allclose(tool.table[key], values, rtol=1e-9, err_msg=key)
    # napari's features: the status bar shows an object's values
    assert list(layer.features["index"]) == list(ref["label"])
    np.testing.assert_allclose(layer.features["area"], ref["area"])
    label = int(ref["label"][3])
    where = np.argwhere(labels == label)[0] * (2.0, 0.5, 0.5)
    viewer.dims.set_point(0, where[0])  # the plane of the object
    status = layer.get_status(tuple(where), world=True)["value"]
    assert status.startswith(f"{label}; ")
    area = ref["area"][3]
    assert f"area: {area:.3g}" in status or f"area: {area}" in status, status
    # the table shows every object; the histogram is volume-weighted diameters
    assert tool.table_view.model().rowCount() == len(ref["label"])
    assert tool.column.value == "equivalent_diameter_area"
    heights, edges = tool.draw_histogram()
    expected, _ = np.histogram(
        ref["equivalent_diameter_area"], bins=edges, weights=ref["area"]
    )
    np.testing.assert_allclose(heights, expected / ref["area"].sum())
    tool.weighted.value = False
    heights, _ = tool.draw_histogram()
    assert heights.sum() == len(ref["label"])


def test_a_row_click_centres_the_view_on_the_object_and_selects_it(viewer, qtbot):
    labels, _ = pores(seed=1)
    layer = viewer.add_labels(labels, name="pores", scale=(3.0, 1.0, 1.0))
    tool = MeasureLabels(viewer)
    tool.measure()
    wait(qtbot, tool)
    view = tool.table_view
    area_column = list(tool.table.columns).index("area")
    view.sortByColumn(area_column, Qt.SortOrder.DescendingOrder)  # a header click
    area = tool.table["area"].to_numpy()
    n = len(area)
    shown = [view.frame_row(i) for i in range(n)]
    assert shown == sorted(range(n), key=lambda i: (-area[i], i))  # ties stable
    model = view.model()
    assert model.data(model.index(0, area_column)) == f"{area.max():.5g}"
    view.sortByColumn(area_column, Qt.SortOrder.AscendingOrder)
    assert [view.frame_row(i) for i in range(n)] == sorted(
        range(n), key=lambda i: (area[i], i)
    )
    view.sortByColumn(area_column, Qt.SortOrder.DescendingOrder)
    biggest = tool.table.iloc[int(area.argmax())]
    view.click_row(0)
    assert layer.selected_label == int(biggest["label"])
    z = biggest["centroid-0"]
    assert viewer.dims.point[0] == pytest.approx(z, abs=3.0)  # its plane
    np.testing.assert_allclose(
        viewer.scene.camera.center[-2:],
        [biggest["centroid-1"], biggest["centroid-2"]],
        atol=1e-6,
    )
    # the plane shown holds the object
    plane = round(viewer.dims.point[0] / 3.0)
    assert (labels[plane] == biggest["label"]).any()


def test_export_csv_matches_the_table_and_the_core(viewer, qtbot, tmp_path):
    labels, _ = pores(seed=2)
    image = ndi.copy(labels)
    _qt.add_disk_image(viewer, image, "not labels")  # an image layer: not listed
    layer = viewer.add_labels(labels, name="pores")
    tool = MeasureLabels(viewer)
    assert [name for name, _ in tool.layer._choices()] == ["pores"]
    tool.layer.value = layer
    tool.measure()
    wait(qtbot, tool)
    out = tool.export_csv(tmp_path / "pores.csv")
    written = pd.read_csv(out)
    core = measure.regionprops_table(labels, None, tool.chosen_properties())
    pd.testing.assert_frame_equal(written, core, check_dtype=False, rtol=1e-12)
    with pytest.raises(FileNotFoundError):
        tool.export_csv(tmp_path / "missing" / "x.csv")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".csv") == [
        "pores.csv"
    ]
    image.close()


def test_a_disk_image_mask_shows_porosity_and_profile(viewer, qtbot):
    labels, _ = pores(seed=3)
    mask = (labels > 0).astype(np.uint8)
    image = ndi.copy(mask)
    layer = viewer.add_labels(
        image.array[0, 0], name="mask", metadata={"disk_image": image, "channel": 0}
    )
    tool = MeasureLabels(viewer)
    tool.layer.value = layer
    tool.measure()
    wait(qtbot, tool)
    assert list(tool.table["label"]) == [1]
    assert f"porosity {mask.mean():.4f}" in tool.porosity.value
    np.testing.assert_allclose(tool.profile, mask.mean(axis=(1, 2)))
    assert tool.profile_plot.native.isVisibleTo(tool.native)
    viewer.layers.remove(layer)
    image.close()


def test_run_on_a_dask_scheduler_measures_on_its_workers(viewer, qtbot):
    """Run on: a dask scheduler (its address): the workers read the blocks
    of the disk images and the table is the same as on this machine."""
    distributed = pytest.importorskip("distributed")
    labels, image = pores(seed=5)
    disk_labels, disk_image = ndi.copy(labels), ndi.copy(image)
    layer = viewer.add_labels(
        disk_labels.array[0, 0], name="pores", metadata={"disk_image": disk_labels}
    )
    viewer.add_image(
        disk_image.array[0, 0], name="scan", metadata={"disk_image": disk_image}
    )
    tool = MeasureLabels(viewer)
    tool.layer.value = layer
    tool.intensity.value = viewer.layers["scan"]
    tool.properties.value = ["label", "area", "intensity_mean"]
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        tool.run_on.kind.value = "scheduler"
        tool.run_on.address.value = cluster.scheduler_address
        tool.measure()
        qtbot.waitUntil(lambda: tool.job is not None and tool.job.done, timeout=90000)
    props = ["label", "area", "intensity_mean"]
    ref = regionprops_table(labels, image, properties=props)
    for key in props:
        np.testing.assert_allclose(tool.table[key], ref[key], rtol=1e-9, err_msg=key)
    # the status says where it ran and which worker read the blocks
    assert "ran on" in tool.status.value and "read" in tool.status.value, (
        tool.status.value
    )
    for lay in list(viewer.layers):
        viewer.layers.remove(lay)
    disk_labels.close()
    disk_image.close()


def test_bad_input_and_cancel_are_told(viewer, qtbot, messages):
    labels, image = pores(seed=4)
    viewer.add_image(image[:, :20], name="small")
    viewer.add_labels(labels, name="pores")
    tool = MeasureLabels(viewer)
    tool.intensity.value = viewer.layers["small"]
    assert tool.measure() is None
    assert any("same sizes" in m for m in messages())
    tool.intensity.value = None
    tool.properties.value = ["label", "intensity_mean"]
    assert tool.measure() is None
    assert any("need an intensity image" in m for m in messages())
    big, _ = pores((40, 160, 200), seed=6)  # a second or more of work
    tool.layer.value = viewer.add_labels(big, name="big")
    tool.properties.value = ["label", "surface_area"]
    job = tool.measure()
    job.cancel()
    wait(qtbot, tool)
    assert job.cancelled
    assert "cancelled" in tool.status.value
    assert tool.table is None
    assert any("cancelled" in m for m in messages())


def test_the_tool_is_in_the_panel_and_fits_1280x800(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1280, 800)
    _dock, panel = viewer.window.add_plugin_dock_widget(
        "napari-diskimage", "Disk images"
    )
    labels, _ = pores(seed=5)
    viewer.add_labels(labels, name="pores")
    tool = panel.show_tool("Measure (objects, porosity)")
    assert isinstance(tool, MeasureLabels)
    tool.measure()
    wait(qtbot, tool)
    for _ in range(5):
        QApplication.processEvents()
    assert viewer.window._qt_window.width() <= 1280
    table = tool.table_view
    assert table.isVisible() and table.height() >= 150
    header = table.horizontalHeader()
    # every column title is readable: its section is as wide as its text
    for col in range(header.count()):
        title = table.model().headerData(col, Qt.Orientation.Horizontal)
        needed = header.fontMetrics().horizontalAdvance(title)
        assert header.sectionSize(col) >= needed, title
    canvas = tool.plot.native
    assert canvas.isVisible() and canvas.width() >= 180 and canvas.height() >= 150
    _qt.cancel_all_jobs()


def test_without_labels_the_tool_says_why(viewer, qtbot):
    tool = MeasureLabels(viewer)
    assert not tool.start_button.enabled
    assert "no labels layer" in tool.hint.value and "\n" not in tool.hint.value
    viewer.add_image(np.zeros((4, 8, 8), np.uint16), name="image")
    assert not tool.start_button.enabled  # an image is not labels
    viewer.add_labels(np.zeros((4, 8, 8), np.uint16), name="labels")
    assert tool.start_button.enabled and tool.hint.value == ""
    tool.measure()  # empty labels: an empty table, not an error
    wait(qtbot, tool)
    assert tool.job.error is None
    assert len(tool.table) == 0 and "label" in tool.table.columns
    assert tool.status.value == "0 objects measured"
