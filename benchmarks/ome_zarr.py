"""Benchmarks of OME-Zarr conversion and opening (issue 23).

    python benchmarks/ome_zarr.py            # 512 MiB and 4 GiB (~10 min)
    python benchmarks/ome_zarr.py --quick    # 512 MiB only

Each measurement runs in a fresh process under a memory cgroup
(``benchmarks/memcap.py``); the peak reported is the process's own peak
anonymous memory (``RssAnon``, sampled every 10 ms: page cache and mapped
file pages excluded) beside the cgroup's peak (page cache included).

* the 512 MiB porous TIFF (the large sample's synthetic micro-CT volume,
  1024 x 2048 x 128 uint16) to OME-Zarr 0.5 with its pyramid:
  ``save_ome_zarr`` against ome-zarr-py's ``write_image`` (default resize
  pyramid; it needs the array in memory: ``tifffile.imread`` first, counted
  in its time) in the same run, both under a 6 GiB cap;
* a 4 GiB TIFF of the same kind converted under a 512 MiB cap, in GB/min
  of input, against ``cp`` of the same file (kernel copy, no pyramid);
* opening: ``open_zarr`` of the 4 GiB store against ``open_tiff`` of the
  TIFF (median of 5 fresh processes), and the time to read one whole
  finest plane, z after z (p95 of 16 steps), from each.

Results go between the ``ome-zarr`` markers of ``docs/benchmarks.md``.

    python benchmarks/ome_zarr.py --process-napari [--size 512M]

measures instead, each in a fresh process under a 2 GiB cap, written
between the ``ome-zarr-process`` markers:

* ``process.gaussian(image, 2)`` of the porous TIFF into a scratch disk
  image, the same with ``out="x.ome.zarr"`` (the result written straight
  into the store, with its pyramid), and the scratch result then saved
  with ``save_ome_zarr`` (what a user did before ``out=``);
* napari's own slicing of the layers our reader makes of the TIFF and of
  the same volume saved as OME-Zarr (``napari.components.ViewerModel``,
  no canvas: level 0 locked, the whole plane, 32 steps z -> z + 1 after a
  first plane, as scrolling does): step p50 and p95.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import memcap  # noqa: E402
from report import write_section  # noqa: E402

MiB, GiB = 1 << 20, 1 << 30

PEAK = """
import threading, time
_peak = [0]
def _watch():
    while True:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    _peak[0] = max(_peak[0], int(line.split()[1]) << 10)
        time.sleep(0.01)
threading.Thread(target=_watch, daemon=True).start()
"""

METHODS = {
    "ours": """
import napari_diskimage as ndi
t = time.perf_counter()
with ndi.open_tiff(src) as image:
    ndi.save_ome_zarr(image, out)
seconds = time.perf_counter() - t
""",
    "ome-zarr-py": """
import tifffile, zarr
from ome_zarr.writer import write_image
t = time.perf_counter()
data = tifffile.imread(src)
root = zarr.open_group(out, mode="w")
write_image(data, root, axes="zyx")
seconds = time.perf_counter() - t
""",
    "open_zarr": """
import napari_diskimage as ndi
t = time.perf_counter()
import zarr  # once per process (napari imports it too)
import_seconds = time.perf_counter() - t
t = time.perf_counter()
image = ndi.open_zarr(out)
seconds = time.perf_counter() - t
steps = []
for z in range(16):
    t = time.perf_counter()
    image.load_plane(z=z)
    steps.append(time.perf_counter() - t)
""",
    "gaussian_scratch": """
import napari_diskimage as ndi
from napari_diskimage import process
t = time.perf_counter()
with ndi.open_tiff(src) as image, process.gaussian(image, 2) as res:
    pass
seconds = time.perf_counter() - t
""",
    "gaussian_out": """
import napari_diskimage as ndi
from napari_diskimage import process
t = time.perf_counter()
with ndi.open_tiff(src) as image, process.gaussian(image, 2, out=out) as res:
    pass
seconds = time.perf_counter() - t
""",
    "gaussian_scratch_then_save": """
import napari_diskimage as ndi
from napari_diskimage import process
t = time.perf_counter()
with ndi.open_tiff(src) as image, process.gaussian(image, 2) as res:
    ndi.save_ome_zarr(res, out)
seconds = time.perf_counter() - t
""",
    "napari_steps": """
import napari
from napari.components import ViewerModel
from napari_diskimage._napari.reader import napari_get_reader
path = out if out.endswith(".zarr") else src
viewer = ViewerModel()
t = time.perf_counter()
(data, kwargs, kind), *_ = napari_get_reader(path)()
layer = viewer.add_image(data, **kwargs)
layer.locked_data_level = 0  # slices the first plane at level 0
seconds = time.perf_counter() - t  # open, layer, first plane
for z in range(1, 33):
    t = time.perf_counter()
    viewer.dims.set_current_step(0, z)
    steps.append(time.perf_counter() - t)
shown = layer._slice.image.raw.shape[-2:]
assert shown == tuple(data[0].shape[-2:]), shown  # level 0, the whole plane
""",
    "open_tiff": """
import napari_diskimage as ndi
t = time.perf_counter()
image = ndi.open_tiff(src)
seconds = time.perf_counter() - t
steps = []
for z in range(16):
    t = time.perf_counter()
    image.load_plane(z=z)
    steps.append(time.perf_counter() - t)
""",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def measure(method: str, src: Path, out: Path, cap: int) -> dict:
    code = (
        "import sys, time, json\n"
        + PEAK
        + f"src, out = {str(src)!r}, {str(out)!r}\nsteps = []\nimport_seconds = 0\n"
        + METHODS[method]
        + "print('RESULT ' + json.dumps({'seconds': seconds, 'anon': _peak[0],"
        " 'steps': steps, 'import': import_seconds}))\n"
    )
    result = memcap.run_capped(cap, [sys.executable, "-c", code], timeout=3600)
    row: dict = {
        "method": method,
        "cap_mib": cap // MiB,
        "verdict": result.verdict,
        "cgroup_peak_mib": round(result.peak_bytes / MiB),
    }
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            found = json.loads(line[7:])
            row["seconds"] = round(found["seconds"], 3)
            row["anon_peak_mib"] = round(found["anon"] / MiB)
            row["import_ms"] = round(1000 * found["import"], 1)
            if found["steps"]:
                steps = sorted(found["steps"])
                row["step_p95_ms"] = round(
                    1000 * steps[int(0.95 * (len(steps) - 1))], 1
                )
                row["step_max_ms"] = round(1000 * steps[-1], 1)
    if result.returncode != 0:
        row["error"] = result.stderr[-500:]
    log(json.dumps(row))
    return row


def make_tiff(path: Path, size: str) -> int:
    """The large sample's porous volume of ``size`` as an ImageJ TIFF."""
    from napari_diskimage._napari.samples import (
        _SyntheticVolume,
        large_sample_geometry,
    )
    from napari_diskimage.io.save import save_tiff

    geometry = large_sample_geometry(size)
    save_tiff(_SyntheticVolume(geometry), path)
    log(f"wrote {path.name}: {geometry} ({path.stat().st_size / MiB:.0f} MiB)")
    return geometry.nbytes


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cp_seconds(src: Path, dst: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    seconds = time.perf_counter() - t
    dst.unlink()
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="512 MiB only")
    parser.add_argument("--workdir", help="a folder on disk (default: a temp dir)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--process-napari",
        action="store_true",
        help="process with out=.ome.zarr and napari z-steps (see the module)",
    )
    parser.add_argument("--size", default="512M", help="with --process-napari")
    parser.add_argument(
        "--zstep-chunks",
        nargs="+",
        metavar="Z,Y,X",
        help="napari z-steps of stores saved with these chunks (printed only)",
    )
    parser.add_argument(
        "--viewport",
        type=int,
        default=0,
        metavar="PX",
        help="--zstep-chunks: a canvas of PX x PX screen pixels at full "
        "resolution (napari reads only what it shows); 0: the whole plane",
    )
    parser.add_argument(
        "--no-prefetch",
        action="store_true",
        help="--zstep-chunks: without decoding the next chunk row ahead (A/B)",
    )
    parser.add_argument(
        "--pace",
        type=float,
        nargs="+",
        default=[0.0, 40.0],
        metavar="MS",
        help="--zstep-chunks: pauses between steps (40 ms: a held key's repeat)",
    )
    args = parser.parse_args(argv)
    if args.zstep_chunks:
        return zstep_chunks(args)
    if args.process_napari:
        return process_napari(args)
    if not memcap.available():
        raise SystemExit("needs root and a memory cgroup (benchmarks/memcap.py)")
    work = Path(tempfile.mkdtemp(prefix="ndi-omezarr-", dir=args.workdir))
    rows: dict = {}
    try:
        src = work / "porous512.tif"
        nbytes = make_tiff(src, "512M")
        for method in ("ours", "ome-zarr-py"):
            out = work / f"{method}.ome.zarr"
            row = measure(method, src, out, 6 * GiB)
            row["store_mib"] = round(du(out) / MiB) if out.exists() else None
            rows[method] = row
            shutil.rmtree(out, ignore_errors=True)
        rows["input_mib"] = round(nbytes / MiB)
        if not args.quick:
            big = work / "porous4g.tif"
            nbytes = make_tiff(big, "4G")
            src.unlink()
            out = work / "big.ome.zarr"
            row = measure("ours", big, out, 512 * MiB)
            row["store_mib"] = round(du(out) / MiB)
            meta = json.loads((out / "0" / "zarr.json").read_text())
            chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
            row["chunks"] = " x ".join(str(c) for c in chunks)
            row["gb_per_min"] = round(nbytes / 1e9 / (row["seconds"] / 60), 2)
            rows["big"] = row
            cp = cp_seconds(big, work / "copy.tif")
            rows["cp"] = {
                "seconds": round(cp, 2),
                "gb_per_min": round(nbytes / 1e9 / (cp / 60), 2),
            }
            log(f"cp: {rows['cp']}")
            rows["big_input_mib"] = round(nbytes / MiB)
            for method in ("open_zarr", "open_tiff"):
                runs = [measure(method, big, out, 512 * MiB) for _ in range(5)]
                ok = [r for r in runs if "seconds" in r]
                rows[method] = {
                    "open_ms": round(
                        1000 * statistics.median(r["seconds"] for r in ok), 1
                    ),
                    "import_ms": statistics.median(r["import_ms"] for r in ok),
                    "step_p95_ms": statistics.median(r["step_p95_ms"] for r in ok),
                }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(rows, indent=1))
    if not args.no_write:
        write_section(
            HERE.parent / "docs" / "benchmarks.md", "ome-zarr", "OME-Zarr (issue 23)",
            markdown(rows),
        )  # fmt: skip


def zstep_chunks(args: argparse.Namespace) -> None:
    """napari z-steps (p50 / p95 / max of 32, level 0) of the porous volume
    as a TIFF and saved with each chunk shape, in one process."""
    from napari.components import ViewerModel

    import napari_diskimage as ndi
    from napari_diskimage._napari.reader import napari_get_reader

    if args.no_prefetch:
        from napari_diskimage.storage import zarr_array

        zarr_array.prefetch_next_row = lambda *_: None  # type: ignore[assignment]
    work = Path(tempfile.mkdtemp(prefix="ndi-zstep-", dir=args.workdir))
    try:
        src = work / "porous.tif"
        make_tiff(src, args.size)
        for text in args.zstep_chunks:
            chunks = tuple(int(v) for v in text.split(","))
            store = work / "p.ome.zarr"
            ndi.save_ome_zarr(ndi.open_tiff(src), store, chunks=chunks)
            for path, pace in itertools.product((src, store), args.pace):
                viewer = ViewerModel()
                (data, kwargs, _), *_ = napari_get_reader(str(path))()
                layer = viewer.add_image(data, **kwargs)
                layer.locked_data_level = 0
                if args.viewport:  # what a canvas of that size draws
                    import numpy as np

                    n = args.viewport
                    layer._update_draw(1.0, np.array([[0, 0], [n - 1, n - 1]]), (n, n))
                steps = []
                for z in range(1, 33):
                    time.sleep(pace / 1000)
                    t = time.perf_counter()
                    viewer.dims.set_current_step(0, z)
                    steps.append(1000 * (time.perf_counter() - t))
                steps.sort()
                log(
                    f"{text} {path.name} pace {pace:g} ms: "
                    f"p50 {statistics.median(steps):.1f} "
                    f"p95 {steps[int(0.95 * 31)]:.1f} max {steps[-1]:.1f} ms"
                )
                viewer.layers.clear()
                del data
            shutil.rmtree(store)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def process_napari(args: argparse.Namespace) -> None:
    if not memcap.available():
        raise SystemExit("needs root and a memory cgroup (benchmarks/memcap.py)")
    work = Path(tempfile.mkdtemp(prefix="ndi-omezarr-", dir=args.workdir))
    os.environ["NAPARI_DISKIMAGE_DIR"] = str(work / "scratch")
    rows: dict = {"load_before": round(os.getloadavg()[0], 1)}
    try:
        src = work / "porous.tif"
        rows["input_mib"] = round(make_tiff(src, args.size) / MiB)
        methods = ("gaussian_scratch", "gaussian_out", "gaussian_scratch_then_save")
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for _ in range(3):  # interleaved: the machine's load hits all alike
            for method in methods:
                out = work / "g.ome.zarr"
                runs[method].append(measure(method, src, out, 2 * GiB))
                shutil.rmtree(out, ignore_errors=True)
        for method, done in runs.items():
            ok = [r for r in done if "seconds" in r]
            rows[method] = {
                "seconds": sorted(r["seconds"] for r in ok),
                "anon_peak_mib": max((r["anon_peak_mib"] for r in ok), default="?"),
                "errors": [r["error"] for r in done if "error" in r],
            }
        store = work / "porous.ome.zarr"
        code = (
            "import napari_diskimage as ndi; "
            f"ndi.save_ome_zarr(ndi.open_tiff({str(src)!r}), {str(store)!r})"
        )
        subprocess.run([sys.executable, "-c", code], check=True)
        meta = json.loads((store / "0" / "zarr.json").read_text())
        rows["chunks"] = " x ".join(
            str(c) for c in meta["chunk_grid"]["configuration"]["chunk_shape"]
        )
        for name, out in (("tiff", work / "none"), ("zarr", store)):
            runs = [measure("napari_steps", src, out, 2 * GiB) for _ in range(3)]
            ok = [r for r in runs if "seconds" in r]
            rows[f"napari_{name}"] = {
                "first_ms": round(
                    1000 * statistics.median(r["seconds"] for r in ok), 1
                ),
                "p95_ms": statistics.median(r["step_p95_ms"] for r in ok),
                "max_ms": statistics.median(r["step_max_ms"] for r in ok),
                "runs": len(ok),
                "errors": [r["error"] for r in runs if "error" in r],
            }
        rows["load_after"] = round(os.getloadavg()[0], 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(rows, indent=1))
    if not args.no_write:
        write_section(
            HERE.parent / "docs" / "benchmarks.md", "ome-zarr-process",
            "OME-Zarr results of processing (issue 23)", markdown_process(rows),
        )  # fmt: skip


def markdown_process(rows: dict) -> str:
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} by `python benchmarks/ome_zarr.py "
        "--process-napari` (2 cores shared with other work; load average "
        f"{rows['load_before']} before, {rows['load_after']} after: times are "
        "noisy). Each in a fresh process under a 2 GiB cap; peak: the process's "
        "own anonymous memory.",
        "",
        f"**gaussian (sigma 2) of the {rows['input_mib']} MiB porous TIFF**:",
        "",
        "| result | time (s), 3 runs interleaved | peak anon (MiB) |",
        "| --- | ---: | ---: |",
    ]
    for key, name in (
        ("gaussian_scratch", "scratch disk image (raw)"),
        ("gaussian_out", '**`out="x.ome.zarr"`** (chunks + pyramid)'),
        ("gaussian_scratch_then_save", "scratch, then `save_ome_zarr`"),
    ):
        row = rows[key]
        times = ", ".join(f"{t:.1f}" for t in row["seconds"]) or str(row["errors"])
        lines.append(f"| {name} | {times} | {row['anon_peak_mib']} |")
    lines += [
        "",
        "`out=` writes no raw scratch file: each block (a thread's, or a "
        "cluster worker's) writes its compressed chunks and its means into the "
        "coarser levels as it lands (whole chunks there too: their chunks are "
        "the finest ones reduced by the level's factors), so level 0 is never "
        "read back. What it costs over the scratch result is the compression "
        "(blosc zstd) of level 0 in the blocks.",
    ]
    t, z = rows["napari_tiff"], rows["napari_zarr"]
    lines += [
        "",
        "**napari z-steps** through the layers our reader makes (napari's own "
        "slicing, `ViewerModel`, level 0 locked, whole plane; median of "
        f"{min(t['runs'], z['runs'])} fresh processes):",
        "",
        "| file | open + layer + first plane (ms) | z -> z+1: p95 of 32 (ms) "
        "| slowest step (ms) |",
        "| --- | ---: | ---: | ---: |",
        f"| TIFF (memory-mapped) | {t['first_ms']} | {t['p95_ms']} | {t['max_ms']} |",
        f"| OME-Zarr (chunks {rows['chunks']}, zstd) | {z['first_ms']} | "
        f"{z['p95_ms']} | {z['max_ms']} |",
        "",
        "A step into the next z-chunk row of the store decodes the whole row "
        "(every chunk of those planes): the slowest step; the others come from "
        "the chunk cache. The TIFF reads each plane from the page cache.",
        "",
    ]
    return "\n".join(lines)


def markdown(rows: dict) -> str:
    ours, peer = rows["ours"], rows["ome-zarr-py"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} by `python benchmarks/ome_zarr.py` "
        "(2 cores shared with other work: times are noisy; both tools ran in "
        f"the same run; load average at the end {os.getloadavg()[0]:.1f}). "
        "Peak: the process's own anonymous memory.",
        "",
        f"**{rows['input_mib']} MiB porous TIFF to OME-Zarr 0.5 with its pyramid** "
        "(6 GiB cap):",
        "",
        "| tool | time (s) | peak anon (MiB) | store (MiB) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, row in (("save_ome_zarr (mean pyramid)", ours),
                      ("ome-zarr-py write_image (resize pyramid)", peer)):  # fmt: skip
        lines.append(
            f"| {name} | {row.get('seconds', row.get('error', '?'))} | "
            f"{row.get('anon_peak_mib', '?')} | {row.get('store_mib', '?')} |"
        )
    if "seconds" in ours and "seconds" in peer:
        ratio = ours["seconds"] / peer["seconds"]
        small = "yes" if ours["anon_peak_mib"] < 256 else "no"
        lines += ["", f"Ours / ome-zarr-py time: {ratio:.2f} (target at most 0.5); "
                  f"ours under 256 MiB: {small}."]  # fmt: skip
    if "big" in rows:
        big, cp = rows["big"], rows["cp"]
        lines += [
            "",
            f"**{rows['big_input_mib']} MiB under a 512 MiB cap**: "
            f"{big.get('seconds')} s ({big.get('gb_per_min')} GB/min of input, "
            f"peak anon {big.get('anon_peak_mib')} MiB, cgroup "
            f"{big.get('verdict')}); `cp` of the same file: {cp['seconds']} s "
            f"({cp['gb_per_min']} GB/min). Store: {big.get('store_mib')} MiB.",
            "",
            "| open (median of 5 runs) | import zarr (ms) | open (ms) "
            "| whole plane, z-step p95 (ms) |",
            "| --- | ---: | ---: | ---: |",
            f"| open_zarr (chunks {big.get('chunks')}) | "
            f"{rows['open_zarr']['import_ms']} | {rows['open_zarr']['open_ms']} | "
            f"{rows['open_zarr']['step_p95_ms']} |",
            f"| open_tiff (memory-mapped) | | {rows['open_tiff']['open_ms']} | "
            f"{rows['open_tiff']['step_p95_ms']} |",
            "",
            "Opening reads the store's metadata only; `import zarr` is paid once "
            "per process (napari imports it anyway). A whole plane of the store "
            "decodes every chunk of its z-chunk row (one zarr read, chunks "
            "decoded in parallel) the first time; the next planes of that row "
            "come from the chunk cache (128 MiB). The z-step is `load_plane` of "
            "a whole 4096 x 2048 plane, not a napari canvas.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
