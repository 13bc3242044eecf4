"""The ``napari-diskimage demo`` console command."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_diskimage._cli import dock_plugin_widgets, main


def test_console_script_is_declared():
    [script] = entry_points(group="console_scripts", name="napari-diskimage")
    assert script.value == "napari_diskimage._cli:main"


def test_bad_size_is_refused_with_a_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--size", "lots"])
    assert exit_info.value.code == 2
    assert "cannot read a size from 'lots'" in capsys.readouterr().err


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit):
        main([])
    assert "demo" in capsys.readouterr().err


def test_unusable_disk_image_dir_fails_cleanly(disk_image_dir, capsys):
    disk_image_dir.parent.mkdir(parents=True, exist_ok=True)
    disk_image_dir.write_text("a file, not a folder")
    assert main(["demo", "--size", "1MiB"]) == 1
    err = capsys.readouterr().err
    assert "napari-diskimage demo:" in err and str(disk_image_dir) in err
    disk_image_dir.unlink()


def test_no_display_is_explained_before_any_work(disk_image_dir, monkeypatch, capsys):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["demo", "--size", "1MiB", "--screenshot", "x.png"]) == 1
    assert "xvfb-run -a napari-diskimage demo" in capsys.readouterr().err
    assert not disk_image_dir.exists() or not list(disk_image_dir.iterdir())


def _napari_diskimage_command() -> list[str]:
    script = Path(sys.executable).with_name("napari-diskimage")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "napari_diskimage._cli"]  # pragma: no cover


@pytest.mark.gui
def test_demo_writes_the_sample_and_renders_it(tmp_path, disk_image_dir):
    shot = tmp_path / "demo.png"
    env = {
        **os.environ,
        "NAPARI_DISKIMAGE_DIR": str(disk_image_dir),
        "NAPARI_CONFIG": str(tmp_path / "napari-settings.yaml"),
    }
    command = [*_napari_diskimage_command(), "demo", "--size", "8MiB"]
    result = subprocess.run(
        [*command, "--screenshot", str(shot)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sample = disk_image_dir / "synthetic_512x256x32_UInt16.tif"
    assert sample.is_file()
    assert "writing the sample volume" in result.stderr
    assert "could not dock" not in result.stderr
    assert "docked widget:" in result.stdout
    picture = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert picture.shape[0] >= 400 and picture.shape[1] >= 600
    # The canvas is the part of the window with a pure black background;
    # the foam in it is bright solid and dark pores.
    canvas_columns = (picture == 0).mean(axis=0) > 0.3
    assert canvas_columns.sum() > 150
    canvas = picture[:, canvas_columns]
    image_rows = (canvas > 0).mean(axis=1) > 0.5
    foam = canvas[image_rows]
    assert foam.shape[0] > 50
    assert 0.2 < (foam > 128).mean() < 0.9
    assert (foam < 64).mean() > 0.1


@pytest.mark.gui
def test_demo_docks_every_widget_of_the_manifest(make_napari_viewer):
    from npe2 import PluginManager

    viewer = make_napari_viewer()
    manifest = PluginManager.instance().get_manifest("napari-diskimage")
    declared = [w.display_name for w in manifest.contributions.widgets or []]
    assert dock_plugin_widgets(viewer) == declared
    docked = list(viewer.window.dock_widgets)
    assert all(any(name in d for d in docked) for name in declared)
