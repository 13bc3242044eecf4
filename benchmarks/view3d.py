"""Benchmarks of the 3D view: the bounded overview and the full-resolution box.

    xvfb-run -a python benchmarks/view3d.py --workdir /big/disk   # ~10 min

Each measurement runs in a fresh napari process (``--one``, under Xvfb):
it opens a volume with the plugin, shows the first 2D frame, drops the page
cache (root; "cold"), then switches to 3D and takes a screenshot (the time
to the first 3D frame), then shows a full-resolution box of about 512^3
voxels with the "3D box" tool.  Figures: time, bytes read from the file
(``DiskImage.bytes_read``) and anonymous memory added (``RssAnon``).  Two
pyramids are compared: ``overview`` (this plugin now) and ``z-kept`` (the
earlier pyramid, whose coarsest level kept every z plane: the overview
budget set to infinity).  Volumes: (z, y, x) uint16 written with real
data (4 and 16 GiB; a smooth field and noise), and a 64 GiB sparse file
(bytes and memory are real; its time is that of reading holes).  The
64 GiB runs are repeated under a 1 GiB memory cap for the whole process.
Results go to the part of ``docs/benchmarks.md`` between the ``view3d``
markers and ``docs/benchmarks-view3d.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
sys.path.insert(0, str(HERE))

from process import AnonPeak, fmt_mem, log, machine  # noqa: E402
from report import write_section  # noqa: E402

GiB, MiB = 1 << 30, 1 << 20
CAP = 1 * GiB


def drop_page_cache() -> bool:
    if os.geteuid() != 0:
        return False
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")
    return True


def one(mode: str, src: str, work: str) -> dict:
    os.environ["NAPARI_DISKIMAGE_DIR"] = work
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_diskimage._qt.box3d import BOX_KEY, Box3D
    from napari_diskimage.display import levels as _pyramid

    if mode == "z-kept":  # the pyramid before the overview: every z plane
        _pyramid.OVERVIEW_BYTES = _pyramid.OVERVIEW_VOXELS = 1 << 62
        _pyramid.OVERVIEW_SIDE = 1 << 40
    result: dict = {"mode": mode}
    viewer = napari.Viewer(show=True)
    t0 = time.perf_counter()
    viewer.open(src, plugin="napari-diskimage")
    [layer] = viewer.layers
    img = layer.metadata["disk_image"]
    viewer.screenshot(canvas_only=True, flash=False)
    result["open_and_first_2d_frame"] = time.perf_counter() - t0
    coarsest = layer.data[-1]
    result["level_3d"] = {
        "shape": list(coarsest.shape),
        "z_stride": coarsest.zfactor,
        "yx_stride": coarsest.factor,
    }
    result["cold"] = drop_page_cache()
    before = img.bytes_read
    with AnonPeak() as mem:
        t0 = time.perf_counter()
        viewer.dims.ndisplay = 3
        shot = viewer.screenshot(canvas_only=True, flash=False)
        result["switch_3d_seconds"] = time.perf_counter() - t0
    result["switch_3d_read"] = img.bytes_read - before
    result["switch_3d_anon_added"] = mem.peak - mem.base
    result["screenshot_std"] = float(shot[..., :3].mean(axis=-1).std())
    # the full-resolution box: a view about 512 pixels wide, ~512 planes
    viewer.dims.ndisplay = 2
    _, w = viewer.canvas.size
    viewer.scene.camera.zoom = w / 512
    tool = Box3D(viewer)
    drop_page_cache()
    before = img.bytes_read
    with AnonPeak() as mem:
        t0 = time.perf_counter()
        job = tool.show_region()
        while job is not None and not job.done:
            QApplication.processEvents()
            time.sleep(0.002)
        viewer.screenshot(canvas_only=True, flash=False)
        result["box_seconds"] = time.perf_counter() - t0
    if job is None or job.error is not None:
        result["box_failed"] = repr(getattr(job, "error", None))
    else:
        box = tool.box_layer.metadata[BOX_KEY]
        result["box_shape"] = list(box.shape)
        result["box_bytes"] = int(tool.box_layer.data.nbytes)
        result["box_read"] = img.bytes_read - before  # the 3D switch included
        result["box_anon_added"] = mem.peak - mem.base
    viewer.close()
    return result


def run_one(mode: str, src: Path, work: Path, cap: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--one", mode, str(src), str(work)]
    if cap is None:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            log(f"{mode} failed: {proc.stderr[-2000:]}")
            return {"mode": mode, "failed": proc.stderr[-500:]}
        return json.loads(proc.stdout.strip().splitlines()[-1])
    import memcap

    res = memcap.run_capped(cap, cmd, timeout=1200)
    out = {"mode": mode, "cap": cap, "verdict": res.verdict}
    out["cgroup_peak"] = res.peak_bytes
    if res.returncode == 0:
        out.update(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def make_volume(path: Path, shape: tuple[int, int, int], sparse: bool) -> None:
    """A (z, y, x) uint16 RAW file: smooth blobs and noise, or a sparse file
    with a bright block in its middle (so the 3D view has something)."""
    import numpy as np

    z, y, x = shape
    with open(path, "wb") as fh:
        fh.truncate(z * y * x * 2)
        if sparse:
            block = np.full((x // 3,), 30000, np.uint16).tobytes()
            for k in range(z // 3, 2 * z // 3, 4):
                for j in range(y // 3, 2 * y // 3, 4):
                    fh.seek(((k * y + j) * x + x // 3) * 2)
                    fh.write(block)
            return
        rng = np.random.default_rng(0)
        yy, xx = np.arange(y, dtype=np.float32), np.arange(x, dtype=np.float32)
        noise = rng.integers(0, 400, (4, y, x), dtype=np.uint16)
        fh.seek(0)
        for k in range(z):
            field = np.outer(np.cos(yy / 61 - k / 29), np.sin(xx / 97 + k / 13))
            fh.write(((field + 1) * 1500).astype(np.uint16) + noise[k % 4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--one", nargs=3, metavar=("MODE", "SRC", "WORK"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    base = Path(args.workdir or tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="ndi-bench-3d-", dir=base))
    results: dict = {"machine": machine(), "volumes": {}}
    volumes = (
        ("4 GiB", (256, 2048, 4096), False),
        ("16 GiB", (1024, 2048, 4096), False),
        ("64 GiB (sparse)", (1024, 4096, 8192), True),
    )
    try:
        for name, shape, sparse in volumes:
            z, y, x = shape
            src = work / f"vol_{x}x{y}x{z}_UInt16.raw"
            log(f"writing {name}: {src.name}")
            make_volume(src, shape, sparse)
            row: dict = {"shape": list(shape), "bytes": z * y * x * 2}
            for mode in ("overview", "z-kept"):
                log(f"{name}: {mode}")
                row[mode] = run_one(mode, src, work)
            if sparse and os.geteuid() == 0:
                for mode in ("overview", "z-kept"):
                    log(f"{name}: {mode} under a {CAP >> 20} MiB cap")
                    row[f"{mode}-capped"] = run_one(mode, src, work, cap=CAP)
            results["volumes"][name] = row
            src.unlink()
            json.dump(results, sys.stdout, indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (DOCS / "benchmarks-view3d.json").write_text(json.dumps(results, indent=1))
    write_report(results)


def write_report(results: dict) -> None:
    m = results["machine"]
    lines = [
        f"Run {m['date']}, {m['cpus']} cores, napari under Xvfb (Mesa llvmpipe); "
        "page cache dropped before the 3D switch and before the box.",
        "",
        "| volume | pyramid | 3D level (z, y, x) and strides | switch to 3D, "
        "first frame | read | memory added | 512^3 box: time, read, memory |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in results["volumes"].items():
        for mode in ("overview", "z-kept", "overview-capped", "z-kept-capped"):
            r = row.get(mode)
            if not r:
                continue
            label = mode.replace("-capped", f" under a {CAP >> 20} MiB cap")
            if "switch_3d_seconds" not in r:
                verdict = r.get("verdict") or r.get("failed", "failed")[:80]
                lines.append(f"| {name} | {label} | | **{verdict}** | | | |")
                continue
            lv = r["level_3d"]
            level = f"{tuple(lv['shape'])}, z/{lv['z_stride']}, yx/{lv['yx_stride']}"
            box = (
                f"{tuple(r['box_shape'])}: {r['box_seconds']:.2f} s, "
                f"{fmt_mem(r['box_read'])}, {fmt_mem(r['box_anon_added'])}"
                if "box_shape" in r
                else r.get("box_failed", "-")
            )
            verdict = f" ({r['verdict']})" if "verdict" in r else ""
            lines.append(
                f"| {name} | {label}{verdict} | {level} | "
                f"{r['switch_3d_seconds']:.2f} s | {fmt_mem(r['switch_3d_read'])} | "
                f"{fmt_mem(r['switch_3d_anon_added'])} | {box} |"
            )
    text = "\n".join(lines) + "\n"
    write_section(DOCS / "benchmarks.md", "view3d", "3D views", text)


if __name__ == "__main__":
    main()
