"""The "Disk images" panel, docked in napari's default window (1280 x 800)."""

from __future__ import annotations

import numpy as np
import pytest

import napari_diskimage as ndi

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_diskimage import _qt  # noqa: E402
from napari_diskimage._qt.panel import DiskImagesPanel  # noqa: E402


def test_every_tool_is_reachable_by_its_full_name(window):
    viewer, panel = window
    assert isinstance(panel, DiskImagesPanel)
    names = [name for name, _ in _qt.TOOLS]
    assert list(panel.sections) == names
    for section in panel.sections.values():
        section.expand(animate=False)
    for _ in range(5):
        QApplication.processEvents()
    visible = panel.visibleRegion().boundingRect()
    for name, section in panel.sections.items():
        button = section._toggle_btn
        assert button.text().strip().endswith(name)  # the whole name, no "..."
        needed = button.fontMetrics().horizontalAdvance(button.text())
        assert button.width() >= needed, f"{name!r} is cut: {button.width()} px"
        # the title fits across the panel: no sideways scrolling
        left = button.mapTo(panel, button.rect().topLeft()).x()
        assert left + needed <= visible.width() + 1, name
    from qtpy.QtWidgets import QScrollArea

    area = panel.findChild(QScrollArea)
    assert not area.horizontalScrollBar().isVisible()
    assert viewer.window._qt_window.width() <= 1280


def test_the_screenshot_shows_the_panel_titles(window, tmp_path):
    viewer, panel = window
    for _ in range(3):
        QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=False)
    assert shot.shape[1] <= 1280 + 2
    # the panel's area is not blank: it shows text on the dock's background
    x0 = panel.mapTo(viewer.window._qt_window, panel.rect().topLeft()).x()
    region = shot[:, x0 : x0 + panel.width(), :3].astype(float)
    assert region.std() > 10


def test_open_sections_are_remembered(window, make_napari_viewer):
    _viewer, panel = window
    assert panel.open_sections() == ["Image info"]  # the first time
    panel.sections["Process (out of core)"].expand(animate=False)
    panel.sections["Process (out of core)"].toggled.emit(True)
    panel.sections["Image info"].collapse(animate=False)
    panel.sections["Image info"].toggled.emit(False)
    other = DiskImagesPanel(make_napari_viewer())
    assert other.open_sections() == ["Process (out of core)"]


def test_sections_work_like_the_single_widgets(window, qtbot):
    viewer, panel = window
    data = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    viewer.add_image(data, name="mem")
    copy_tool = panel.show_tool("Copy to disk image")
    assert isinstance(copy_tool, _qt.CopyToDiskImage)
    copy_tool.copy_button.native.click()
    qtbot.waitUntil(lambda: copy_tool.job.done, timeout=20000)
    layer = viewer.layers["mem (disk image)"]
    info = panel.tools["Image info"]
    viewer.layers.selection.active = layer
    assert "disk image: yes" in info.info.value
    write = panel.show_tool("Write pixel")
    write.layer.value = layer
    write.value.value = "200"
    write.coords["x"].value, write.coords["y"].value = 3, 4
    write.write_button.native.click()
    image = layer.metadata["disk_image"]
    assert int(ndi.open_raw(image.path, image.geometry).array[0, 0, 0, 4, 3]) == 200


def test_fields_follow_the_axes_of_the_layer(window):
    viewer, panel = window
    write = panel.show_tool("Write pixel")
    extract = panel.show_tool("Extract plane")
    flat = ndi.copy(np.zeros((8, 9), np.uint8))
    _qt.add_disk_image(viewer, flat, "2d")
    for _ in range(3):
        QApplication.processEvents()
    assert [a for a, w in write.coords.items() if w.visible] == ["x", "y"]
    assert not any(extract.fields[a].visible for a in "zct")
    stack = ndi.copy(np.zeros((3, 8, 9), np.uint8))
    _qt.add_disk_image(viewer, stack, "3d")
    for _ in range(3):
        QApplication.processEvents()
    assert [a for a, w in write.coords.items() if w.visible] == ["x", "y", "z"]
    assert extract.fields["z"].visible and not extract.fields["c"].visible


def test_a_tool_that_cannot_act_says_why(window):
    viewer, panel = window
    viewer.add_image(np.zeros((8, 9), np.uint8), name="in memory")
    extract = panel.show_tool("Extract plane")
    assert "in memory" in extract.hint.value
    assert not extract.extract_button.enabled
    write = panel.show_tool("Write pixel")
    write.layer.value = viewer.layers["in memory"]
    assert "copy" in write.hint.value.lower()
