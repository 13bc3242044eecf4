"""Shared fixtures.

Every test gets its own disk-image directory, and fails if it leaves a
scratch file behind in it or leaks a file descriptor: a disk image that
is dropped must release its file.
"""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path

import pytest

from napari_diskimage import _scratch


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
