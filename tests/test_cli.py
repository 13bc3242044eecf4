"""The ``napari-diskimage`` console command: demo, info, copy, process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import napari_diskimage as ndi
from napari_diskimage import process
from napari_diskimage._cli import main
from napari_diskimage._napari.demo import dock_panel


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


def test_the_demo_without_napari_says_how_to_install_it(
    disk_image_dir, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "napari", None)  # as if not installed
    assert main(["demo", "--size", "1MiB"]) == 1
    err = capsys.readouterr().err
    assert "napari is not installed" in err
    assert "pip install 'napari-diskimage[all]'" in err
    assert not disk_image_dir.exists() or not list(disk_image_dir.iterdir())


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
    assert "writing the sample scan" in result.stderr
    assert "could not dock" not in result.stderr
    assert "docked: Disk images panel" in result.stdout
    picture = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert picture.shape[0] >= 400 and picture.shape[1] >= 600
    # The canvas is the part of the window with a pure black background;
    # the scan in it is grey solid and darker pores, with noise and soft
    # edges: neither flat nor saturated.
    canvas_columns = (picture == 0).mean(axis=0) > 0.3
    assert canvas_columns.sum() > 150
    canvas = picture[:, canvas_columns]
    image_rows = (canvas > 0).mean(axis=1) > 0.5
    scan = canvas[image_rows]
    assert scan.shape[0] > 50
    between = ((scan > 8) & (scan < 247)).mean()
    assert between > 0.8, f"only {between:.0%} of the scan is grey, not black/white"
    assert scan.std() > 20  # structure, not a flat grey
    assert (scan < 100).mean() > 0.1 and (scan > 150).mean() > 0.3  # pores, solid


@pytest.mark.gui
def test_demo_docks_the_panel_with_every_tool(make_napari_viewer):
    from napari_diskimage._qt import TOOLS

    viewer = make_napari_viewer()
    panel = dock_panel(viewer)
    assert panel is not None
    assert list(panel.tools) == [name for name, _ in TOOLS]
    assert any("Disk images" in d for d in viewer.window.dock_widgets)


# --- terminal commands ---------------------------------------------------------
def _volume(data_dir, name="vol.tif"):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (6, 30, 40), dtype=np.uint16)
    path = data_dir / name
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    return data, path


def test_info_tells_geometry_storage_and_what_happens(data_dir, capsys):
    _, path = _volume(data_dir)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "40 x 30 x 6 x 1 x 1 (x, y, z, c, t) UInt16" in out
    assert "memory-mapped" in out and "opens it at once" in out
    packed = data_dir / "packed.tif"
    tifffile.imwrite(packed, np.zeros((30, 40), np.uint8), compression="zlib")
    assert main(["info", str(packed)]) == 0
    assert "decoded lazily" in capsys.readouterr().out
    raw = data_dir / "scan.bin.raw"
    raw.write_bytes(bytes(2 * 40 * 30))
    args = ["info", str(raw), "--raw-type", "UInt16", "--raw-size", "40", "30"]
    assert main(args) == 0
    assert "40 x 30 x 1" in capsys.readouterr().out


def test_copy_and_save_equal_the_python_api(data_dir, capsys):
    data, path = _volume(data_dir)
    out_raw = data_dir / "out_40x30x6_UInt16.raw"
    assert main(["copy", str(path), str(out_raw)]) == 0
    api_raw = ndi.save_raw(ndi.open_tiff(path), data_dir / "api.raw")
    assert out_raw.read_bytes() == api_raw.read_bytes()
    out_tif = data_dir / "out.tif"
    assert main(["save", str(out_raw), str(out_tif), "--byte-order", "<"]) == 0
    np.testing.assert_array_equal(tifffile.imread(out_tif), data)
    big = data_dir / "big_endian.raw"
    assert main(["copy", str(path), str(big), "--byte-order", ">"]) == 0
    assert big.read_bytes() == data.astype(">u2").tobytes()
    assert "wrote" in capsys.readouterr().err


def test_process_equals_the_python_api(data_dir, capsys):
    data, path = _volume(data_dir)
    out = data_dir / "smooth.tif"
    assert main(["process", "gaussian", str(path), str(out), "--sigma", "1.5"]) == 0
    expected = np.asarray(process.gaussian(ndi.open_tiff(path), 1.5).array[0, 0])
    np.testing.assert_array_equal(tifffile.imread(out), expected)
    capsys.readouterr()
    assert main(["process", "otsu", str(path)]) == 0
    value = float(capsys.readouterr().out)
    assert value == pytest.approx(process.otsu(ndi.open_tiff(path)), rel=1e-6)
    mask = data_dir / "mask.tif"
    args = ["process", "threshold", str(path), str(mask), "--low", str(value)]
    assert main(args) == 0
    np.testing.assert_array_equal(
        tifffile.imread(mask), (data >= value).astype(np.uint8)
    )
    diff = data_dir / "diff.tif"
    args = [
        "process",
        "arithmetic",
        str(path),
        str(diff),
        "--op",
        "-",
        "--b",
        str(path),
    ]
    assert main(args) == 0
    assert not tifffile.imread(diff).any()


@pytest.mark.parametrize(
    "argv",
    [
        ["copy"],
        ["process", "gaussian", "a.tif"],
        ["process", "gaussian", "a.tif", "b.tif", "--sigma", "lots"],
        ["process", "blur", "a.tif", "b.tif"],
        ["info"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_give_usage_and_status_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: napari-diskimage")
    assert "error:" in err


def test_errors_name_the_file_and_give_status_1(data_dir, capsys):
    missing = data_dir / "missing.tif"
    assert main(["copy", str(missing), str(data_dir / "out.tif")]) == 1
    err = capsys.readouterr().err
    assert "napari-diskimage copy: error:" in err and str(missing) in err
    _, path = _volume(data_dir)
    assert main(["copy", str(path), str(data_dir / "out.png")]) == 1
    assert ".png" in capsys.readouterr().err
    assert main(["process", "gaussian", str(path), str(data_dir / "o.tif"),
                 "--sigma", "0"]) == 1  # fmt: skip
    assert "greater than 0" in capsys.readouterr().err
    assert not (data_dir / "o.tif").exists()


def test_help_lists_each_command_with_an_example(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("info", "copy", "process", "demo"):
        assert command in out
    assert "napari-diskimage process gaussian scan.tif smooth.tif --sigma 2" in out


def test_ctrl_c_during_a_copy_leaves_no_partial_file(tmp_path):
    """SIGINT while a large copy is running: status 130, no file, a message."""
    size_x, size_y, size_z = 4096, 4096, 64  # 2 GiB, sparse: nothing on disk
    src = tmp_path / f"zeros_{size_x}x{size_y}x{size_z}_UInt16.raw"
    with open(src, "wb") as fh:
        fh.truncate(size_x * size_y * size_z * 2)
    dst = tmp_path / "out" / "copy.raw"
    dst.parent.mkdir()
    # big-endian output: the block path (not the kernel's copy), ~ seconds
    command = [*_napari_diskimage_command(), "copy", str(src), str(dst),
               "--byte-order", ">"]  # fmt: skip
    proc = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a shell's background job (a CI run started
        # with `&`) inherits SIGINT ignored, and Python keeps ignoring it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # interrupt once the copy reports progress (its first block is written),
    # not after a fixed time: on a loaded machine the start-up takes longer
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "%" in line:
            break
    assert proc.poll() is None, (
        f"the copy ended before it could be interrupted: {lines}"
    )
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    err = "".join(lines) + rest
    assert proc.returncode == 130, err
    assert "cancelled; no partial file was left" in err
    assert list(dst.parent.iterdir()) == []
