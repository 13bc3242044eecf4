"""Gaussian on 1 GiB: dask's threads vs 2 SLURM jobs of 1 core (this machine).

    python benchmarks/slurm.py              # root or sudo: starts SLURM

Starts the one-node SLURM (``.ci/slurm.sh start``; stopped at the end),
writes the 1 GiB (64, 2048, 4096) uint16 volume of ``process.py`` to a
temporary folder, reads it once (warm cache), then in one run:

* ``process.gaussian(image, 2)`` on dask's threads (2 threads, the peer);
* the same through 2 SLURM jobs of 1 core each (dask-jobqueue, via
  :class:`napari_diskimage._cluster.Session`): the time from submitting
  the jobs until both workers are connected (job start overhead), the
  run itself (throughput), and closing (scancel, workers gone);
* the bytes each worker read and wrote (the engine's counters), which
  the scaling model in docs/benchmarks.md builds on.

Results go to ``docs/benchmarks.md`` between the ``slurm`` markers and to
``docs/benchmarks-slurm.json``.  Both runs share this machine's 2 cores
with whatever else runs: compare them with each other, in the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(HERE))

from process import make_volume  # noqa: E402
from report import write_section  # noqa: E402

GiB, MiB = 1 << 30, 1 << 20
PLANES = 64  # 1 GiB of (2048, 4096) uint16 planes
SIGMA = 2


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def slurm(command: str) -> None:
    subprocess.run(["bash", str(ROOT / ".ci" / "slurm.sh"), command], check=True)


def warm(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(64 * MiB):
            pass


def measure(folder: Path) -> dict:
    import dask
    import numpy as np

    import napari_diskimage as ndi
    from napari_diskimage import _cluster, process

    ndi.set_disk_image_dir(folder / "disk-images")
    src = folder / "vol.tif"
    log("writing the 1 GiB volume")
    make_volume(src, PLANES)
    warm(src)
    res: dict = {"volume_bytes": src.stat().st_size, "sigma": SIGMA}
    image = ndi.open_tiff(src)

    log("threaded")
    start = time.perf_counter()
    threaded = process.gaussian(image, SIGMA)
    res["threaded_s"] = time.perf_counter() - start
    stats = process.stats()
    res["threaded_read_bytes"] = stats["bytes_read"]
    expected = np.asarray(threaded.array[0, 0, 30])  # one plane, to compare

    log("2 SLURM jobs of 1 core")
    spec = _cluster.ClusterSpec(
        kind="slurm",
        jobs=2,
        cores=1,
        memory="2GB",
        walltime="00:30:00",
        interface="lo",
        log_directory=str(folder / "logs"),
    )
    start = time.perf_counter()
    session = _cluster.Session(spec).open()  # submitted, a first worker up
    first = time.perf_counter() - start
    session.client.wait_for_workers(2, timeout=120)
    res["slurm_first_worker_s"] = first
    res["slurm_workers_ready_s"] = time.perf_counter() - start
    with dask.config.set({"napari-diskimage.no-workers-timeout": 60}):
        t0 = time.perf_counter()
        on_slurm = process.gaussian(image, SIGMA)
        res["slurm_run_s"] = time.perf_counter() - t0
    res["slurm_same_plane"] = bool(
        np.array_equal(np.asarray(on_slurm.array[0, 0, 30]), expected)
    )
    res["slurm_workers"] = {
        (session.workers[a].get("slurm_job_id") or a): d
        for a, d in session.work_done().items()
    }
    t0 = time.perf_counter()
    session.close()
    res["slurm_close_s"] = time.perf_counter() - t0
    res["slurm_total_s"] = time.perf_counter() - start
    for out in (threaded, on_slurm, image):
        out.close()
    return res


def markdown(res: dict) -> str:
    size = res["volume_bytes"]
    gib = size / GiB

    def rate(seconds: float) -> str:
        return f"{size / MiB / seconds:.0f} MiB/s"

    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores shared by both runs (and by other work on "
        f"this machine: compare the rows with each other), warm page cache, "
        f"gaussian sigma {res['sigma']} on {gib:.0f} GiB of (64, 2048, 4096) "
        "uint16.",
        "",
        "| run | time | throughput (output bytes) | notes |",
        "| --- | --- | --- | --- |",
        f"| dask threads (2), the peer | {res['threaded_s']:.1f} s | "
        f"{rate(res['threaded_s'])} | |",
        f"| 2 SLURM jobs of 1 core: the run | {res['slurm_run_s']:.1f} s | "
        f"{rate(res['slurm_run_s'])} | "
        f"{res['slurm_run_s'] / res['threaded_s']:.2f} x threads; same pixels: "
        f"{res['slurm_same_plane']} |",
        f"| SLURM: submit to first worker | {res['slurm_first_worker_s']:.1f} s | "
        f"| both workers after {res['slurm_workers_ready_s']:.1f} s |",
        f"| SLURM: close (scancel, workers gone) | {res['slurm_close_s']:.1f} s | | |",
        f"| SLURM: end to end | {res['slurm_total_s']:.1f} s | "
        f"{rate(res['slurm_total_s'])} | |",
        "",
        "| SLURM job | blocks written | read | written |",
        "| --- | --- | --- | --- |",
    ]
    for job, done in sorted(res["slurm_workers"].items()):
        lines.append(
            f"| {job} | {done['blocks_written']} | "
            f"{done['bytes_read'] / MiB:.0f} MiB | "
            f"{done['bytes_written'] / MiB:.0f} MiB |"
        )
    read = sum(d["bytes_read"] for d in res["slurm_workers"].values())
    lines += [
        "",
        f"Read by all workers: {read / size:.3f} x the volume (the halo is read "
        "twice); written: 1 x.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    slurm("start")
    try:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            res = measure(Path(tmp))
    finally:
        slurm("stop")
    (DOCS / "benchmarks-slurm.json").write_text(json.dumps(res, indent=2) + "\n")
    text = markdown(res)
    print(text)
    write_section(DOCS / "benchmarks.md", "slurm", "SLURM", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
