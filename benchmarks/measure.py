"""Benchmarks of measuring labelled volumes (napari_diskimage.measure).

    python benchmarks/measure.py --workdir /big/disk     # ~5 min, root for caps

A porous-like scan of 128 x 1024 x 2048 (uint16: a random field smoothed by
``process.gaussian``, thresholded and labelled by ``process.label``, all out
of core; ~80,000 pores), then, each in its own process, in the same run:

* ``measure.regionprops_table(labels, image, [label, area, bbox, centroid,
  intensity_mean])`` on the disk images, under a 512 MiB memory cap;
* ``skimage.measure.regionprops_table`` of the same on the arrays in memory
  (the load from the page cache is not counted);
* ``cc3d.statistics(labels)`` (counts, boxes, centroids only), in memory.

Then a 4 GiB uint32 labels volume (the labels tiled 2 x 2 in z and y, each
tile's ids sent to random ids up to ~4e9: 4 x the objects) measured under a
512 MiB cap.  Timings are wall-clock on a machine other jobs may share:
compare the rows of one run.  Results go to ``docs/benchmarks.md`` between
the ``measure`` markers and to ``docs/benchmarks-measure.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
sys.path.insert(0, str(HERE))

from process import log, machine  # noqa: E402
from report import write_section  # noqa: E402

MiB = 1 << 20
SHAPE = (128, 1024, 2048)
PROPS = ["label", "area", "bbox", "centroid", "intensity_mean"]
CAP = 512 * MiB

# Each measurement: load (not timed) and measure (timed) in a fresh process,
# printing RESULT {"seconds": ..., "objects": ..., "anon_peak": ...}.
COMMON = textwrap.dedent(
    """
    import json, sys, threading, time
    import numpy as np
    peak = [0]
    def watch():
        while True:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon"):
                        peak[0] = max(peak[0], int(line.split()[1]) << 10)
            time.sleep(0.02)
    threading.Thread(target=watch, daemon=True).start()
    labels_path, image_path = sys.argv[1], sys.argv[2]
    PROPS = PROPERTY_LIST
    def done(seconds, objects):
        time.sleep(0.05)
        print("RESULT " + json.dumps(
            {"seconds": seconds, "objects": int(objects), "anon_peak": peak[0]}))
    """
).replace("PROPERTY_LIST", repr(PROPS))

OURS = COMMON + textwrap.dedent(
    """
    import napari_diskimage as ndi
    from napari_diskimage import measure
    labels = ndi.open_tiff(labels_path)
    image = None if image_path == "-" else ndi.open_tiff(image_path)
    props = PROPS if image is not None else [p for p in PROPS if "intensity" not in p]
    t = time.perf_counter()
    table = measure.regionprops_table(labels, image, props)
    done(time.perf_counter() - t, len(table))
    """
)

SKIMAGE = COMMON + textwrap.dedent(
    """
    import tifffile
    from skimage.measure import regionprops_table
    labels, image = tifffile.imread(labels_path), tifffile.imread(image_path)
    t = time.perf_counter()
    table = regionprops_table(labels, image, properties=PROPS)
    done(time.perf_counter() - t, len(table["label"]))
    """
)

CC3D = COMMON + textwrap.dedent(
    """
    import tifffile, cc3d
    labels = tifffile.imread(labels_path)
    t = time.perf_counter()
    stats = cc3d.statistics(labels)
    done(time.perf_counter() - t, (stats["voxel_counts"][1:] > 0).sum())
    """
)


def make_scan(work: Path) -> tuple[Path, Path, int]:
    """The porous scan and its labels, as TIFF files in ``work``."""
    import numpy as np
    import tifffile

    import napari_diskimage as ndi
    from napari_diskimage import process

    noise = work / "noise.tif"
    rng = np.random.default_rng(0)
    z, y, x = SHAPE
    with tifffile.TiffWriter(noise, bigtiff=True) as tw:
        for _ in range(z):
            tw.write(rng.integers(0, 65535, (y, x), dtype=np.uint16), contiguous=True)
    with ndi.open_tiff(noise) as img:
        smooth = process.gaussian(img, 1.5)
    sample = np.asarray(smooth.array[0, 0, :8])
    low = float(np.quantile(sample, 0.76))
    mask = process.threshold(smooth, low)
    labels = process.label(mask)
    mask.close()
    image_path, labels_path = work / "scan.tif", work / "labels.tif"
    ndi.save_tiff(smooth, image_path)
    ndi.save_tiff(labels, labels_path)
    n = int(np.asarray(labels.array).max())
    smooth.close()
    labels.close()
    noise.unlink()
    return image_path, labels_path, n


def make_big(labels_path: Path, work: Path) -> tuple[Path, int, int]:
    """4 GiB of uint32 labels: the labels tiled 2 x 2 (z, y), each tile's ids
    mapped to random distinct ids up to ~4e9."""
    import numpy as np
    import tifffile

    src = tifffile.memmap(labels_path)
    n = int(src.max())
    rng = np.random.default_rng(1)
    ids = rng.choice(4_000_000_000, 4 * n, replace=False).astype(np.uint32) + 1
    zero = np.zeros(1, np.uint32)
    maps = [np.concatenate([zero, ids[i * n : (i + 1) * n]]) for i in range(4)]
    out = work / "big.tif"
    z, _y, _x = src.shape
    with tifffile.TiffWriter(out, bigtiff=True) as tw:
        for tz in range(2):
            for plane in range(z):
                rows = [maps[2 * tz + ty][src[plane]] for ty in range(2)]
                tw.write(np.concatenate(rows, axis=0), contiguous=True)
    del src
    return out, 4 * n, int(ids.max())


def run(script: str, args: list[str], cap: int | None) -> dict:
    cmd = [sys.executable, "-c", script, *args]
    if cap is not None and os.geteuid() == 0:
        import memcap

        res = memcap.run_capped(cap, cmd, timeout=1800)
        out, verdict, peak = res.stdout, res.verdict, res.peak_bytes
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        out, verdict, peak = proc.stdout, f"exit {proc.returncode}", None
        res = proc
    line = [x for x in out.splitlines() if x.startswith("RESULT ")]
    result = json.loads(line[-1][7:]) if line else {"failed": res.stderr[-800:]}
    result["verdict"] = verdict
    result["cgroup_peak"] = peak
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    base = Path(args.workdir or tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="ndi-bench-measure-", dir=base))
    os.environ["NAPARI_DISKIMAGE_DIR"] = str(work / "scratch")
    results: dict = {"machine": machine(), "shape": SHAPE, "properties": PROPS}
    try:
        log("porous scan: noise, gaussian, threshold, label (out of core)")
        image_path, labels_path, n = make_scan(work)
        results["objects"] = n
        paths = [str(labels_path), str(image_path)]
        log(f"{n} objects; measure under a 512 MiB cap")
        results["ours"] = run(OURS, paths, CAP)
        log("skimage in memory")
        results["skimage"] = run(SKIMAGE, paths, 6 << 30)
        log("cc3d.statistics in memory")
        results["cc3d"] = run(CC3D, paths, 6 << 30)
        log("4 GiB uint32 labels, ids up to ~4e9")
        big, big_n, top = make_big(labels_path, work)
        results["big"] = {
            "expected": big_n,
            "max_id": top,
            "bytes": big.stat().st_size,
            **run(OURS, [str(big), "-"], CAP),
        }
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (DOCS / "benchmarks-measure.json").write_text(json.dumps(results, indent=1))
    write_report(results)


def _mib(n: int | None) -> str:
    return "-" if not n else f"{n / MiB:.0f} MiB"


def write_report(r: dict) -> None:
    m = r["machine"]
    z, y, x = r["shape"]
    ours, sk, cc = r["ours"], r["skimage"], r["cc3d"]
    lines = [
        f"Run {m['date']}, {m['cpus']} cores, other jobs sharing the machine "
        "(compare rows of this run).",
        "",
        f"A porous scan of {z} x {y} x {x} (uint16 image, uint32 labels from "
        f"`process.label`, {r['objects']:,} objects); properties "
        f"{', '.join(r['properties'])}. Time of the measurement alone (loading "
        "the arrays for the in-memory peers is not counted).",
        "",
        "| method | time | x skimage | peak memory (anonymous) | cgroup peak | "
        "objects |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base = sk.get("seconds")
    for name, res in (
        ("**measure.regionprops_table** (disk images, 512 MiB cap)", ours),
        ("skimage.measure.regionprops_table (in memory)", sk),
        ("cc3d.statistics (counts, boxes, centroids only; in memory)", cc),
    ):
        if "seconds" not in res:
            lines.append(f"| {name} | failed: {res['verdict']} | | | | |")
            continue
        ratio = f"{res['seconds'] / base:.2f}" if base else "-"
        lines.append(
            f"| {name} | {res['seconds']:.2f} s | {ratio} | "
            f"{_mib(res['anon_peak'])} | {_mib(res['cgroup_peak'])} | "
            f"{res['objects']:,} |"
        )
    b = r["big"]
    if "seconds" in b:
        big = (
            f"{b['seconds']:.1f} s, anonymous peak {_mib(b['anon_peak'])}, "
            f"cgroup peak {_mib(b['cgroup_peak'])} (page cache included), "
            f"{b['objects']:,} objects found of {b['expected']:,} expected"
        )
    else:
        big = f"failed: {b['verdict']} {b.get('failed', '')[:200]}"
    lines += [
        "",
        f"4 GiB uint32 labels ({b['bytes'] / 2**30:.1f} GiB file, the labels "
        f"above tiled 2 x 2 with ids sent to random ids up to {b['max_id']:,}), "
        f"label, area, bbox, centroid under a 512 MiB cap: **{b['verdict']}**, "
        f"{big}.",
    ]
    text = "\n".join(lines) + "\n"
    write_section(DOCS / "benchmarks.md", "measure", "Measuring labels", text)


if __name__ == "__main__":
    main()
