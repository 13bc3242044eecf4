"""Benchmarks of the distance map, local thickness and watershed split.

    python benchmarks/distance.py             # all (~15 min on 2 busy cores)
    python benchmarks/distance.py --quick     # small volumes only

Each measurement runs in a fresh process under a memory cap (a memory
cgroup, ``benchmarks/memcap.py``): ours under 512 MiB, the in-memory peers
under 6 GiB.  The peak is the cgroup's (page cache included, so an
out-of-core run shows the cap) and the process's own peak anonymous
memory (``ru_maxrss`` is not used: it counts mapped file pages).

* ``process.distance`` on a 128 x 1024 x 2048 uint8 mask (268 M voxels)
  against the ``edt`` package (``edt.edt(mask, parallel=2)``) in the same
  run, checked equal voxel by voxel; scipy's ``distance_transform_edt``
  needs ~13 GiB there, so it runs on a 32 x 1024 x 2048 quarter.
* a 2 GiB-voxel mask (256 x 2048 x 4096) under 512 MiB: its zeros are 64
  known points, so the exact distance of every voxel of sampled planes is
  computed from them and compared.
* ``local_thickness`` and ``watershed_split`` against porespy and
  skimage on a volume that fits in memory.
* ``--only large``: ours on a volume whose result is 4 x the 512 MiB cap
  (512 M voxels, periodic cells of 5^3 pore voxels between walls, so the
  exact result of every voxel is known: sampled planes are checked);
  porespy and skimage hold the whole volume several times over (~10 GiB
  and more): they cannot run under that cap.  ``--ops`` picks the
  operations (watershed_split takes the longest).

Results go between the ``distance`` markers of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import memcap  # noqa: E402
from report import write_section  # noqa: E402

MiB, GiB = 1 << 20, 1 << 30
CAP = 512 * MiB
PEER_CAP = 6 * GiB

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
from napari_diskimage import process
ndi.set_disk_image_dir(work)
mask = ndi.open_raw(src, ndi.Geometry("uint8", x, y, z))
t = time.perf_counter()
out = process.distance(mask)
seconds = time.perf_counter() - t
if save:  # the scratch file (raw, no header) kept by a second name
    import os
    os.link(out.path, save)
""",
    "edt": """
import edt
mask = np.fromfile(src, np.uint8).reshape(z, y, x)
t = time.perf_counter()
out = edt.edt(mask, parallel=2)
seconds = time.perf_counter() - t
if save:
    out.tofile(save)
""",
    "scipy": """
import scipy.ndimage as sndi
mask = np.fromfile(src, np.uint8).reshape(z, y, x)
t = time.perf_counter()
out = sndi.distance_transform_edt(mask)
seconds = time.perf_counter() - t
""",
    "ours_lt": """
import napari_diskimage as ndi
from napari_diskimage import process
ndi.set_disk_image_dir(work)
mask = ndi.open_raw(src, ndi.Geometry("uint8", x, y, z))
t = time.perf_counter()
out = process.local_thickness(mask)
seconds = time.perf_counter() - t
import os
os.link(out.path, save)  # the raw scratch file by a second name (no copy)
""",
    "porespy_lt": """
import porespy
mask = np.fromfile(src, np.uint8).reshape(z, y, x).astype(bool)
t = time.perf_counter()
out = porespy.filters.local_thickness(mask)
seconds = time.perf_counter() - t
out.astype(np.float32).tofile(save)
""",
    "ours_ws": """
import napari_diskimage as ndi
from napari_diskimage import process
ndi.set_disk_image_dir(work)
mask = ndi.open_raw(src, ndi.Geometry("uint8", x, y, z))
t = time.perf_counter()
out = process.watershed_split(mask, 1.0)
seconds = time.perf_counter() - t
import os
os.link(out.path, save)  # a copy in memory would be 4 x the cap at --only large
""",
    "skimage_ws": """
import scipy.ndimage as sndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed
mask = np.fromfile(src, np.uint8).reshape(z, y, x)
t = time.perf_counter()
dt = sndi.distance_transform_edt(mask)
markers = sndi.label(h_maxima(dt, 1.0), structure=np.ones((3, 3, 3)))[0]
out = watershed(-dt, markers, mask=mask > 0, connectivity=1)
seconds = time.perf_counter() - t
out.astype(np.uint32).tofile(save)
""",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def measure(method: str, src: Path, shape, work: Path, cap: int, save: str = ""):
    z, y, x = shape
    code = (
        "import sys, time, json, numpy as np\n"
        + PEAK
        + f"src, work, save = {str(src)!r}, {str(work)!r}, {save!r}\n"
        + f"z, y, x = {z}, {y}, {x}\n"
        + METHODS[method]
        + "print('RESULT ' + json.dumps({'seconds': seconds, 'anon': _peak[0]}))\n"
    )
    result = memcap.run_capped(cap, [sys.executable, "-c", code], timeout=3600)
    row = {
        "method": method,
        "shape": list(shape),
        "cap_mib": cap // MiB,
        "verdict": result.verdict,
        "cgroup_peak_mib": round(result.peak_bytes / MiB),
    }
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            found = json.loads(line[7:])
            row["seconds"] = round(found["seconds"], 2)
            row["anon_peak_mib"] = round(found["anon"] / MiB)
    if result.returncode != 0:
        row["error"] = result.stderr[-500:]
    log(json.dumps(row))
    return row


def porous(z0: int, z1: int, y: int, x: int) -> np.ndarray:
    """A smooth porous pattern (0 = solid), computed slab by slab."""
    zz, yy, xx = np.ogrid[z0:z1, :y, :x]
    f = np.sin(xx / 7.0) + np.sin(yy / 11.0 + zz / 13.0) + np.sin(zz / 5.0 + xx / 17.0)
    return (f < 1.2).astype(np.uint8)


def write_mask(path: Path, shape, make=porous) -> None:
    z, y, x = shape
    with open(path, "wb") as fh:
        for z0 in range(0, z, 8):
            fh.write(make(z0, min(z, z0 + 8), y, x).tobytes())


def compare_files(a: Path, b: Path, n: int) -> float:
    """Largest absolute difference of two float32 files, in slabs."""
    worst, step = 0.0, 64 << 20
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for _ in range(0, n, step):
            va = np.frombuffer(fa.read(step * 4), np.float32)
            vb = np.frombuffer(fb.read(step * 4), np.float32)
            worst = max(worst, float(np.abs(va - vb).max()) if va.size else 0.0)
    return worst


def points_mask(shape, n=64, seed=0):
    rng = np.random.default_rng(seed)
    pts = np.stack([rng.integers(0, s, n) for s in shape], axis=1)

    def make(z0, z1, y, x):
        m = np.ones((z1 - z0, y, x), np.uint8)
        for pz, py, px in pts:
            if z0 <= pz < z1:
                m[pz - z0, py, px] = 0
        return m

    return pts, make


def exact_plane(pts, k, y, x) -> np.ndarray:
    best = np.full((y, x), np.inf)
    yy, xx = np.ogrid[:y, :x]
    for pz, py, px in pts:
        d = (k - pz) ** 2 + (yy - py) ** 2.0 + (xx - px) ** 2.0
        np.minimum(best, d, out=best)
    return np.sqrt(best)


def ari(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings (Hubert and Arabie)."""
    from scipy.sparse import coo_matrix

    a = np.unique(a, return_inverse=True)[1].ravel()
    b = np.unique(b, return_inverse=True)[1].ravel()
    table = coo_matrix((np.ones(a.size), (a, b))).tocsr()

    def pairs(v):
        v = np.asarray(v, np.float64)
        return float((v * (v - 1) / 2).sum())

    both = pairs(table.data)
    ra = pairs(np.asarray(table.sum(1)).ravel())
    rb = pairs(np.asarray(table.sum(0)).ravel())
    expected = ra * rb / pairs([a.size])
    return (both - expected) / ((ra + rb) / 2 - expected)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["distance", "big", "small", "large"],
        help="run these parts only and print the table (docs are not written)",
    )
    parser.add_argument(
        "--ops", nargs="+", default=["local_thickness", "watershed_split"]
    )
    args = parser.parse_args()
    rows: list[dict] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="ndi-bench-dist-") as tmp:
        work = Path(tmp)
        scratch = work / "scratch"
        scratch.mkdir()
        parts = set(args.only or ["distance", "big", "small"])
        # --- distance on 268 M voxels, edt beside it, scipy on a quarter ---
        if "distance" in parts:
            distance_part(args, work, scratch, rows, notes)
        if "big" in parts:
            big_part(args, work, scratch, rows, notes)
        if "small" in parts:
            small_part(args, work, scratch, rows, notes)
        if "large" in parts:
            large_part(args, work, scratch, rows, notes)
    finish(args, rows, notes)


def distance_part(args, work: Path, scratch: Path, rows: list, notes: list) -> None:
    shape = (32, 256, 512) if args.quick else (128, 1024, 2048)
    src = work / "mask.raw"
    write_mask(src, shape)
    ours = measure("ours", src, shape, scratch, CAP, str(work / "ours.f32"))
    peer = measure("edt", src, shape, scratch, PEER_CAP, str(work / "edt.f32"))
    rows += [ours, peer]
    diff = compare_files(work / "ours.f32", work / "edt.f32", int(np.prod(shape)))
    notes.append(f"distance on {shape}: largest |ours - edt| = {diff:.2e}")
    log(notes[-1])
    for f in ("ours.f32", "edt.f32"):
        (work / f).unlink()
    quarter = (shape[0] // 4, *shape[1:])
    qsrc = work / "quarter.raw"
    write_mask(qsrc, quarter)
    rows.append(measure("scipy", qsrc, quarter, scratch, PEER_CAP))
    rows.append(measure("ours", qsrc, quarter, scratch, CAP))
    rows.append(measure("edt", qsrc, quarter, scratch, PEER_CAP))
    src.unlink()
    qsrc.unlink()


def big_part(args, work: Path, scratch: Path, rows: list, notes: list) -> None:
    # --- a 2 GiB-voxel mask under 512 MiB, exact on sampled planes ---
    big = (32, 512, 1024) if args.quick else (256, 2048, 4096)
    pts, make = points_mask(big)
    bsrc = work / "points.raw"
    write_mask(bsrc, big, make)
    out = work / "big.f32"
    rows.append(measure("ours", bsrc, big, scratch, CAP, str(out)))
    z, y, x = big
    plane = y * x
    worst = 0.0
    with open(out, "rb") as fh:
        for k in (0, z // 3, z // 2, z - 1):
            fh.seek(k * plane * 4)
            got = np.frombuffer(fh.read(plane * 4), np.float32).reshape(y, x)
            worst = max(worst, float(np.abs(got - exact_plane(pts, k, y, x)).max()))
    notes.append(
        f"distance on {big} ({np.prod(big) / GiB:.1f} G voxels, 64 zeros): "
        f"largest |ours - exact| on planes 0, z/3, z/2, z-1 = {worst:.2e}"
    )
    log(notes[-1])
    out.unlink()
    bsrc.unlink()


def small_part(args, work: Path, scratch: Path, rows: list, notes: list) -> None:
    # --- local thickness and watershed on a volume that fits ---
    small = (32, 128, 256) if args.quick else (64, 256, 512)
    ssrc = work / "small.raw"
    write_mask(ssrc, small)
    n = int(np.prod(small))
    for op, ours_m, peer_m, kind in (
        ("local_thickness", "ours_lt", "porespy_lt", np.float32),
        ("watershed_split", "ours_ws", "skimage_ws", np.uint32),
    ):
        if op not in args.ops:
            continue
        a, b = work / f"{ours_m}.bin", work / f"{peer_m}.bin"
        rows.append(measure(ours_m, ssrc, small, scratch, CAP, str(a)))
        rows.append(measure(peer_m, ssrc, small, scratch, PEER_CAP, str(b)))
        va, vb = np.fromfile(a, kind), np.fromfile(b, kind)
        if kind == np.float32:
            notes.append(
                f"local_thickness on {small}: {100 * (va == vb).mean():.3f}% "
                "of voxels equal to porespy's"
            )
        else:
            inside = np.fromfile(ssrc, np.uint8) > 0
            notes.append(
                f"watershed_split on {small}: adjusted Rand index inside the "
                f"mask against skimage = {ari(va[inside], vb[inside]):.4f} "
                f"({len(np.unique(va)) - 1} vs {len(np.unique(vb)) - 1} regions)"
            )
        log(notes[-1])
        assert va.size == n


P = 6  # period of the cells of the large part


def cells(z0: int, z1: int, y: int, x: int) -> np.ndarray:
    zz, yy, xx = np.ogrid[z0:z1, :y, :x]
    return (~((zz % P == 0) | (yy % P == 0) | (xx % P == 0))).astype(np.uint8)


def large_part(args, work: Path, scratch: Path, rows: list, notes: list) -> None:
    # --- ours on a volume 4 x the cap (peers cannot run there) ---
    # sides 6 n + 1: whole cells, walls on every edge (the edge is not
    # background, so a cut cell would differ from the cell alone)
    large = (31, 253, 505) if args.quick else (133, 2047, 2047)
    src = work / "cells.raw"
    write_mask(src, large, cells)
    z, y, x = large
    one = cells(0, P + 1, P + 1, P + 1).astype(bool)
    import porespy  # one cell alone: the reference values of every cell

    cell_lt = porespy.filters.local_thickness(one).astype(np.float32)
    for op in args.ops:
        method = {"local_thickness": "ours_lt", "watershed_split": "ours_ws"}[op]
        out = work / f"{method}.bin"
        rows.append(measure(method, src, large, scratch, CAP, str(out)))
        kind = np.float32 if op == "local_thickness" else np.uint32
        good = True
        for k in (1, z // 2 + 1, z - 2):
            if k % P == 0:
                continue
            got = np.fromfile(out, kind, y * x, offset=k * y * x * 4).reshape(y, x)
            if op == "local_thickness":
                ref = cell_lt[k % P][np.arange(y)[:, None] % P, np.arange(x) % P]
                good &= bool(np.array_equal(got, ref))
            else:  # one id per cell, 0 on the walls
                inside = cells(k, k + 1, y, x)[0] > 0
                good &= bool(np.array_equal(got > 0, inside))
                ids = got[1 : y - P : P, 1 : x - P : P]
                for dy in range(P - 1):
                    for dx in range(P - 1):
                        same = got[1 + dy : y - P : P, 1 + dx : x - P : P]
                        good &= bool(np.array_equal(same, ids))
                good &= len(np.unique(ids)) == ids.size
        notes.append(
            f"{op} on {large} ({np.prod(large) * 4 / GiB:.0f} GiB result, 4 x "
            f"the cap): sampled planes {'exact' if good else 'WRONG'}; porespy / "
            "skimage need the volume in memory several times over: not run"
        )
        log(notes[-1])
        out.unlink()
    src.unlink()


def finish(args, rows: list, notes: list) -> None:
    text = [
        "| method | volume (z, y, x) | cap | time s | anon peak MiB "
        "| cgroup peak MiB | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        text.append(
            f"| {r['method']} | {' x '.join(map(str, r['shape']))} "
            f"| {r['cap_mib']} MiB | {r.get('seconds', '-')} "
            f"| {r.get('anon_peak_mib', '-')} | {r['cgroup_peak_mib']} "
            f"| {r['verdict']} |"
        )
    body = "\n".join(text) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    if args.only:
        print(body)
        return
    header = (
        f"Measured {time.strftime('%Y-%m-%d')} with `python benchmarks/distance.py`"
        f"{' --quick' if args.quick else ''}, 2 cores shared with other jobs "
        "(timings noisy: compare the rows of one run).\n\n"
    )
    write_section(
        HERE.parent / "docs" / "benchmarks.md",
        "distance",
        "Distance map, local thickness, watershed split",
        header + body,
    )
    (HERE.parent / "docs" / "benchmarks-distance.json").write_text(
        json.dumps({"rows": rows, "notes": notes}, indent=1)
    )


if __name__ == "__main__":
    main()
