"""Benchmarks of out-of-core processing (napari_diskimage.process).

    python benchmarks/process.py                # 1 and 4 GiB (~10 min)
    python benchmarks/process.py --sizes 1      # quick

Against what a Python user does instead, on the same files in one run:
``scipy.ndimage`` on the whole array in memory, and ``dask_image`` on a
``tifffile.memmap`` stored into a numpy memmap (2 threads, warm cache).
Each measurement runs in a fresh process (``python process.py --one
...``) that samples its own anonymous memory (``RssAnon``, every 5 ms);
the 4 GiB runs are repeated under a 512 MiB memory cap (root: a memory
cgroup).  Volumes are (z, 2048, 4096) uint16 with smooth structure and
noise (64 planes: 1 GiB, 256 planes: 4 GiB), written to a temporary
folder on disk and deleted at the end.  Results go to the part of
``docs/benchmarks.md`` between the ``process`` markers, to
``docs/benchmarks-process.json`` and ``docs/benchmarks-process.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
sys.path.insert(0, str(HERE))

from report import write_section  # noqa: E402

GiB, MiB = 1 << 30, 1 << 20
PLANE = (2048, 4096)
CAP = 512 * MiB


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- one measurement, in its own process ------------------------------------
class AnonPeak:
    """Peak anonymous memory (RssAnon) of this process while running."""

    def __init__(self) -> None:
        self.base = self._now()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def _now() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._now())
            time.sleep(0.005)

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now())


def one(method: str, src: str, work: str) -> dict:
    """Run one measurement; return its figures."""
    import numpy as np

    os.environ["NAPARI_DISKIMAGE_DIR"] = work
    import napari_diskimage as ndi
    from napari_diskimage import process

    result: dict = {"method": method}
    image = ndi.open_raw(src) if src.endswith(".raw") else ndi.open_tiff(src)
    t0 = time.perf_counter()
    with AnonPeak() as mem:
        if method == "ndi-gaussian":
            out = process.gaussian(image, 2)
        elif method == "scipy-gaussian":
            import scipy.ndimage as sndi

            data = np.asarray(image.array[0, 0])
            out = sndi.gaussian_filter(data, 2)
        elif method == "daskimage-gaussian":
            import dask.array as da
            import tifffile
            from dask_image.ndfilters import gaussian_filter

            mm = tifffile.memmap(src)
            target = np.memmap(
                Path(work) / "dask-image-out.raw", np.uint16, "w+", shape=mm.shape
            )
            da.store(gaussian_filter(da.from_array(mm), 2), target, lock=False)
            target.flush()
            out = None
        elif method == "ndi-crop":  # all planes, whole rows, 3/4 of the rows
            z, y, x = image.shape[2:]
            out = process.crop(image, 0, y // 8, 0, x, y * 3 // 4, z)
        elif method == "ndi-convert":
            out = process.convert(image, "int16", rescale=False)
        elif method == "ndi-label":
            out = process.label(image)
            result["n_labels"] = int(np.asarray(out.array).max())
        elif method == "scipy-label":
            import scipy.ndimage as sndi

            labels, n = sndi.label(np.asarray(image.array[0, 0]))
            result["n_labels"] = int(n)
            out = labels
        else:
            raise SystemExit(f"unknown method {method}")
    result["seconds"] = time.perf_counter() - t0
    result["anon_added"] = mem.peak - mem.base
    result["anon_peak"] = mem.peak
    if method == "ndi-label":
        result["labels"] = str(out.path)
        out.save_raw(Path(work) / "ndi-labels.raw")
    if method == "scipy-label":
        np.save(Path(work) / "scipy-labels.npy", out)
    return result


# --- the driver ----------------------------------------------------------------
def run_one(method: str, src: Path, work: Path, cap: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--one", method, str(src), str(work)]
    drop_caches(warm=src)
    if cap is None:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            log(f"{method} failed: {proc.stderr[-2000:]}")
            return {"method": method, "failed": proc.stderr[-500:]}
        return json.loads(proc.stdout.strip().splitlines()[-1])
    import memcap

    res = memcap.run_capped(cap, cmd, timeout=1800)
    out = {"method": method, "cap": cap, "verdict": res.verdict}
    out["cgroup_peak"] = res.peak_bytes
    if res.returncode == 0:
        out.update(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def drop_caches(warm: Path) -> None:
    """Warm cache, as the baselines were measured: read the input once."""
    with open(warm, "rb") as fh:
        while fh.read(64 * MiB):
            pass


def time_cp(src: Path, work: Path, nbytes: int) -> float:
    """Seconds for ``cp`` of a file of ``nbytes`` (the kernel's copy)."""
    part = work / "cp-src.raw"
    with open(src, "rb") as fin, open(part, "wb") as fout:
        left = nbytes
        while left:
            buf = fin.read(min(left, 64 * MiB))
            fout.write(buf)
            left -= len(buf)
    drop_caches(part)
    t0 = time.perf_counter()
    subprocess.run(["cp", str(part), str(work / "cp-dst.raw")], check=True)
    seconds = time.perf_counter() - t0
    (work / "cp-dst.raw").unlink()
    part.unlink()
    return seconds


def make_volume(path: Path, planes: int) -> None:
    """A (planes, 2048, 4096) uint16 TIFF: smooth blobs and noise, streamed."""
    import numpy as np
    import scipy.ndimage as sndi
    import tifffile

    rng = np.random.default_rng(0)
    y, x = PLANE
    base = sndi.gaussian_filter(rng.random((16, y // 8, x // 8)), 2)
    base = (base - base.min()) / (base.max() - base.min())
    mm = tifffile.memmap(
        path, shape=(planes, y, x), dtype=np.uint16, imagej=True,
        metadata={"axes": "ZYX"},
    )  # fmt: skip
    for z in range(planes):
        coarse = np.kron(base[z % 16], np.ones((8, 8)))
        noise = rng.integers(0, 200, (y, x))
        mm[z] = (coarse * 3000 + noise).astype(np.uint16)
    mm.flush()
    del mm


def make_mask(src: Path, dst: Path) -> None:
    """A uint8 RAW mask of the volume (values > 1500): many components."""
    import numpy as np

    import napari_diskimage as ndi

    image = ndi.open_tiff(src)
    z = image.shape[2]
    with open(dst, "wb") as fh:
        for k in range(z):
            fh.write((np.asarray(image.array[0, 0, k]) > 1500).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 4])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "SRC", "WORK"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    base = Path(args.workdir or tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="ndi-bench-process-", dir=base))
    results: dict = {"machine": machine(), "sizes": {}}
    try:
        for size in args.sizes:
            planes = int(size * GiB // (PLANE[0] * PLANE[1] * 2))
            src = work / f"vol-{size:g}GiB.tif"
            log(f"writing {src.name} ({planes} planes)")
            make_volume(src, planes)
            nbytes = src.stat().st_size
            row: dict = {"planes": planes, "bytes": nbytes}
            for method in ("ndi-gaussian", "daskimage-gaussian", "scipy-gaussian"):
                if method == "scipy-gaussian" and size > 1:
                    continue  # 4 GiB + the result: see the capped run
                log(f"{size:g} GiB: {method}")
                row[method] = run_one(method, src, work)
                (work / "dask-image-out.raw").unlink(missing_ok=True)
            for method in ("ndi-crop", "ndi-convert"):
                log(f"{size:g} GiB: {method}")
                row[method] = run_one(method, src, work)
            z, y, x = planes, *PLANE
            row["cp-crop"] = time_cp(src, work, z * (y * 3 // 4) * x * 2)
            row["cp-convert"] = time_cp(src, work, z * y * x * 2)
            if size > 1 and os.geteuid() == 0:
                for method in ("ndi-gaussian", "scipy-gaussian"):
                    log(f"{size:g} GiB under a {CAP >> 20} MiB cap: {method}")
                    row[f"{method}-capped"] = run_one(method, src, work, cap=CAP)
            if size == 1:
                mask = work / f"mask_{x}x{y}x{z}_UInt8.raw"
                make_mask(src, mask)
                for method in ("ndi-label", "scipy-label"):
                    log(f"1 GiB mask: {method}")
                    row[method] = run_one(method, mask, work)
                row["label-same-partition"] = same_partition(work, (z, y, x))
                mask.unlink()
            results["sizes"][f"{size:g}"] = row
            src.unlink()
            json.dump(results, sys.stdout, indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (DOCS / "benchmarks-process.json").write_text(json.dumps(results, indent=1))
    write_report(results)


def same_partition(work: Path, shape: tuple[int, int, int]) -> bool:
    import numpy as np

    ours = np.memmap(work / "ndi-labels.raw", np.uint32, "r", shape=shape)
    ref = np.load(work / "scipy-labels.npy", mmap_mode="r")
    for z in range(shape[0]):  # plane by plane: bounded memory
        a, b = np.asarray(ours[z]).ravel(), np.asarray(ref[z]).ravel()
        if not np.array_equal(a > 0, b > 0):
            return False
    # one to one on all voxels: the pairs (ours, scipy) form a bijection
    pairs: set = set()
    for z in range(shape[0]):
        a, b = np.asarray(ours[z]).ravel(), np.asarray(ref[z]).ravel()
        keep = a > 0
        pairs |= set(zip(a[keep].tolist(), b[keep].tolist(), strict=True))
    left = {p[0] for p in pairs}
    right = {p[1] for p in pairs}
    return len(left) == len(pairs) == len(right)


def machine() -> dict:
    import platform

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def fmt_mem(n: int | None) -> str:
    return "-" if n is None else f"{n / MiB:.0f} MiB"


def write_report(results: dict) -> None:
    lines = [
        f"Run {results['machine']['date']}, {results['machine']['cpus']} cores, "
        "warm page cache, sigma 2 (halo 8), uint16 (z, 2048, 4096).",
        "",
        "| volume | method | time | anonymous memory added (peak) | notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size, row in results["sizes"].items():
        ref = row.get("scipy-gaussian", {}).get("seconds")
        dimg = row.get("daskimage-gaussian", {}).get("seconds")
        for method, label in (
            ("ndi-gaussian", "`process.gaussian`"),
            ("daskimage-gaussian", "dask-image on a memmap"),
            ("scipy-gaussian", "scipy in memory"),
        ):
            r = row.get(method)
            if not r or "seconds" not in r:
                continue
            notes = []
            if method == "ndi-gaussian":
                if ref:
                    notes.append(f"{r['seconds'] / ref:.2f} x scipy")
                if dimg:
                    notes.append(f"{r['seconds'] / dimg:.2f} x dask-image")
            lines.append(
                f"| {size} GiB | {label} gaussian | {r['seconds']:.1f} s | "
                f"{fmt_mem(r['anon_added'])} | {', '.join(notes)} |"
            )
        for method, cp_key, label in (
            ("ndi-crop", "cp-crop", "`process.crop` (whole rows)"),
            ("ndi-convert", "cp-convert", "`process.convert` uint16 to int16"),
        ):
            r = row.get(method)
            if r and "seconds" in r:
                lines.append(
                    f"| {size} GiB | {label} | {r['seconds']:.2f} s | "
                    f"{fmt_mem(r['anon_added'])} | `cp` of the same bytes "
                    f"{row[cp_key]:.2f} s: {r['seconds'] / row[cp_key]:.2f} x |"
                )
        for method in ("ndi-gaussian-capped", "scipy-gaussian-capped"):
            r = row.get(method)
            if r:
                lines.append(
                    f"| {size} GiB | {method.replace('-capped', '')} under a "
                    f"{r['cap'] >> 20} MiB cap | "
                    f"{r.get('seconds', 0):.1f} s | {fmt_mem(r.get('anon_added'))} "
                    f"| **{r['verdict']}** (cgroup peak with page cache "
                    f"{fmt_mem(r['cgroup_peak'])}) |"
                )
        for method, label in (
            ("ndi-label", "`process.label`"),
            ("scipy-label", "scipy.ndimage.label in memory"),
        ):
            r = row.get(method)
            if r and "seconds" in r:
                same = row.get("label-same-partition")
                lines.append(
                    f"| mask of the {size} GiB volume (uint8) | {label} | "
                    f"{r['seconds']:.1f} s | "
                    f"{fmt_mem(r['anon_added'])} | {r['n_labels']} components"
                    + (f"; same partition: {same}" if method == "ndi-label" else "")
                    + " |"
                )
    text = "\n".join(lines) + "\n"
    write_section(DOCS / "benchmarks.md", "process", "Processing", text)
    plot(results)


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = list(results["sizes"])
    methods = [
        ("ndi-gaussian", "process.gaussian"),
        ("daskimage-gaussian", "dask-image (memmap)"),
        ("scipy-gaussian", "scipy in memory"),
    ]
    width = 0.25
    for i, (key, label) in enumerate(methods):
        xs, ts, ms = [], [], []
        for j, size in enumerate(sizes):
            r = results["sizes"][size].get(key, {})
            if "seconds" in r:
                xs.append(j + (i - 1) * width)
                ts.append(r["seconds"])
                ms.append(r["anon_added"] / MiB)
        ax1.bar(xs, ts, width, label=label)
        ax2.bar(xs, ms, width, label=label)
    for ax, title in ((ax1, "gaussian sigma 2: time (s)"),
                      (ax2, "anonymous memory added (MiB)")):  # fmt: skip
        ax.set_xticks(range(len(sizes)), [f"{s} GiB" for s in sizes])
        ax.set_title(title)
    ax2.axhline(CAP / MiB, color="grey", linestyle=":", label="512 MiB")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(DOCS / "benchmarks-process.png", dpi=90)


if __name__ == "__main__":
    main()
