"""The package as installed: GUI-free import, and a manifest napari finds."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NPE2 = [sys.executable, "-c", "from npe2.cli import main; main()"]


def test_import_is_gui_free_and_fast():
    code = (
        "import sys, time; t = time.perf_counter(); import napari_diskimage;"
        "dt = time.perf_counter() - t;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6',"
        " 'magicgui', 'vispy'));"
        "print(bad); print(dt)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DISPLAY": ""},
    )
    bad, seconds = out.stdout.split("\n")[:2]
    assert bad == "[]"
    assert float(seconds) < 5  # generous: a cold import on a loaded machine


def test_manifest_is_the_top_level_file():
    import napari_diskimage

    resource = Path(napari_diskimage.__file__).with_name("napari.yaml")
    assert resource.read_text() == (ROOT / "napari.yaml").read_text()


def test_npe2_validates_the_installed_manifest(tmp_path):
    out = subprocess.run(
        [*NPE2, "validate", "napari-diskimage"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


@pytest.mark.slow
def test_npe2_validates_a_wheel_install(tmp_path):
    """A built wheel carries napari.yaml (the symlink is stored as a file)."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("napari_diskimage-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    assert (target / "napari_diskimage" / "napari.yaml").is_file()
    assert not (target / "napari_diskimage" / "napari.yaml").is_symlink()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import napari_diskimage; print(napari_diskimage.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(target))  # the wheel, not the checkout
    out = subprocess.run(
        [*NPE2, "validate", "napari-diskimage"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
