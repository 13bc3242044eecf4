"""Where a run goes, without SLURM: the spec, the job script it makes, the
terminal's options and the panel's Run on choice.  The runs on a real
SLURM are in test_slurm.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import napari_diskimage as ndi
from napari_diskimage import _cluster, _settings
from napari_diskimage._cli import main


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(_settings.CONFIG_ENV_VAR, str(tmp_path / "config"))


def test_a_spec_says_what_is_missing():
    with pytest.raises(ValueError, match="needs its address"):
        _cluster.ClusterSpec(kind="scheduler")
    with pytest.raises(ValueError, match="at least 1 job"):
        _cluster.ClusterSpec(kind="slurm", jobs=0)
    with pytest.raises(ValueError, match="'pbs'"):
        _cluster.ClusterSpec(kind="pbs")
    spec = _cluster.ClusterSpec(kind="slurm", jobs=2, cores=4, memory="8GB")
    assert spec.describe() == "2 SLURM jobs (cores 4, memory 8GB)"


def test_the_job_script_has_the_options_or_daskjobqueues_config():
    import dask

    SLURMCluster = _cluster._session._import_dask_jobqueue().SLURMCluster
    spec = _cluster.ClusterSpec(
        kind="slurm",
        jobs=1,
        cores=2,
        memory="3GB",
        walltime="00:07:00",
        queue="short",
        account="lab",
        interface="lo",
    )
    with SLURMCluster(**spec.slurm_options()) as cluster:
        script = cluster.job_script()
    for line in ("--cpus-per-task=2", "-p short", "-A lab", "-t 00:07:00"):
        assert line in script, script
    assert f"{sys.executable} -m distributed.cli.dask_worker" in script
    assert "DASK_DISTRIBUTED__WORKER__MEMORY__TERMINATE=False" in script
    # what the options do not give comes from dask-jobqueue's config
    bare = _cluster.ClusterSpec(kind="slurm", jobs=1, interface="lo")
    with dask.config.set({"jobqueue.slurm.cores": 3, "jobqueue.slurm.queue": "big"}):
        options = bare.slurm_options()
        assert "cores" not in options and "queue" not in options
        with SLURMCluster(**options) as cluster:
            script = cluster.job_script()
    assert "--cpus-per-task=3" in script and "-p big" in script
    # and without either, 1 core and 4 GiB
    assert bare.slurm_options()["cores"] == 1
    assert bare.slurm_options()["memory"] == "4GiB"


@pytest.mark.parametrize("through_us", [True, False])
def test_dask_jobqueue_keeps_ctrl_c_a_keyboard_interrupt(through_us):
    """dask-jobqueue 0.9 sets a SIGINT handler calling sys.exit() at import
    (Ctrl+C would exit 0); imported through _cluster, it does not."""
    import subprocess

    load = (
        "from napari_diskimage._cluster import _session; "
        "_session._import_dask_jobqueue()"
        if through_us
        else "import dask_jobqueue"
    )
    code = (
        "import signal; before = signal.getsignal(signal.SIGINT); "
        f"{load}; print(signal.getsignal(signal.SIGINT) is before)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(through_us)


def test_cli_options_are_checked_before_any_work(tmp_path, capsys):
    src = tmp_path / "in.tif"
    with ndi.copy(np.zeros((4, 8, 8), np.uint16)) as image:
        image.save_tiff(src)
    dst = tmp_path / "out.tif"
    assert main(["process", "gaussian", str(src), str(dst), "--slurm", "0"]) == 1
    assert "SLURM needs at least 1 job" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["copy", str(src), str(dst), "--slurm", "1", "--scheduler", "tcp://x:1"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert not dst.exists()


@pytest.mark.gui
def test_run_on_is_remembered_and_checked(make_napari_viewer, disk_image_dir):
    pytest.importorskip("napari")
    from napari_diskimage import _qt
    from napari_diskimage._qt.process import ProcessImage
    from napari_diskimage._qt.run_on import RunOn

    viewer = make_napari_viewer()
    _qt.add_disk_image(viewer, ndi.copy(np.ones((4, 8, 8), np.uint16)), "vol")
    widget = ProcessImage(viewer)
    assert widget.run_on.spec() is None  # this machine by default
    widget.run_on.kind.value = "scheduler"
    assert not widget.run_on.address.native.isHidden()
    assert widget.run_on.jobs.native.isHidden()
    layers = len(viewer.layers)
    assert widget.start() is None  # no address: not started, said why
    assert "needs its address" in widget.status.value
    assert len(viewer.layers) == layers
    widget.run_on.address.value = "tcp://10.0.0.5:8786"
    again = RunOn()  # the next napari session
    assert again.spec() == _cluster.ClusterSpec(
        kind="scheduler", address="tcp://10.0.0.5:8786"
    )
