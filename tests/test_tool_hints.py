"""Tools fit the layer: a tool that cannot act says why in one line."""

from __future__ import annotations

import numpy as np
import pytest

from napari_diskimage._qt import Box3D, CopyToDiskImage, ProcessImage, SaveImage

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("cls", [CopyToDiskImage, SaveImage, Box3D])
def test_no_layer_disables_the_tool_with_a_reason(make_napari_viewer, cls):
    viewer = make_napari_viewer()
    tool = cls(viewer)
    assert not tool.start_button.enabled
    assert tool.hint.value and "\n" not in tool.hint.value
    if cls is not Box3D:  # the 3D box needs a disk image, not any layer
        viewer.add_image(np.zeros((4, 8, 8), np.uint16), name="vol")
        assert tool.start_button.enabled and tool.hint.value == ""


def test_process_says_why_without_a_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    tool = ProcessImage(viewer)
    assert not tool.run_button.enabled and "no image layer" in tool.hint.value
    viewer.add_image(np.zeros((4, 8, 8), np.uint16), name="vol")
    assert tool.run_button.enabled and not tool.hint.value


def test_save_refuses_an_in_memory_rgb_layer_in_one_line(make_napari_viewer):
    viewer = make_napari_viewer()
    tool = SaveImage(viewer)
    viewer.add_image(np.zeros((8, 8, 3), np.uint8), rgb=True, name="photo")
    assert not tool.start_button.enabled
    assert "'photo' is an in-memory RGB layer" in tool.hint.value
