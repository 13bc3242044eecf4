"""Processing on a real one-node SLURM, through dask-jobqueue.

A session fixture starts SLURM from Debian's packages with the project's
own script (``.ci/slurm.sh start``: apt-get the first time) and stops it
at the end (scancel every job, then the daemons).  This machine has 2
cores and SLURM gives each 1-core job one of them, so at most 2 jobs run
at once: the tests that start their own jobs come first, then a class
whose 2 jobs serve several tests, ending with the faults (a job
cancelled mid-run, then the last one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as sndi
import tifffile

import napari_diskimage as ndi
from napari_diskimage import _cluster, _steps, process

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = (32, 32, 8)  # x, y, z: many blocks, so the work is shared
SLOW_BLOCKS = (32, 32, 4)  # 36 blocks of 0.15 s: long enough to cancel a job
SHAPE = (16, 96, 96)  # z, y, x
SIGMA = 1.5
JOB = {"cores": 1, "memory": "1GB", "walltime": "00:10:00", "interface": "lo"}


def _slurm(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / ".ci" / "slurm.sh"), command],
        capture_output=True,
        text=True,
        timeout=900,  # the first start installs the packages
        check=False,
    )


@pytest.fixture(scope="session")
def slurm():
    """A running one-node SLURM for the session; stopped at the end."""
    started = _slurm("start")
    if started.returncode != 0:
        pytest.fail(f"could not start SLURM:\n{started.stdout}\n{started.stderr}")
    yield
    stopped = _slurm("stop")
    assert stopped.returncode == 0, stopped.stderr


def queued_jobs() -> set[str]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {seconds} s")
        time.sleep(0.1)


def volume(seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = sndi.gaussian_filter(rng.random(SHAPE), 2)
    field = (field - field.min()) / (field.max() - field.min())
    return np.rint(field * 60000).astype(np.uint16)


def write_tiff(path: Path, data: np.ndarray) -> Path:
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    return path


def pixels(image) -> np.ndarray:
    """(z, y, x) pixels of a one-channel disk image, read back from its file."""
    with ndi.open_raw(image.path, image.geometry) as again:
        return np.array(again.array[0, 0])


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def threaded(make) -> np.ndarray:
    """The pixels of ``make()`` run with dask's threads (no cluster active)."""
    assert _cluster_client() is None
    out = make()
    try:
        return pixels(out)
    finally:
        out.close()


def _cluster_client():
    from napari_diskimage.process._engine import active_client

    return active_client()


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_diskimage._cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **env},
        check=False,
    )


def slurm_env(log_dir: Path) -> dict[str, str]:
    """dask-jobqueue's config for the CLI's jobs, as its env variables."""
    return {
        "DASK_JOBQUEUE__SLURM__INTERFACE": "lo",
        "DASK_JOBQUEUE__SLURM__LOG_DIRECTORY": str(log_dir),
    }


# --- the terminal, with its own jobs -----------------------------------------
def test_cli_slurm_runs_in_slurm_jobs_and_ends_them(slurm, data_dir, disk_image_dir):
    src = write_tiff(data_dir / "in.tif", volume())
    dst = data_dir / "smooth.tif"
    expected = threaded(lambda: process.gaussian(ndi.open_tiff(src), SIGMA))
    before = queued_jobs()
    proc = cli(
        "process", "gaussian", str(src), str(dst), "--sigma", str(SIGMA),
        "--slurm", "2", "--slurm-cores", "1", "--slurm-memory", "1GB",
        "--slurm-walltime", "00:05:00",
        NAPARI_DISKIMAGE_DIR=str(disk_image_dir),
        **slurm_env(data_dir / "logs"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(tifffile.imread(dst), expected)
    # it says which SLURM jobs did the work; they ended with the command
    assert "SLURM job ids" in proc.stderr
    worked = [line for line in proc.stderr.splitlines() if "blocks written" in line]
    assert worked and all("(SLURM job " in line for line in worked), proc.stderr
    ids = proc.stderr.split("SLURM job ids ")[1].split(")")[0].split(", ")
    assert len(ids) == 2 and not set(ids) & before
    wait_for(lambda: not set(ids) & queued_jobs(), 30, "the jobs leave the queue")
    assert (data_dir / "logs").is_dir()  # dask-jobqueue's config was used


def test_sigterm_to_the_cli_cancels_the_run_and_ends_its_jobs(
    slurm, data_dir, disk_image_dir
):
    """What SLURM sends a driving job at its time limit: the command stops
    with 143, leaves no output and no scratch file, and its jobs end."""
    rng = np.random.default_rng(3)
    src = data_dir / "big.tif"
    tifffile.imwrite(src, rng.integers(0, 60000, (48, 384, 384), dtype=np.uint16))
    dst = data_dir / "median.tif"
    before = queued_jobs()
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_diskimage._cli", "process", "median",
         str(src), str(dst), "--size", "9", "--slurm", "1",
         "--slurm-walltime", "00:05:00"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NAPARI_DISKIMAGE_DIR": str(disk_image_dir),
             **slurm_env(data_dir / "logs")},
    )  # fmt: skip
    try:

        def running() -> bool:
            jobs = queued_jobs() - before
            if not jobs:
                return False
            out = subprocess.run(
                ["squeue", "-h", "-o", "%T", "-j", ",".join(jobs)],
                capture_output=True, text=True, check=False,
            ).stdout  # fmt: skip
            return "RUNNING" in out

        wait_for(running, 60, "the worker job runs")
        mine = queued_jobs() - before
        time.sleep(6)  # the worker connects and the median blocks start
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "cancelled by SIGTERM" in err, err
    assert not dst.exists()
    assert [p.name for p in data_dir.iterdir() if p.name.startswith("median")] == []
    assert list(disk_image_dir.iterdir()) == []
    wait_for(lambda: not mine & queued_jobs(), 30, "its SLURM job leaves the queue")


def test_a_worker_that_cannot_see_the_input_names_it(slurm, data_dir, disk_image_dir):
    """The worker runs in its own mount namespace where the data folder is
    an empty tmpfs: it cannot see the input, as on a node without the
    shared file system."""
    src = write_tiff(data_dir / "in.tif", volume())
    hide = f'mount -t tmpfs none {data_dir} && exec "$0" "$@"'
    python = f"unshare -m sh -c '{hide}' {sys.executable}"
    proc = cli(
        "process", "gaussian", str(src), str(data_dir / "out.tif"),
        "--slurm", "1", "--slurm-walltime", "00:05:00",
        NAPARI_DISKIMAGE_DIR=str(disk_image_dir),
        DASK_JOBQUEUE__SLURM__PYTHON=python,
        **slurm_env(disk_image_dir.parent / "logs"),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert f"does not see {str(src)!r}" in proc.stderr
    assert "shared file system" in proc.stderr and "SLURM job" in proc.stderr
    assert not (data_dir / "out.tif").exists()


def test_readme_slurm_recipe_runs(slurm, data_dir, disk_image_dir):
    """README's Python recipe, with this machine's paths and sizes."""
    import re

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (code,) = [b for b in blocks if "SLURMCluster(" in b]
    src = write_tiff(data_dir / "scan.tif", volume())
    dst = data_dir / "scan-smooth.tif"
    for old, new in [
        ("/shared/scratch/disk-images", str(disk_image_dir)),
        ("/shared/data/scan.tif", str(src)),
        ("/shared/data/scan-smooth.tif", str(dst)),
        ("cores=16", "cores=1"),
        ('memory="64GB"', 'memory="1GB"'),
        ("jobs=8", "jobs=2"),
    ]:
        assert old in code
        code = code.replace(old, new)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **slurm_env(data_dir / "logs")},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(
        tifffile.imread(dst), sndi.gaussian_filter(volume(), 2)
    )
    assert list((data_dir / "logs").glob("*.err"))  # it ran in SLURM jobs


def test_jobs_that_end_before_their_worker_starts_say_where_their_log_is(
    slurm, data_dir, disk_image_dir
):
    src = write_tiff(data_dir / "in.tif", volume())
    logs = data_dir / "logs"
    proc = cli(
        "process", "gaussian", str(src), str(data_dir / "out.tif"),
        "--slurm", "1", "--slurm-walltime", "00:05:00",
        NAPARI_DISKIMAGE_DIR=str(disk_image_dir),
        DASK_JOBQUEUE__SLURM__PYTHON="/bin/false",  # no Python on the "node"
        **slurm_env(logs),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "ended before any dask worker started" in proc.stderr
    assert str(logs) in proc.stderr and "(/bin/false)" in proc.stderr
    assert not (data_dir / "out.tif").exists()


# --- the panel, with its own jobs ------------------------------------------------
@pytest.fixture
def panel(slurm, make_napari_viewer, tmp_path, monkeypatch):
    """The Process tool on a layer of ``volume()``, set to run on 1 SLURM job."""
    import dask

    from napari_diskimage import _qt, _settings
    from napari_diskimage._qt.process import ProcessImage

    monkeypatch.setenv(_settings.CONFIG_ENV_VAR, str(tmp_path / "config"))
    viewer = make_napari_viewer()
    _qt.add_disk_image(viewer, ndi.copy(volume()), "vol")
    widget = ProcessImage(viewer)
    widget.operation.value = "gaussian"
    widget.fields["sigma"].value = SIGMA
    widget.run_on.kind.value = "slurm"
    widget.run_on.jobs.value = 1
    widget.run_on.memory.value = "1GB"
    logs = str(tmp_path / "logs")
    _cluster._session._import_dask_jobqueue()  # its defaults first: set() restores them
    with dask.config.set(
        {"jobqueue.slurm.interface": "lo", "jobqueue.slurm.log-directory": logs}
    ):
        yield widget
    _qt.cancel_all_jobs()


@pytest.mark.gui
def test_panel_runs_on_slurm_and_remembers_the_choice(panel, qtbot):
    from napari_diskimage._qt.run_on import RunOn

    before = queued_jobs()
    panel.run_button.native.click()
    job = panel.job
    qtbot.waitUntil(lambda: job.done, timeout=90000)
    assert job.error is None and not job.cancelled
    (result,) = panel.result_layers
    expected = sndi.gaussian_filter(volume(), SIGMA)
    np.testing.assert_array_equal(pixels(result.metadata["disk_image"]), expected)
    assert "(SLURM job " in panel.status.value, panel.status.value
    assert _cluster_client() is None  # the session ended with the run
    wait_for(lambda: queued_jobs() <= before, 30, "the panel's job leaves the queue")
    again = RunOn()  # a new napari session: the choice was saved
    assert again.kind.value == "slurm" and again.memory.value == "1GB"
    assert not again.jobs.native.isHidden() and again.address.native.isHidden()


@pytest.mark.gui
def test_panel_cancel_ends_the_slurm_jobs(panel, qtbot, disk_image_dir):
    before = queued_jobs()
    panel.run_button.native.click()
    job = panel.job
    qtbot.waitUntil(lambda: bool(queued_jobs() - before), timeout=30000)
    (new,) = queued_jobs() - before
    panel.cancel_button.native.click()
    qtbot.waitUntil(lambda: job.done, timeout=30000)
    assert job.cancelled
    assert not panel.result_layers or panel.result_layers[0] not in panel.viewer.layers
    wait_for(lambda: new not in queued_jobs(), 30, "the cancelled job ends")
    assert panel.status.value.startswith("cancelled")


# --- two jobs for several tests ------------------------------------------------
@pytest.fixture(scope="class")
def reference(tmp_path_factory):
    """Input files and the threaded results, before any cluster is active."""
    folder = tmp_path_factory.mktemp("slurm-data")
    src = write_tiff(folder / "in.tif", volume())
    with ndi.open_tiff(src) as image:
        ref = {
            "gaussian": threaded(
                lambda: process.gaussian(image, SIGMA, block_shape=BLOCKS)
            ),
            "slow": threaded(
                lambda: process.apply(
                    slow_gaussian(0), image, depth=6, block_shape=SLOW_BLOCKS
                )
            ),
        }
    ref["labels"] = sndi.label(ref["gaussian"] >= 30000)[0]
    return src, ref


def slow_gaussian(seconds: float):
    """A gaussian taking ``seconds`` per block (pickled by value)."""

    def fn(block):
        import time

        import scipy.ndimage

        time.sleep(seconds)
        return scipy.ndimage.gaussian_filter(block, SIGMA)

    return fn


@pytest.fixture(scope="class")
def session(slurm, reference, tmp_path_factory):
    """2 SLURM jobs of 1 core, their client the default one."""
    logs = tmp_path_factory.mktemp("slurm-logs")
    spec = _cluster.ClusterSpec(kind="slurm", jobs=2, log_directory=str(logs), **JOB)
    with _cluster.Session(spec) as opened:
        opened.client.wait_for_workers(2, timeout=60)
        yield opened
    assert _cluster_client() is None


class TestTwoJobs:
    def test_gaussian_and_label_equal_the_threaded_run(self, session, reference):
        src, ref = reference
        assert _cluster_client() is session.client
        with ndi.open_tiff(src) as image:
            smooth = process.gaussian(image, SIGMA, block_shape=BLOCKS)
            mask = process.threshold(smooth, 30000, block_shape=BLOCKS)
            labels = process.label(mask, block_shape=BLOCKS)
        np.testing.assert_array_equal(pixels(smooth), ref["gaussian"])
        assert same_partition(pixels(labels), ref["labels"])
        for out in (smooth, mask, labels):
            out.close()
        # both jobs wrote blocks, and nothing was computed here
        done = session.work_done()
        assert len(done) == 2 and all(d["blocks_written"] > 0 for d in done.values())
        assert "blocks written" in session.report()

    def test_the_work_ran_in_the_slurm_jobs(self, session):
        ids = session.client.run(lambda: os.environ.get("SLURM_JOB_ID"))
        assert sorted(ids.values()) == session.job_ids()
        assert set(session.job_ids()) <= queued_jobs()
        # the workers that wrote blocks were those of these jobs
        worked = {
            session.workers[a]["slurm_job_id"]
            for a, d in session.work_done().items()
            if d["blocks_written"]
        }
        assert worked == set(session.job_ids())
        assert os.environ.get("SLURM_JOB_ID") is None  # not this process

    def test_cli_on_the_scheduler_of_the_jobs(self, session, reference, data_dir):
        src, ref = reference
        dst = data_dir / "smooth.tif"
        proc = cli(
            "process", "gaussian", str(src), str(dst), "--sigma", str(SIGMA),
            "--scheduler", session.cluster.scheduler_address,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_array_equal(tifffile.imread(dst), ref["gaussian"])
        worked = [line for line in proc.stderr.splitlines() if "blocks written" in line]
        jobs = {line.split("(SLURM job ")[1].split(",")[0] for line in worked}
        assert jobs and jobs <= set(session.job_ids()), proc.stderr
        assert set(session.job_ids()) <= queued_jobs()  # not ours to end

    def test_cli_measure_on_the_scheduler_of_the_jobs(
        self, session, reference, data_dir
    ):
        import pandas as pd
        from skimage.measure import regionprops_table

        src, ref = reference
        labels = data_dir / "labels.tif"
        tifffile.imwrite(labels, ref["labels"].astype(np.uint32))
        out = data_dir / "pores.csv"
        proc = cli(
            "measure", str(labels), "--intensity", str(src), "-o", str(out),
            "--properties", "label", "area", "centroid", "intensity_mean",
            "--scheduler", session.cluster.scheduler_address,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        table = pd.read_csv(out)
        expected = regionprops_table(
            ref["labels"],
            tifffile.imread(src),
            properties=("label", "area", "centroid", "intensity_mean"),
        )
        assert len(table) == len(expected["label"]) > 1
        for name, values in expected.items():
            np.testing.assert_allclose(table[name], values, rtol=1e-9)
        worked = [line for line in proc.stderr.splitlines() if "blocks" in line]
        assert any("(SLURM job " in line for line in worked), proc.stderr

    def test_cli_copy_on_a_worker(self, session, reference, data_dir):
        src, _ref = reference
        dst = data_dir / "copy.tif"
        address = session.cluster.scheduler_address
        proc = cli("copy", str(src), str(dst), "--scheduler", address)
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_array_equal(tifffile.imread(dst), tifffile.imread(src))
        (line,) = [x for x in proc.stderr.splitlines() if "copied by" in x]
        assert line.split("(SLURM job ")[1].split(",")[0] in session.job_ids()

    def test_a_job_cancelled_mid_run_does_not_change_the_result(
        self, session, reference
    ):
        src, ref = reference
        assert _cluster_client() is session.client
        victim = session.job_ids()[0]
        with ndi.open_tiff(src) as image:
            run = process.apply.run(
                slow_gaussian(0.15), image, depth=6, block_shape=SLOW_BLOCKS
            )
            steps = iter(run)
            next(steps)  # a first block is done
            subprocess.run(["scancel", victim], check=True)
            out = _steps.run_steps(steps, None)
        # the job is gone (its worker did not come back), the other did the rest
        wait_for(lambda: victim not in queued_jobs(), 30, "the job leaves the queue")
        assert len(session.client.scheduler_info()["workers"]) == 1
        np.testing.assert_array_equal(pixels(out), ref["slow"])
        out.close()

    def test_every_worker_gone_fails_after_a_timeout_without_output(
        self, session, reference, disk_image_dir
    ):
        import dask

        src, _ref = reference
        assert _cluster_client() is session.client
        with (
            dask.config.set({"napari-diskimage.no-workers-timeout": 2}),
            ndi.open_tiff(src) as image,
        ):
            run = process.apply.run(
                slow_gaussian(0.15), image, depth=6, block_shape=SLOW_BLOCKS
            )
            output = run.output.path
            steps = iter(run)
            next(steps)
            subprocess.run(["scancel", *session.job_ids()], check=True)
            start = time.monotonic()
            with pytest.raises(TimeoutError, match="every dask worker is gone"):
                _steps.run_steps(steps, None)
        assert time.monotonic() - start < 60
        assert not output.exists()
        assert not list(disk_image_dir.glob("ndi-*"))
