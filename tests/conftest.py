"""Shared fixtures.

Every test gets its own disk-image directory, and fails if it leaves a
scratch file behind in it or leaks a file descriptor: a disk image that
is dropped must release its file.  Every test gets its own settings
folder too (never the user's).  The GUI tests share ``viewer``,
``window`` (the panel docked at napari's default size) and ``messages``
(the notifications shown); napari and Qt are imported by those fixtures
only, so the core's tests run without them.
"""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path

import pytest

from napari_diskimage import _scratch, _settings


def _open_fds() -> set[str]:
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            fds.add(os.readlink(f"/proc/self/fd/{fd}"))
    return fds


@pytest.fixture(autouse=True)
def disk_image_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request):
    """A fresh disk-image directory per test; checks nothing is left in it."""
    folder = tmp_path / "disk-images"
    monkeypatch.setenv(_scratch.ENV_VAR, str(folder))
    _scratch._reset_disk_image_dir()
    before = _open_fds()
    yield folder
    _scratch._reset_disk_image_dir()
    if request.node.get_closest_marker("gui"):
        return  # napari keeps layers alive until its own teardown
    gc.collect()
    leftovers = sorted(p.name for p in folder.glob("ndi-*")) if folder.is_dir() else []
    assert not leftovers, f"scratch files left behind: {leftovers}"
    leaked = {f for f in _open_fds() - before if f.startswith(str(tmp_path))}
    assert not leaked, f"file descriptors left open: {sorted(leaked)}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A folder for the test's input and output files."""
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugin's settings folder for this test: never the real user's."""
    folder = tmp_path / "config"
    monkeypatch.setenv(_settings.CONFIG_ENV_VAR, str(folder))
    return folder


# --- view cache ------------------------------------------------------------------
@pytest.fixture
def view_caches_cleared(disk_image_dir: Path):
    """Remove the view caches the test built (they are not scratch files)."""
    yield
    if disk_image_dir.is_dir():
        import napari_diskimage as ndi

        ndi.clear_view_caches()


@pytest.fixture
def scan_tiff(data_dir: Path):
    """``(path, pixels)``: a noisy uint16 scan (96 x 600 x 700, 80 MiB)
    saved as TIFF, which a view cache must reproduce exactly."""
    import numpy as np
    import tifffile

    rng = np.random.default_rng(24)
    data = rng.integers(0, 60000, (96, 600, 700), dtype=np.uint16)
    path = data_dir / "scan.tif"
    tifffile.imwrite(path, data)
    return path, data


# --- GUI tests -------------------------------------------------------------------
@pytest.fixture
def messages():
    """A function returning the texts of the napari notifications shown
    since the test started."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    return lambda: [n.message for n in notification_manager.records[start:]]


@pytest.fixture
def viewer(make_napari_viewer):
    """A napari viewer (not shown); no job of the plugin outlives it."""
    from napari_diskimage import _qt

    yield make_napari_viewer()
    _qt.cancel_all_jobs()


@pytest.fixture
def window(make_napari_viewer):
    """``(viewer, panel)``: a shown viewer in napari's default window size
    (1280 x 800) with the "Disk images" panel docked."""
    from qtpy.QtWidgets import QApplication

    from napari_diskimage import _qt

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1280, 800)
    _dock, panel = viewer.window.add_plugin_dock_widget(
        "napari-diskimage", "Disk images"
    )
    for _ in range(5):
        QApplication.processEvents()
    yield viewer, panel
    _qt.cancel_all_jobs()
