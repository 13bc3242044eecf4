"""What a new user trips on (issue 21): the panel's part, at 1280 x 800.

Names readable, threshold by phase, labels results that are labels, edit
in place on purpose, paint refusals that say why, a result that does not
hide its input.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as sndi
import tifffile

import napari_diskimage as ndi

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")
from napari.utils.notifications import notification_manager  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_diskimage import _qt  # noqa: E402
from napari_diskimage._qt.process import ProcessImage  # noqa: E402


def _events(n=5):
    for _ in range(n):
        QApplication.processEvents()


def _porous(shape=(12, 60, 70), seed=0):
    """Dark pores (~700) in a bright solid (~1900), smooth, with noise."""
    rng = np.random.default_rng(seed)
    field = sndi.gaussian_filter(rng.random(shape), 2)
    pores = field > np.quantile(field, 0.7)
    data = np.where(pores, 700.0, 1900.0) + rng.normal(0, 50, shape)
    return data.astype(np.uint16), pores


def _shown_text(combo):
    """The text a QComboBox paints: what its paint event draws, elided."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QStyle, QStyleOptionComboBox

    option = QStyleOptionComboBox()
    combo.initStyleOption(option)
    field = combo.style().subControlRect(
        QStyle.ComplexControl.CC_ComboBox,
        option,
        QStyle.SubControl.SC_ComboBoxEditField,
        combo,
    )
    text = combo.currentText()
    metrics = combo.fontMetrics()
    if metrics.horizontalAdvance(text) <= field.width():
        return text
    return metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, field.width())


# --- names readable at 1280 x 800 -----------------------------------------------
def test_layer_names_that_differ_at_the_end_look_different(window):
    viewer, panel = window
    names = [
        "pores_2048x2048x512_UInt16 gaussian",
        "pores_2048x2048x512_UInt16 median",
    ]
    for name in names:
        _qt.add_disk_image(viewer, ndi.copy(np.zeros((3, 8, 9), np.uint16)), name)
    tool = panel.show_tool("Process (out of core)")
    _events()
    combo = tool.layer.native
    shown = []
    for name in names:
        tool.layer.value = viewer.layers[name]
        _events()
        shown.append(_shown_text(combo))
        assert combo.toolTip() == name  # the whole name on hover
        assert shown[-1].startswith("pores_2")
    assert shown[0] != shown[1], shown
    assert shown[0].endswith("gaussian") and shown[1].endswith("median")
    # the same in the Save tool, which lists labels layers too
    save = panel.show_tool("Save as TIFF / RAW")
    shown = []
    for name in names:
        save.layer.value = viewer.layers[name]
        _events()
        shown.append(_shown_text(save.layer.native))
    assert shown[0] != shown[1] and shown[1].endswith("ian"), shown


def test_operation_names_and_field_labels_are_whole(window):
    viewer, panel = window
    _qt.add_disk_image(viewer, ndi.copy(np.zeros((3, 8, 9), np.uint16)), "v")
    tool = panel.show_tool("Process (out of core)")
    combo = tool.operation.native
    from qtpy.QtWidgets import QLabel

    for key in ("label", "arithmetic", "gaussian", "crop", "threshold"):
        tool.operation.value = key
        _events()
        text = combo.currentText()
        assert _shown_text(combo) == text, f"{text!r} is cut"
        for label in tool.parameters.native.findChildren(QLabel):
            if label.text() and label.isVisible():
                need = label.fontMetrics().horizontalAdvance(label.text())
                assert label.width() >= need, f"{label.text()!r} is cut"
    for name in panel.tools:
        panel.show_tool(name)
    _events()
    for label in panel.findChildren(QLabel):
        if label.text() and label.isVisible() and not label.wordWrap():
            need = label.fontMetrics().horizontalAdvance(label.text())
            assert label.width() >= need, f"{label.text()!r} is cut"
    # and nothing covers a label or reaches past the panel's right edge (it
    # does not scroll sideways): "Build automatically over (GiB)" was whole,
    # but its spin box lay over its end: "Build automatically ove" was shown
    from qtpy.QtCore import QPoint, QRect
    from qtpy.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QScrollArea

    viewport = panel.findChild(QScrollArea).viewport()

    def rect(widget):
        return QRect(widget.mapTo(viewport, QPoint(0, 0)), widget.size())

    def shown(kind):
        return [w for w in panel.findChildren(kind) if w.isVisible() and w.width()]

    fields = [
        w for k in (QAbstractSpinBox, QComboBox, QAbstractButton) for w in shown(k)
    ]
    for widget in shown(QLabel) + fields:
        name = getattr(widget, "text", lambda: "")() or type(widget).__name__
        assert rect(widget).right() < viewport.width(), f"{name!r} is cut at the edge"
    for label in shown(QLabel):
        if not label.text():
            continue
        text = label.fontMetrics().boundingRect(label.text())
        inked = QRect(rect(label).topLeft(), text.size())  # where the text is drawn
        for field in fields:
            if not field.isAncestorOf(label):
                assert not rect(field).intersects(inked), (
                    f"{label.text()!r} is covered by a {type(field).__name__}"
                )
    # and a spin box shows its whole value: Image info's "never (offer)"
    # was shown as "ever (offer)" at 1280 x 800
    for box in shown(QAbstractSpinBox):
        edit = box.lineEdit()
        need = edit.fontMetrics().horizontalAdvance(edit.text())
        room = edit.contentsRect().width() - 4  # QLineEdit's own 2 px margins
        assert room >= need, f"{edit.text()!r} is cut in its field ({room} < {need})"


def _cut_text(widget):
    """The parts of a text widget's text it does not show (none: all shown).

    A word-wrapped QLabel breaks lines at spaces only: a word wider than the
    label is cut at its edge.  A QTextEdit is checked line by line as laid
    out at its width."""
    from qtpy.QtWidgets import QLabel

    cut = []
    if isinstance(widget, QLabel):
        width = widget.contentsRect().width()
        metrics = widget.fontMetrics()
        for word in widget.text().split():
            if metrics.horizontalAdvance(word) > width:
                cut.append(word)
        if widget.height() < widget.heightForWidth(widget.width()):
            cut.append("(the last lines)")
        return cut
    document = widget.document()
    width = widget.viewport().width()
    block = document.begin()
    while block.isValid():
        layout = block.layout()
        for i in range(layout.lineCount()):
            line = layout.lineAt(i)
            if line.naturalTextWidth() > width + 0.5:
                cut.append(block.text()[line.textStart() :][: line.textLength()])
        block = block.next()
    if document.size().height() > widget.viewport().height() + 0.5:
        cut.append("(the last lines)")
    return cut


def _shown_whole(widget, panel, name):
    """``widget``'s text is whole and the widget inside the panel's section."""
    assert not _cut_text(widget), f"cut: {_cut_text(widget)}"
    section = panel.sections[name]
    corner = widget.mapTo(section, widget.rect().bottomRight())
    assert corner.y() <= section.height() and corner.x() <= section.width()


def _text_of(widget):
    return widget.text() if hasattr(widget, "text") else widget.toPlainText()


def test_image_info_shows_every_line(window, data_dir):
    viewer, panel = window
    path = data_dir / "a_rather_long_scan_name_2048x2048.tif"
    tifffile.imwrite(path, np.zeros((4, 16, 20), np.uint16), photometric="minisblack")
    viewer.open(str(path), plugin="napari-diskimage")
    _events()
    widget = panel.tools["Image info"].info.native
    text = _text_of(widget)
    assert "storage:" in text and "size on disk" in text
    _shown_whole(widget, panel, "Image info")


def test_image_info_wraps_a_long_path_with_no_spaces(window, data_dir):
    viewer, panel = window
    folder = data_dir / "scans_of_the_sandstone_cores_2026" / "core_0042_reconstructed"
    folder.mkdir(parents=True)
    path = folder / "core_0042_2048x2048x512_uint16_reconstructed_filtered.tif"
    tifffile.imwrite(path, np.zeros((4, 16, 20), np.uint16), photometric="minisblack")
    viewer.open(str(path), plugin="napari-diskimage")
    _events()
    widget = panel.tools["Image info"].info.native
    assert f"file: {path}" in _text_of(widget)  # the path as it is, to copy
    assert widget.fontMetrics().horizontalAdvance(str(path)) > widget.width()
    _shown_whole(widget, panel, "Image info")


# --- threshold by phase -----------------------------------------------------------
def test_threshold_by_phase_prefills_otsu_on_the_right_side(window, qtbot):
    viewer, panel = window
    data, pores = _porous()
    _qt.add_disk_image(viewer, ndi.copy(data), "scan")
    tool = panel.show_tool("Process (out of core)")
    tool.operation.value = "threshold"
    assert tool.phase.value == "dark"  # the pores of a scan
    from skimage.filters import threshold_otsu

    t = float(threshold_otsu(data))
    assert float(tool.fields["high"].value) == pytest.approx(t, rel=0.02)
    assert tool.fields["low"].value == ""
    tool.run_button.native.click()
    qtbot.waitUntil(lambda: tool.job.done, timeout=20000)
    mask = np.asarray(tool.result_layers[0].metadata["disk_image"].array[0, 0])
    # the mask covers the dark pores, not the bright solid
    assert (mask.astype(bool) == pores).mean() > 0.99
    tool.phase.value = "bright"
    assert float(tool.fields["low"].value) == pytest.approx(t, rel=0.02)
    assert tool.fields["high"].value == ""


# --- labels results are labels ----------------------------------------------------
def test_a_label_result_is_painted_undone_and_saved(window, qtbot, tmp_path):
    viewer, panel = window
    mask = np.zeros((4, 30, 40), np.uint8)
    mask[:, 2:8, 2:8] = mask[:, 15:20, 25:35] = 1
    _qt.add_disk_image(viewer, ndi.copy(mask), "mask")
    tool = panel.show_tool("Process (out of core)")
    tool.operation.value = "label"
    tool.run_button.native.click()
    qtbot.waitUntil(lambda: tool.job.done, timeout=20000)
    (layer,) = tool.result_layers
    assert isinstance(layer, napari.layers.Labels) and layer.editable
    labels = layer.metadata["disk_image"]
    assert int(np.asarray(labels.array).max()) == 2
    # a brush stroke through napari's paint goes into the result's file
    viewer.layers.selection.active = layer
    layer.mode = "paint"
    assert layer.mode == "paint"
    layer.brush_size = 1
    layer.paint((1, 25, 5), 7)
    assert int(labels.array[0, 0, 1, 25, 5]) == 7
    layer.undo()
    assert int(labels.array[0, 0, 1, 25, 5]) == 0
    layer.paint((1, 25, 6), 9)
    # Save labels takes it (the Labels tool follows the selection)
    labels_tool = panel.show_tool("Labels (paint on disk)")
    assert labels_tool.save_button.enabled
    job = labels_tool.save(tmp_path / "components.tif")
    qtbot.waitUntil(lambda: job.done, timeout=20000)
    saved = tifffile.imread(tmp_path / "components.tif")
    assert saved[1, 25, 6] == 9 and saved.max() == 9
    assert len(np.unique(saved)) == 4  # 0, the two components, the stroke
    # Save as TIFF / RAW lists it too
    save = panel.show_tool("Save as TIFF / RAW")
    assert layer in save.layer.choices


def test_a_layer_that_cannot_be_painted_says_why(window, messages):
    viewer, _panel = window
    layer = viewer.add_labels(
        [np.zeros((64, 64), np.uint8), np.zeros((32, 32), np.uint8)],
        multiscale=True,
        name="multi",
    )
    from napari_diskimage._napari.paint_refusal import ReadOnlyLabels

    ro = ReadOnlyLabels(
        [np.zeros((64, 64), np.uint8), np.zeros((32, 32), np.uint8)],
        multiscale=True,
        name="overview",
        read_only_reason="'overview' is read-only: paint on 'x'",
    )
    viewer.add_layer(ro)
    ro.mode = "paint"
    assert ro.mode == "pan_zoom"
    assert any("cannot paint" in m and "paint on 'x'" in m for m in messages())
    # the plugin's disk labels in 3D
    from napari_diskimage._napari.labels import DiskLabels

    image = ndi.copy(np.zeros((3, 16, 20), np.uint16))
    disk = DiskLabels.attach(viewer, ndi.new_labels(image, "uint8"), name="disk")
    viewer.dims.ndisplay = 3
    disk.mode = "fill"
    assert disk.mode == "pan_zoom"
    assert any("cannot fill" in m and "switch to 2D" in m for m in messages())
    del layer


# --- edit in place, on purpose -----------------------------------------------------
def test_write_pixel_edits_the_file_in_place_after_confirmation(window, data_dir):
    viewer, panel = window
    path = data_dir / "user.tif"
    tifffile.imwrite(path, np.full((20, 30), 5, np.uint8))
    viewer.open(str(path), plugin="napari-diskimage")
    info = panel.tools["Image info"]
    viewer.layers.selection.active = viewer.layers["user"]
    assert "opened read-only" in info.info.value
    tool = panel.show_tool("Write pixel")
    tool.layer.value = viewer.layers["user"]
    tool.value.value = "200"
    tool.coords["x"].value, tool.coords["y"].value = 3, 4
    tool.write_button.native.click()
    offer = notification_manager.records[-1]
    actions = dict(offer.actions)
    assert "Copy and write" in actions and "Edit this file in place" in actions
    asked = []
    tool.confirm = lambda text: asked.append(text) or False  # "Cancel"
    actions["Edit this file in place"](None)
    assert str(path) in asked[0]
    assert tifffile.imread(path)[4, 3] == 5  # declined: unchanged
    tool.confirm = lambda text: True
    actions["Edit this file in place"](None)
    assert tifffile.imread(path)[4, 3] == 200  # in the user's file
    assert viewer.layers["user"].metadata["disk_image"].writable
    viewer.layers.selection.active = None
    viewer.layers.selection.active = viewer.layers["user"]
    assert "in place" in info.info.value


def test_a_read_only_file_says_so(window):
    """A file on a read-only file system: "read-only file", no in-place offer
    (root may write any file whatever its mode bits: a mount is certain)."""
    import subprocess

    from _fs import mount_tmpfs, unmount

    viewer, panel = window
    folder = mount_tmpfs("size=1m")
    try:
        path = folder / "locked.tif"
        tifffile.imwrite(path, np.zeros((6, 7), np.uint8))
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        viewer.open(str(path), plugin="napari-diskimage")
        viewer.layers.selection.active = viewer.layers["locked"]
        text = panel.tools["Image info"].info.value
        assert "read-only file" in text and "opened read-only" not in text
        tool = panel.show_tool("Write pixel")
        tool.layer.value = viewer.layers["locked"]
        tool.write_button.native.click()
        actions = dict(notification_manager.records[-1].actions)
        assert list(actions) == ["Copy and write"]
        while viewer.layers:
            viewer.layers.pop()
        import gc

        gc.collect()
    finally:
        unmount(folder)


# --- a result that does not hide its input ---------------------------------------
def test_a_result_layer_does_not_cover_its_input_before_it_is_written(window, qtbot):
    viewer, _panel = window
    data, _ = _porous()
    _qt.add_disk_image(viewer, ndi.copy(data), "scan")
    tool = ProcessImage(viewer)
    tool.operation.value = "gaussian"
    job = tool.start()
    (result,) = tool.result_layers
    assert not result.visible  # nothing written yet: the input shows
    qtbot.waitUntil(lambda: job.done, timeout=20000)
    assert result.visible


def test_the_demo_pores_layer_covers_the_dark_pores(make_napari_viewer, tmp_path):
    """The README's second picture: its cyan "pores" layer lies on the dark
    voxels of the scan, not on the bright solid."""
    from napari_diskimage._napari.demo import show_processing
    from napari_diskimage._napari.samples import _SyntheticVolume, large_sample_geometry

    geometry = large_sample_geometry("16MiB")
    volume = _SyntheticVolume(geometry)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, np.stack([volume[0, 0, z] for z in range(geometry.size_z)]))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-diskimage")
    viewer.dims.set_current_step(0, geometry.size_z // 2)
    show_processing(viewer, layer, None)
    pores = viewer.layers["pores (threshold of a gaussian)"]
    mask = np.asarray(pores.metadata["disk_image"].array[0, 0]).astype(bool)
    z0 = round(pores.translate[0] / layer.scale[0])
    scan = tifffile.imread(path)[z0 : z0 + mask.shape[0]]
    assert 0.15 < mask.mean() < 0.5  # about the sample's 30 % porosity
    assert scan[mask].mean() < 1100 < scan[~mask].mean()  # pores ~700, solid ~1900


# --- 3D rendering -----------------------------------------------------------------
def _sparse(shape=(40, 96, 96), seed=0):
    """A few bright blobs in a dark, noisy volume (fluorescence-like)."""
    rng = np.random.default_rng(seed)
    blobs = sndi.gaussian_filter((rng.random(shape) > 0.9995).astype(float), 2)
    data = rng.normal(100, 10, shape) + 3000 * blobs / blobs.max()
    return data.astype(np.uint16)


def _structure(viewer):
    """Spread of the 3D screenshot's grey levels inside the volume's
    footprint (its edges trimmed), and the footprint's size in pixels."""
    gray = viewer.screenshot(canvas_only=True, flash=False)[..., :3].mean(axis=-1)
    footprint = sndi.binary_erosion(gray > 10, iterations=8)
    return float(gray[footprint].std()), int(footprint.sum())


def _open_in_3d(viewer, path, data):
    tifffile.imwrite(path, data, photometric="minisblack")
    (layer,) = viewer.open(str(path), plugin="napari-diskimage")
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    _events(10)
    return layer


def _add_in_3d(viewer, _path, data):
    """Not the reader: the helper the Process, Copy and Open RAW tools and
    the demo add their disk images with."""
    (layer,) = _qt.add_disk_image(viewer, ndi.copy(data), "porous copy")
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    _events(10)
    return layer


@pytest.mark.parametrize("add", [_open_in_3d, _add_in_3d], ids=["reader", "added"])
def test_a_porous_volume_shows_its_structure_in_3d(window, data_dir, add):
    viewer, _panel = window
    data, _ = _porous((40, 96, 96))
    layer = add(viewer, data_dir / "porous.tif", data)
    viewer.scene.camera.angles = (15, -30, 60)
    _events(10)
    assert layer.rendering == "attenuated_mip"
    shown, size = _structure(viewer)
    layer.rendering = "mip"  # what napari's default shows: a flat sheet
    _events(10)
    flat, flat_size = _structure(viewer)
    assert size > 10_000 and flat_size > 10_000  # the volume is on screen
    assert shown > 40 and shown > 2 * flat, (shown, flat)


def test_other_volumes_keep_napari_mip_in_3d(window, data_dir):
    viewer, _panel = window
    sparse = _open_in_3d(viewer, data_dir / "sparse.tif", _sparse())
    assert sparse.rendering == "mip"
    uniform = np.full((20, 40, 40), 3000, np.uint16)
    bright = _open_in_3d(viewer, data_dir / "bright.tif", uniform)
    assert bright.rendering == "mip"
    # a rendering the user chose is kept
    viewer.dims.ndisplay = 2
    data, _ = _porous((20, 48, 48))
    tifffile.imwrite(data_dir / "chosen.tif", data, photometric="minisblack")
    (chosen,) = viewer.open(str(data_dir / "chosen.tif"), plugin="napari-diskimage")
    chosen.rendering = "translucent"
    viewer.dims.ndisplay = 3
    _events(10)
    assert chosen.rendering == "translucent"
