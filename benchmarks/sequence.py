"""Benchmarks of folders of TIFF slices (open_tiff_sequence) in napari.

    xvfb-run -a python benchmarks/sequence.py --workdir /big/disk   # ~10 min

A folder of ``--slices`` uncompressed 2D TIFFs (default 4096 of 1024 x 1024
uint16: 8 GiB; the issue's 2048 x 2048 slices would be 32 GiB, and the same
data as one file another 32 GiB, more than this machine's free disk holds
with room for the page cache, so the slices are 4x smaller and the count
the same) against the same data as one TIFF file.  Each measurement runs in
a fresh process (``worker.py``): ``open_tiff_sequence`` alone (time,
headers parsed); napari's open to the first drawn view and the z-step
latency (set_current_step to the canvas drawn, cold cache, 60 steps) with
this plugin for the folder and the file, and with napari's own folder
reader (``plugin="napari"``: a dask stack of imread calls); and
``napari_diskimage.copy`` of the folder (the kernel copies each slice's
pixels) against ``cat`` of the slices into one file, cold cache.  Results
go to ``docs/benchmarks.md`` between the ``sequence`` markers and to
``docs/benchmarks-sequence.json``.
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

from process import log, machine  # noqa: E402
from report import write_section  # noqa: E402
from worker import drop_caches  # noqa: E402

MiB = 1 << 20


def worker(op: str, args: dict, timeout: float = 600) -> dict:
    cmd = [sys.executable, str(HERE / "worker.py"), op, json.dumps(args)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"failed": (proc.stderr or proc.stdout)[-400:]}


def make_data(work: Path, n: int, y: int, x: int) -> tuple[Path, Path]:
    import numpy as np
    import tifffile

    folder = work / "slices"
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy = np.arange(y, dtype=np.float32)[:, None]
    xx = np.arange(x, dtype=np.float32)[None, :]
    noise = rng.integers(0, 300, (4, y, x), dtype=np.uint16)
    one = work / "one.tif"
    mm = tifffile.memmap(
        one, shape=(n, y, x), dtype=np.uint16, imagej=True, metadata={"axes": "ZYX"}
    )
    for k in range(n):
        plane = ((np.sin(xx / 57 + k / 40) * np.cos(yy / 43) + 1) * 1500).astype(
            np.uint16
        ) + noise[k % 4]
        tifffile.imwrite(folder / f"rec_{k:05d}.tif", plane)
        mm[k] = plane
    mm.flush()
    del mm
    return folder, one


def time_open(folder: Path) -> dict:
    code = (
        "import time, json, napari_diskimage as ndi; t = time.perf_counter(); "
        f"img = ndi.open_tiff_sequence({str(folder)!r}); "
        "s = time.perf_counter() - t; "
        "print(json.dumps({'seconds': s, 'headers': img.storage.headers_parsed, "
        "'shape': img.shape}))"
    )
    drop_caches()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_copy(folder: Path, work: Path) -> dict:
    """``copy`` and ``cat``, cold cache, twice each in turn (the VM's host
    caches the disk too: whichever ran first would pay for it); the best."""
    code = (
        "import time, json, os, napari_diskimage as ndi; "
        f"ndi.set_disk_image_dir({str(work)!r}); "
        f"img = ndi.open_tiff_sequence({str(folder)!r}); t = time.perf_counter(); "
        "out = ndi.copy(img); os.fsync(os.open(out.path, os.O_RDONLY)); "
        "s = time.perf_counter() - t; "
        "print(json.dumps({'seconds': s, 'bytes': out.nbytes}))"
    )
    files = sorted(folder.glob("*.tif"))
    copies, cats = [], []
    for _ in range(2):
        drop_caches()
        t0 = time.perf_counter()
        with open(work / "cat.raw", "wb") as fh:
            subprocess.run(["cat", *map(str, files)], stdout=fh, check=True)
            os.fsync(fh.fileno())
        cats.append(time.perf_counter() - t0)
        (work / "cat.raw").unlink()
        drop_caches()
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        copies.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(copies, key=lambda c: c["seconds"])
    return {"copy": best, "cat_seconds": min(cats), "all": [copies, cats]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--slices", type=int, default=4096)
    parser.add_argument("--size", type=int, default=1024, help="slice side (px)")
    args = parser.parse_args()
    base = Path(args.workdir or tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="ndi-bench-seq-", dir=base))
    n, side = args.slices, args.size
    results: dict = {"machine": machine(), "slices": n, "side": side}
    try:
        log(f"writing {n} slices of {side} x {side} uint16 and one file")
        folder, one = make_data(work, n, side, side)
        results["bytes"] = n * side * side * 2
        log("open_tiff_sequence")
        results["open"] = time_open(folder)
        for name, path, method in (
            ("folder, this plugin", folder, "plugin"),
            ("one file, this plugin", one, "plugin"),
            ("folder, napari's own reader", folder, "builtin"),
        ):
            log(f"viewer: {name}")
            row = {
                "open": worker("viewer_open", {"path": str(path), "method": method}),
                "zstep": worker(
                    "zstep", {"path": str(path), "method": method, "nz": n}
                ),
            }
            results[name] = row
        log("copy vs cat")
        results["copy"] = time_copy(folder, work)
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (DOCS / "benchmarks-sequence.json").write_text(json.dumps(results, indent=1))
    write_report(results)


def _f(value: object, fmt: str = ".2f", unit: str = "") -> str:
    return f"{value:{fmt}}{unit}" if isinstance(value, (int, float)) else "-"


def write_report(r: dict) -> None:
    o = r["open"]
    lines = [
        f"Run {r['machine']['date']}, {r['machine']['cpus']} cores: "
        f"{r['slices']} uncompressed slices of {r['side']} x {r['side']} uint16 "
        f"({r['bytes'] / (1 << 30):.0f} GiB; 4x smaller slices than the "
        "2048 x 2048 of the issue, for the disk's sake), cold cache.",
        "",
        f"`open_tiff_sequence`: {o['seconds'] * 1000:.0f} ms, "
        f"{o['headers']} header parsed, shape {tuple(o['shape'])}.",
        "",
        "| what | open to first view | z-step median | z-step p95 | notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in (
        "folder, this plugin",
        "one file, this plugin",
        "folder, napari's own reader",
    ):
        row = r.get(name, {})
        op, zs = row.get("open", {}), row.get("zstep", {})
        note = op.get("failed") or zs.get("failed") or ""
        lines.append(
            f"| {name} | {_f(op.get('time'), '.2f', ' s')} | "
            f"{_f(zs.get('cold_median'), '.0f', ' ms')} | "
            f"{_f(zs.get('cold_p95'), '.0f', ' ms')} | {note[:80]} |"
        )
    c = r["copy"]
    ratio = c["copy"]["seconds"] / c["cat_seconds"]
    lines += [
        "",
        f"`copy` of the folder into one scratch disk image: "
        f"{c['copy']['seconds']:.1f} s; `cat` of the slices into one file: "
        f"{c['cat_seconds']:.1f} s ({ratio:.2f} x; both with fsync, the best "
        "of two cold runs each, in turn).",
    ]
    text = "\n".join(lines) + "\n"
    write_section(DOCS / "benchmarks.md", "sequence", "Folders of slices", text)


if __name__ == "__main__":
    main()
