"""Benchmarks of the view cache (issue 24).

    python benchmarks/view_cache.py            # a 2 GiB volume (~5 min)
    python benchmarks/view_cache.py --size 512M

* building the view cache of the large sample's porous TIFF under a
  512 MiB memory cap (``benchmarks/memcap.py``), against ``cp`` of the
  same file;
* YZ and XZ x-steps (y-steps): one whole plane read per step, p95 of 16
  steps, from a cold page cache (``echo 3 > /proc/sys/vm/drop_caches``
  before each run, as root), from the cache against from the TIFF.

Each measurement runs in a fresh process.  Results go between the
``view-cache`` markers of ``docs/benchmarks.md``.
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

BUILD = """
import napari_diskimage as ndi
t = time.perf_counter()
with ndi.open_tiff(src) as image:
    ndi.view_cache(image).close()
seconds = time.perf_counter() - t
"""

# One whole plane per step, x (YZ) or y (XZ) moving by one pixel.
STEPS = """
import os
import numpy as np
import napari_diskimage as ndi
image = ndi.open_tiff(src)
if use_cache:
    image = ndi.view_cache(image, build=False)
    assert image is not None
_, _, nz, ny, nx = image.shape
steps = []
start = (nx if axis == "x" else ny) // 3
for i in range(16):
    if cold_each:  # as a volume larger than the page cache: from the disk
        if not use_cache:  # pages mapped by this process survive drop_caches
            image.close()
            image = ndi.open_tiff(src)
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3")
    t = time.perf_counter()
    # a copy: a plane of a mapped file is a view until its pixels are read
    if axis == "x":
        plane = np.array(image[0, 0, :, :, start + i], copy=True)
    else:
        plane = np.array(image[0, 0, :, start + i, :], copy=True)
    steps.append(time.perf_counter() - t)
seconds = sum(steps)
"""

# The same steps through napari's slicing of the layer: dims rolled as
# napari-orthogonal-views' extra viewers roll them, full resolution.  The
# run without a cache points the disk-image directory at an empty folder.
NAPARI_STEPS = """
import os
os.environ["NAPARI_DISKIMAGE_DIR"] = caches
import numpy as np
from napari.components import ViewerModel
import napari_diskimage as ndi
from napari_diskimage._napari.reader import disk_image_layers
if not prefetch:  # XZ rows read one by one, as before issue 24's follow-up
    from napari_diskimage.display import levels
    levels.prefetch_xz = lambda *args: None
if not slab_prefetch:  # A/B: YZ without the next slab decoded ahead
    from napari_diskimage.display.slab_prefetch import SlabPrefetch
    SlabPrefetch.after_read = lambda *args: None
image = ndi.open_tiff(src)
assert (ndi.view_cache(image, build=False) is not None) == use_cache
viewer = ViewerModel()
[(data, kwargs, _)] = disk_image_layers(image)
layer = viewer.add_image(data, **kwargs)
layer.locked_data_level = 0
_, _, nz, ny, nx = image.shape
axis_index = 2 if axis == "x" else 1
start = (nx if axis == "x" else ny) // 3
if n_steps > 16:  # the first view half-way through a slab of 64 columns
    start = start // 64 * 64 + 32
viewer.dims.set_current_step(axis_index, start - 1)
os.sync()
with open("/proc/sys/vm/drop_caches", "w") as fh:
    fh.write("3")
t = time.perf_counter()
viewer.dims.order = (2, 0, 1) if axis == "x" else (1, 0, 2)  # the first view
# no canvas here to set the visible region of the rolled view: the whole plane
layer.locked_data_level = 0
layer.refresh()
first = time.perf_counter() - t
assert layer._slice.image.raw.shape == (nz, ny if axis == "x" else nx)
for i in range(n_steps):
    time.sleep(pause)  # a user's steps leave time for the decode ahead
    if cold_each:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3")
    t = time.perf_counter()
    viewer.dims.set_current_step(axis_index, start + i)
    steps.append(time.perf_counter() - t)
    if axis == "x" and (start + i) % 64 == 0:  # into the next 64-column slab
        crossings.append(steps[-1])
assert layer._slice.image.raw.shape == (nz, ny if axis == "x" else nx)
seconds = first
"""


# Zoomed-out XY planes (2D levels 1 and 2) z-step by z-step, from the file
# (strided samples) and, once the cache exists, from its mean levels.
XY_LEVELS = """
import os
import numpy as np
import napari_diskimage as ndi
from napari_diskimage.display import display_levels
image = ndi.open_tiff(src)
nz = image.shape[2]
if not prefetch:  # A/B: without decoding the next chunk row ahead
    from napari_diskimage.storage import zarr_array
    zarr_array.prefetch_next_row = lambda *_: None
def run_steps(levels, k, n=16):
    out = []
    for i in range(n):
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3")
        t = time.perf_counter()
        np.asarray(levels[k][nz // 3 + i])
        out.append(time.perf_counter() - t)
    return out
steps = run_steps(display_levels(image), level)
if use_cache:
    ndi.view_cache(image).close()
    steps = run_steps(display_levels(image), level)
seconds = sum(steps)
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def run(code: str, env: dict[str, str], cap: int) -> dict:
    script = (
        "import sys, time, json\n"
        + PEAK
        + "steps = []\ncrossings = []\n"
        + "".join(f"{k} = {v!r}\n" for k, v in env.items())
        + code
        + "print('RESULT ' + json.dumps({'seconds': seconds, 'anon': _peak[0],"
        " 'steps': steps, 'crossings': crossings}))\n"
    )
    result = memcap.run_capped(cap, [sys.executable, "-c", script], timeout=3600)
    row: dict = {
        "verdict": result.verdict,
        "cgroup_peak_mib": round(result.peak_bytes / MiB),
    }
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            found = json.loads(line[7:])
            row["seconds"] = round(found["seconds"], 2)
            row["anon_peak_mib"] = round(found["anon"] / MiB)
            if found["steps"]:
                steps = sorted(found["steps"])
                row["p95_ms"] = round(1000 * steps[int(0.95 * (len(steps) - 1))], 1)
                # a step into the next 64-column slab of chunks decodes it:
                # the slowest step, left out of the p95 of 16 steps
                row["max_ms"] = round(1000 * steps[-1], 1)
                row["first_ms"] = round(1000 * found["steps"][0], 1)
                row["steps"] = len(steps)
                row["steps_ms"] = [round(1000 * s, 1) for s in found["steps"]]
                if found.get("crossings"):  # each step into a new slab
                    row["slab_ms"] = [round(1000 * s, 1) for s in found["crossings"]]
    if result.returncode != 0:
        row["error"] = result.stderr[-500:]
    row["load"] = round(os.getloadavg()[0], 1)  # the machine is shared
    log(json.dumps(row))
    return row


def make_tiff(path: Path, size: str, shape: str | None = None) -> str:
    import numpy as np

    from napari_diskimage import Geometry
    from napari_diskimage._napari.samples import _SyntheticVolume, large_sample_geometry
    from napari_diskimage.io import save_tiff

    geometry = large_sample_geometry(size)
    if shape:  # x,y,z
        x, y, z = (int(n) for n in shape.split(","))
        geometry = Geometry(np.dtype(np.uint16), x, y, z)
    save_tiff(_SyntheticVolume(geometry), path)
    log(f"wrote {path.name}: {geometry} ({path.stat().st_size / MiB:.0f} MiB)")
    return str(geometry)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="2G", help="volume size (large sample)")
    parser.add_argument("--workdir", help="a folder on disk (default: a temp dir)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--napari-only",
        action="store_true",
        help="build, then only the steps through napari's slicing (rolled dims)",
    )
    parser.add_argument(
        "--skip-file-yz",
        action="store_true",
        help="no YZ steps from the file in napari (minutes a step at 16 GiB)",
    )
    parser.add_argument(
        "--no-prefetch",
        action="store_true",
        help="--xy: without decoding the cache's next chunk row ahead (A/B)",
    )
    parser.add_argument(
        "--shape",
        help="x,y,z of the uint16 volume instead of --size's (e.g. the YZ "
        "plane of a larger volume with fewer x)",
    )
    parser.add_argument(
        "--no-cp", action="store_true", help="no `cp` of the file (no disk room)"
    )
    parser.add_argument(
        "--tag",
        default="",
        help="own docs sections and docs/benchmarks-view-cache-TAG.json "
        "(default: the shared sections, no JSON)",
    )
    parser.add_argument(
        "--slab",
        action="store_true",
        help="build, then only YZ x-steps from the cache in napari: with and "
        "without the next slab decoded ahead, back to back and --pause-ms apart",
    )
    parser.add_argument(
        "--steps", type=int, default=80, help="--slab: x-steps (from mid-slab)"
    )
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=150.0,
        help="--slab: time between steps, as a user scrolling (default 150)",
    )
    parser.add_argument(
        "--xy",
        action="store_true",
        help="only zoomed-out XY z-steps (levels 1, 2), file against cache; print",
    )
    args = parser.parse_args(argv)
    if not memcap.available():
        raise SystemExit("needs root and a memory cgroup (benchmarks/memcap.py)")
    work = Path(tempfile.mkdtemp(prefix="ndi-viewcache-", dir=args.workdir))
    caches = work / "disk-images"
    caches.mkdir()
    os.environ["NAPARI_DISKIMAGE_DIR"] = str(caches)
    given = sys.argv[1:] if argv is None else argv
    rows: dict = {"size": args.size, "command": " ".join(given)}
    try:
        src = work / "porous.tif"
        rows["geometry"] = make_tiff(src, args.size, args.shape)
        rows["input_mib"] = round(src.stat().st_size / MiB)
        if args.xy:
            for level in (1, 2):
                for use_cache in (False, True):
                    env = {
                        "src": str(src),
                        "level": level,
                        "use_cache": use_cache,
                        "prefetch": not args.no_prefetch,
                    }
                    key = f"xy-{level}-{'cache' if use_cache else 'file'}"
                    rows[key] = run(XY_LEVELS, env, 6 * GiB)
            print(json.dumps(rows, indent=1))
            _save_json(rows, args)
            return
        # cp first: the copy is deleted before the cache takes its room
        if not args.no_cp:
            drop_caches()
            t = time.perf_counter()
            subprocess.run(["cp", str(src), str(work / "copy.tif")], check=True)
            rows["cp_seconds"] = round(time.perf_counter() - t, 2)
            rows["cp_load"] = round(os.getloadavg()[0], 1)
            (work / "copy.tif").unlink()
        drop_caches()
        rows["build"] = run(BUILD, {"src": str(src)}, 512 * MiB)
        store = next(caches.glob("ndi-view-*.ome.zarr"))
        rows["store_mib"] = round(du(store) / MiB)
        rows["cold"] = drop_caches()
        meta = json.loads((store / "0" / "zarr.json").read_text())
        chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
        rows["chunks"] = " x ".join(str(c) for c in chunks)
        empty = work / "no-caches"
        empty.mkdir()
        if args.slab:
            for pause in (args.pause_ms, 0.0):
                for slab_prefetch in (True, False):
                    env = {
                        "src": str(src),
                        "axis": "x",
                        "use_cache": True,
                        "cold_each": rows["cold"],
                        "caches": str(caches),
                        "prefetch": True,
                        "slab_prefetch": slab_prefetch,
                        "n_steps": args.steps,
                        "pause": pause / 1000,
                    }
                    key = f"slab-{'ahead' if slab_prefetch else 'off'}-{pause:g}ms"
                    rows[key] = run(NAPARI_STEPS, env, 6 * GiB)
        runs = [("x", True, True)] + [("x", False, True)] * (not args.skip_file_yz)
        runs += [("y", True, True), ("y", False, True), ("y", False, False)]
        if args.slab:
            runs = []
        for axis, use_cache, prefetch in runs:
            env = {
                "src": str(src),
                "axis": axis,
                "use_cache": use_cache,
                "cold_each": rows["cold"],
                "caches": str(caches if use_cache else empty),
                "prefetch": prefetch,
                "slab_prefetch": True,
                "n_steps": 16,
                "pause": 0.0,
            }
            key = f"napari-{axis}-{'cache' if use_cache else 'file'}"
            rows[key + ("" if prefetch else "-rows")] = run(NAPARI_STEPS, env, 6 * GiB)
        for cold_each in () if args.napari_only or args.slab else (False, True):
            if cold_each and not rows["cold"]:
                continue
            for axis in ("x", "y"):
                for use_cache in (True, False):
                    drop_caches()
                    env = {
                        "src": str(src),
                        "axis": axis,
                        "use_cache": use_cache,
                        "cold_each": cold_each,
                    }
                    where = "cache" if use_cache else "file"
                    key = f"{axis}-{where}{'-cold' if cold_each else ''}"
                    rows[key] = run(STEPS, env, 6 * GiB)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(rows, indent=1))
    _save_json(rows, args)
    if not args.no_write:
        md = HERE.parent / "docs" / "benchmarks.md"
        tag = f"-{args.tag}" if args.tag else ""
        title = f", {args.tag}" if args.tag else ""
        if args.slab:
            write_section(
                md, f"view-cache-slab{tag}",
                f"View cache: YZ x-steps across slabs of chunks (issue 24{title})",
                slab_markdown(rows, args),
            )  # fmt: skip
            return
        if not args.napari_only:
            write_section(
                md, f"view-cache{tag}", f"View cache (issue 24{title})", markdown(rows)
            )
        write_section(
            md, f"view-cache-napari{tag}",
            f"View cache: YZ / XZ views in napari (issue 24{title})",
            napari_markdown(rows),
        )  # fmt: skip


def _save_json(rows: dict, args: argparse.Namespace) -> None:
    if args.tag and not args.no_write:
        out = HERE.parent / "docs" / f"benchmarks-view-cache-{args.tag}.json"
        out.write_text(json.dumps(rows, indent=1) + "\n")


def markdown(rows: dict) -> str:
    build = rows["build"]
    cold = (
        "cold page cache before each run" if rows["cold"] else "page cache NOT dropped"
    )
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} by `python benchmarks/view_cache.py "
        f"--size {rows['size']}` (2 cores shared with other work: times are noisy; "
        f"load average at the end {os.getloadavg()[0]:.1f}).",
        "",
        f"**Build of the view cache of a {rows['input_mib']} MiB porous TIFF** "
        f"({rows['geometry']}) under a 512 MiB cap: "
        f"{build.get('seconds', build.get('error'))} s, "
        f"peak anon {build.get('anon_peak_mib')} MiB, cgroup peak "
        f"{build.get('cgroup_peak_mib')} MiB ({build.get('verdict')}); "
        f"`cp` of the file: {rows.get('cp_seconds', 'not run')} s. Store (chunks "
        f"{rows['chunks']} (z, y, x), zstd, mean pyramid): {rows['store_mib']} MiB.",
        "",
        "**Whole YZ / XZ planes, one pixel step at a time** (16 steps; "
        f"{cold}; 'every step': dropped before each step too, "
        "as for a volume larger than RAM):",
        "",
        "| plane | read from | page cache | first (ms) | p95 (ms) |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for suffix, when in (("", "cold at start"), ("-cold", "cold every step")):
        for axis, name in (("x", "YZ (x-step)"), ("y", "XZ (y-step)")):
            for where in ("cache", "file"):
                row = rows.get(f"{axis}-{where}{suffix}")
                if row is None:
                    continue
                lines.append(
                    f"| {name} | {'view cache' if where == 'cache' else 'TIFF'} | "
                    f"{when} | {row.get('first_ms', row.get('error', '?'))} | "
                    f"{row.get('p95_ms', '?')} |"
                )
    lines += [
        "",
        "A YZ (XZ) plane of the cache decodes one 64-pixel-thick slice of "
        "chunks the first time; the next 63 x- (y-) steps reuse them from "
        "the chunk cache (in process memory, so dropping the page cache does "
        "not evict them). From the TIFF each YZ plane reads a page of every "
        "row of the file; the file stays in this machine's page cache "
        "(24 GiB) after the first step, which the 'every step' rows undo (the "
        "TIFF is also reopened before each step there: pages a process maps "
        "survive drop_caches; the cache stays open, its chunk cache is in "
        "memory as in napari). "
        "Whole planes at full resolution, not a napari canvas, read by "
        "indexing the disk image (its memory map: the kernel's readahead "
        "around each fault makes a cold XZ step read far more than a row "
        "per plane); napari reads through the display levels (below).",
    ]
    return "\n".join(lines) + "\n"


def napari_markdown(rows: dict) -> str:
    build = rows["build"]
    cp = f"{rows['cp_seconds']} s" if "cp_seconds" in rows else "not run"
    cold = "dropped before each step" if rows["cold"] else "NOT dropped (not root)"
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} UTC by `python "
        f"benchmarks/view_cache.py {rows['command']}` on the {rows['input_mib']} MiB "
        f"porous TIFF ({rows['geometry']}); 2 cores shared with other work "
        f"(load average at the end {os.getloadavg()[0]:.1f}). A napari "
        "`ViewerModel` shows the layer the reader makes, level 0 locked; its "
        "dims are rolled to (z, y) (YZ, x-steps) or (z, x) (XZ, y-steps), as "
        "napari-orthogonal-views' extra viewers do, and each step is "
        "`viewer.dims.set_current_step` (napari's synchronous slicing of the "
        f"layer, whole planes). Page cache {cold}; 'first' is the roll itself, "
        "from a cold page cache.",
        "",
        "With a valid cache the layer reads YZ planes from it (chunks "
        f"{rows['chunks']} (z, y, x)) and XZ planes from the TIFF still (one row "
        "of each plane, read as it lies: the first XZ view of the cache "
        "decoded a row of chunks per plane: 7.5 s and 3.0 s cold in two "
        "earlier 2 GiB runs, against 0.9 s from the TIFF). The XZ rows of "
        "all planes are announced together (`POSIX_FADV_WILLNEED`) before "
        "they are read, so the disk fetches them in parallel; 'rows one by "
        "one' is the same step without that (one wait for the disk per "
        "plane).",
        "",
        f"Build of the cache under a 512 MiB cap: {build.get('seconds', '?')} s "
        f"(peak anon {build.get('anon_peak_mib')} MiB, {build.get('verdict')}, "
        f"load {build.get('load')}); `cp` of the file: "
        f"{cp}; store {rows['store_mib']} MiB.",
        "",
        "| view | view cache | first (ms) | p95 of 16 steps (ms) | slowest step (ms) "
        "| peak anon (MiB) | load |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for axis, name in (("x", "YZ (x-step)"), ("y", "XZ (y-step)")):
        for where in ("cache", "file", "file-rows"):
            if f"napari-{axis}-{where}" not in rows:
                continue
            row = rows[f"napari-{axis}-{where}"]
            first = row.get("seconds")
            what = {
                "cache": "valid",
                "file": "none",
                "file-rows": "none, rows one by one",
            }
            lines.append(
                f"| {name} | {what[where]} | "
                f"{round(1000 * first) if first is not None else row.get('error')}"
                f" | {row.get('p95_ms', '?')} | {row.get('max_ms', '?')} "
                f"| {row.get('anon_peak_mib', '?')} "
                f"| {row.get('load', '?')} |"
            )
    return "\n".join(lines) + "\n"


def slab_markdown(rows: dict, args: argparse.Namespace) -> str:
    build = rows["build"]
    cold = "dropped before each step" if rows["cold"] else "NOT dropped (not root)"
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} UTC by `python "
        f"benchmarks/view_cache.py {rows['command']}` on the {rows['input_mib']} MiB "
        f"porous TIFF ({rows['geometry']}); 2 cores shared with other work. "
        "A napari `ViewerModel` shows the reader's layer, level 0 locked, dims "
        "rolled to (z, y); the first view is half-way through a 64-column slab "
        f"of chunks, then {args.steps} x-steps (`viewer.dims.set_current_step`), "
        f"page cache {cold}. 'ahead': the next slab is decoded in the "
        "background in the direction of the steps; 'off': not. Steps "
        f"{args.pause_ms:g} ms apart (a user scrolling) or back to back (the "
        "page-cache drop between steps still takes some ms).",
        "",
        f"Build under a 512 MiB cap: {build.get('seconds', '?')} s (peak anon "
        f"{build.get('anon_peak_mib')} MiB, load {build.get('load')}); store "
        f"{rows['store_mib']} MiB, chunks {rows['chunks']}.",
        "",
        "| steps apart | next slab | first view (ms) | p95 (ms) | slowest (ms) "
        "| each step into a new slab (ms) | peak anon (MiB) | load |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for pause in (args.pause_ms, 0.0):
        for mode in ("ahead", "off"):
            row = rows.get(f"slab-{mode}-{pause:g}ms")
            if row is None:
                continue
            first = row.get("seconds")
            slabs = ", ".join(str(v) for v in row.get("slab_ms", [])) or "-"
            lines.append(
                f"| {f'{pause:g} ms' if pause else 'back to back'} | {mode} | "
                f"{round(1000 * first) if first is not None else row.get('error')}"
                f" | {row.get('p95_ms', '?')} | {row.get('max_ms', '?')} | {slabs} "
                f"| {row.get('anon_peak_mib', '?')} | {row.get('load', '?')} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
