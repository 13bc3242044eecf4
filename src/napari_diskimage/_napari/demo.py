"""The demo: napari on a large synthetic scan, the plugin's panel docked.

What ``napari-diskimage demo`` runs (the command line only parses its
options, :func:`napari_diskimage._cli.demo`): the sample scan of
:func:`.samples.large_sample_path` is written once into the disk-image
directory, opened without loading it, shown in napari's default window
size with the "Disk images" panel; ``--screenshot`` renders the window to
a PNG and quits (under ``xvfb-run`` too), ``--processed`` adds a
processing result and a painted labels layer (the README's pictures).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._scratch import format_bytes
from .samples import (
    DEFAULT_LARGE_SIZE,
    large_sample_file,
    large_sample_geometry,
    large_sample_path,
)

__all__ = ["PANEL", "PLUGIN", "WINDOW_SIZE", "demo", "dock_panel", "show_processing"]

PLUGIN = "napari-diskimage"
#: napari's default window size, which the panel must fit.
WINDOW_SIZE = (1280, 800)
PANEL = "Disk images"


def demo(
    size: int | str = DEFAULT_LARGE_SIZE,
    screenshot: Path | None = None,
    processed: bool = False,
    progress: Callable[[int, int], Any] | None = None,
) -> int:
    """Open napari on the large sample volume (written first if missing).

    ``size`` is the volume's size in bytes (or text such as ``"4GiB"``);
    ``screenshot`` renders the window to that PNG file and returns instead
    of running napari; ``processed`` adds a processing result and painted
    labels; ``progress(done_bytes, total_bytes)`` follows the writing of
    the sample.  Returns the exit status (0).

    Raises
    ------
    ImportError
        napari is not installed (checked before any work).
    OSError
        There is no display (checked before any work), or the sample
        cannot be written.
    """
    try:  # before any work: the core installs without napari
        import napari
    except ImportError as exc:
        raise ImportError(f"napari is not installed ({exc})") from exc
    if _no_display():
        how = "render it headless with" if screenshot else "or run"
        raise OSError(
            "napari needs a display and none was found ($DISPLAY and "
            f"$WAYLAND_DISPLAY are unset); {how} 'xvfb-run -a napari-diskimage "
            "demo --screenshot demo.png'"
        )
    geometry = large_sample_geometry(size)
    if not large_sample_file(size).is_file():
        print(
            f"writing the sample scan ({format_bytes(geometry.nbytes)}) to "
            f"{large_sample_file(size)} (once; reused afterwards)",
            file=sys.stderr,
        )
    path = large_sample_path(size, progress=progress)
    print(f"opening {path} ({geometry}, {format_bytes(geometry.nbytes)})")
    viewer = napari.Viewer(title=f"napari-diskimage demo: {path.name}")
    viewer.window.resize(*WINDOW_SIZE)
    start = time.perf_counter()
    layers = viewer.open(path, plugin=PLUGIN)
    print(f"opened in {time.perf_counter() - start:.2f} s")
    panel = dock_panel(viewer)
    if layers:
        viewer.dims.set_current_step(0, viewer.dims.nsteps[0] // 2)
    if processed and layers:
        show_processing(viewer, layers[0], panel)
    _process_events()
    viewer.window.resize(*WINDOW_SIZE)  # docking may have grown it
    _process_events()
    viewer.reset_view()
    if screenshot is not None:
        _process_events()
        viewer.screenshot(str(screenshot), canvas_only=False)
        print(f"screenshot written to {screenshot}")
        viewer.close()
        return 0
    napari.run()
    return 0


def dock_panel(viewer: Any) -> Any:
    """Dock the plugin's "Disk images" panel; return it (None if it fails)."""
    try:
        _dock, panel = viewer.window.add_plugin_dock_widget(PLUGIN, PANEL)
    except Exception as exc:  # a broken panel must not stop the demo
        print(f"could not dock the {PANEL!r} panel: {exc}", file=sys.stderr)
        return None
    print(f"docked: {PANEL} panel")
    return panel


def show_processing(viewer: Any, layer: Any, panel: Any) -> None:
    """For the demo's second picture: a processing step and painted labels
    on a crop of the scan (runs in the foreground: a few seconds)."""
    from napari_diskimage import process

    image = layer.metadata["disk_image"]
    z = viewer.dims.current_step[0]
    nz, ny, nx = image.shape[2:]
    z0 = max(0, min(nz - 8, z - 4))
    box = process.crop(image, 0, 0, z0, nx, ny, min(8, nz - z0))
    smooth = process.gaussian(box, 2)
    mask = process.threshold(smooth, None, process.otsu(smooth))  # dark: pores
    scale = tuple(layer.scale)
    translate = (z0 * scale[0], 0.0, 0.0)
    from .._qt._common import add_disk_image

    (shown,) = add_disk_image(viewer, mask, "pores (threshold of a gaussian)")
    shown.scale, shown.translate = scale, translate
    shown.colormap, shown.opacity, shown.blending = "cyan", 0.35, "additive"
    # painted labels: napari's brush writing straight into a disk image
    import numpy as np

    import napari_diskimage as ndi

    from .labels import DiskLabels

    painted = DiskLabels.attach(
        viewer, ndi.new_labels(image, "uint8"), name="painted labels", like=layer
    )
    painted.brush_size = max(8, nx // 40)
    rng = np.random.default_rng(1)
    for label in (1, 2, 3):
        y, x = rng.integers(ny // 5, 4 * ny // 5), rng.integers(nx // 5, 4 * nx // 5)
        for k in range(12):  # a short stroke
            painted.paint((z, y + k * ny // 200, x + k * nx // 150), label)
    painted.opacity = 0.7
    viewer.layers.selection.active = layer


def _no_display() -> bool:
    """True on Linux without an X or Wayland display (Qt would abort)."""
    if not sys.platform.startswith("linux"):
        return False
    env = os.environ
    if env.get("QT_QPA_PLATFORM", "").split(":")[0] not in ("", "xcb", "wayland"):
        return False  # e.g. offscreen, vnc: the user chose a platform
    return not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def _process_events() -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        for _ in range(3):
            app.processEvents()
