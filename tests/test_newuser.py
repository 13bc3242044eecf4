"""What a new user trips on (issue 21): the terminal's part.

Threshold by phase, SIGTERM and SIGHUP, the label count, options that do
not fit the input, folder wording, foreign log lines, progress in a log.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.filters import threshold_otsu

import napari_diskimage as ndi
from napari_diskimage._cli import main
from napari_diskimage._cli_common import ProgressBar


def _command() -> list[str]:
    script = Path(sys.executable).with_name("napari-diskimage")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "napari_diskimage._cli"]  # pragma: no cover


def _two_phases(path: Path) -> np.ndarray:
    """A scan-like image: dark pores (about 700) in a bright solid (1900)."""
    rng = np.random.default_rng(3)
    pores = rng.random((6, 40, 50)) < 0.3
    data = np.where(pores, 700, 1900) + rng.normal(0, 60, pores.shape)
    data = data.astype(np.uint16)
    tifffile.imwrite(path, data, photometric="minisblack")
    return data


def test_threshold_without_a_bound_is_refused(data_dir, disk_image_dir, capsys):
    src = data_dir / "scan.tif"
    _two_phases(src)
    dst = data_dir / "mask.tif"
    assert main(["process", "threshold", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    for option in ("--low", "--high", "--otsu dark|bright"):
        assert option in err
    assert not dst.exists()


@pytest.mark.parametrize("phase", ["dark", "bright"])
def test_threshold_by_otsu_phase(data_dir, disk_image_dir, capsys, phase):
    src = data_dir / "scan.tif"
    data = _two_phases(src)
    dst = data_dir / f"{phase}.tif"
    assert main(["process", "threshold", str(src), str(dst), "--otsu", phase]) == 0
    mask = tifffile.imread(dst).astype(bool)
    t = threshold_otsu(data)
    expected = data <= t if phase == "dark" else data >= t
    np.testing.assert_array_equal(mask, expected)
    # the dark phase is the pores (grey ~700), the bright one the solid
    mean = data[mask].mean()
    assert mean < 1000 if phase == "dark" else mean > 1600
    assert f"the {phase} phase" in capsys.readouterr().err


def test_otsu_and_the_bound_it_sets_are_refused(data_dir, disk_image_dir, capsys):
    src = data_dir / "scan.tif"
    _two_phases(src)
    args = ["process", "threshold", str(src), str(data_dir / "m.tif")]
    assert main([*args, "--otsu", "dark", "--high", "5"]) == 2
    assert "--otsu dark sets --high" in capsys.readouterr().err
    assert main([*args, "--otsu", "dark", "--low", "800"]) == 0  # a band


def test_label_prints_its_component_count(data_dir, disk_image_dir, capsys):
    mask = np.zeros((20, 30), np.uint8)
    mask[2:5, 2:5] = mask[10:12, 20:25] = mask[15:18, 3:4] = 1
    src = data_dir / "mask.tif"
    tifffile.imwrite(src, mask)
    assert main(["process", "label", str(src), str(data_dir / "lab.tif")]) == 0
    assert "3 components" in capsys.readouterr().out


def test_raw_options_on_a_tiff_are_an_error(data_dir, capsys):
    src = data_dir / "scan.tif"
    _two_phases(src)
    assert main(["info", str(src), "--raw-type", "UInt8"]) == 2
    err = capsys.readouterr().err
    assert "--raw-type" in err and "a TIFF file" in err
    folder = data_dir / "slices"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", np.zeros((4, 5), np.uint8))
    assert main(["info", str(folder), "--raw-size", "4", "5"]) == 2


def test_a_folder_of_one_stack_is_not_called_slices(data_dir, capsys):
    folder = data_dir / "one"
    folder.mkdir()
    tifffile.imwrite(folder / "stack.tif", np.zeros((7, 4, 5), np.uint8))
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "a folder of one TIFF file of 7 pages" in out
    assert "1 TIFF slices" not in out


def test_a_truncated_tiff_prints_no_tifffile_log_line(data_dir):
    path = data_dir / "cut.tif"
    tifffile.imwrite(path, np.zeros((4, 64, 64), np.uint16), photometric="minisblack")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    result = subprocess.run(
        [*_command(), "info", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.startswith("napari-diskimage info: error:"), result.stderr
    assert "is truncated" in result.stderr
    assert "tifffile" not in result.stderr and "invalid page" not in result.stderr


def test_progress_is_reported_in_a_log(monkeypatch):
    log = io.StringIO()  # not a terminal: a batch job's output file
    monkeypatch.setattr(sys, "stderr", log)
    bar = ProgressBar("writing the sample scan")
    for done in range(0, 101, 5):
        bar(done << 20, 100 << 20)
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("writing the sample scan: 0 %")
    assert lines[-1].startswith("writing the sample scan: 100 %")
    assert 5 <= len(lines) <= 12  # a line per tenth, not per step
    assert "\r" not in log.getvalue()


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_sigterm_and_sighup_cancel_and_leave_nothing(tmp_path, sig, status):
    """A scheduler's SIGTERM (or a closed terminal's SIGHUP) during a
    process run: no output, no scratch file, a message, 128 + signal."""
    src = tmp_path / "zeros_2048x2048x64_UInt16.raw"  # 512 MiB, sparse
    with open(src, "wb") as fh:
        fh.truncate(2048 * 2048 * 64 * 2)
    scratch = tmp_path / "scratch"
    out = tmp_path / "out"
    out.mkdir()
    command = [*_command(), "process", "gaussian", str(src), str(out / "s.tif"),
               "--sigma", "3"]  # fmt: skip
    env = {**os.environ, "NAPARI_DISKIMAGE_DIR": str(scratch)}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "gaussian: 0 % ...": the run started
    assert first.startswith("gaussian: 0 %"), first
    assert list(scratch.iterdir()), "the run has its scratch file"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert f"cancelled by {signal.Signals(sig).name}" in err
    assert "no partial file was left" in err
    assert list(out.iterdir()) == []
    assert [p for p in scratch.iterdir() if not p.name.startswith(".")] == []


def test_ctrl_c_stops_label(tmp_path):
    """Ctrl+C during ``process label``: status 130, no file left."""
    src = tmp_path / "mask.tif"
    rng = np.random.default_rng(0)
    data = tifffile.memmap(src, shape=(16, 1024, 2048), dtype=np.uint8)
    for z in range(data.shape[0]):
        data[z] = rng.random(data.shape[1:]) < 0.3
    data.flush()
    del data
    scratch = tmp_path / "scratch"
    command = [*_command(), "process", "label", str(src), str(tmp_path / "l.tif")]
    env = {**os.environ, "NAPARI_DISKIMAGE_DIR": str(scratch)}
    proc = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # as from a terminal (a shell's background job would ignore SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("label: 0 %")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (tmp_path / "l.tif").exists()
    assert [p for p in scratch.iterdir() if not p.name.startswith(".")] == []


def test_open_tiff_holds_back_tifffile_log_only_in_its_thread(data_dir, caplog):
    path = data_dir / "cut.tif"
    tifffile.imwrite(path, np.zeros((4, 64, 64), np.uint16), photometric="minisblack")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING", logger="tifffile"):
        with pytest.raises(ndi.CorruptFileError, match="truncated"):
            ndi.open_tiff(path)
        assert not [r for r in caplog.records if r.name == "tifffile"]
        with tifffile.TiffFile(path) as tif:
            _ = tif.series  # the user's own use still logs
        assert [r for r in caplog.records if r.name == "tifffile"]
