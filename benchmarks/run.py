"""Benchmarks of napari-diskimage against what users would use instead.

    python benchmarks/run.py                  # 0.25, 1, 4 GiB (~15 min)
    python benchmarks/run.py --sizes 0.25     # quick
    python benchmarks/run.py --sizes 1 4 16   # larger

Generates its test files in a temporary folder on disk (never a RAM file
system), runs each measurement in a fresh process (``worker.py``), removes
the files, and writes ``docs/benchmarks.md`` (the part between the
``results`` markers), ``docs/benchmarks.png`` and ``docs/benchmarks.json``.
Needs root for cold-cache measurements (dropping the page cache) and for
the memory caps (cgroups); without it those are reported as warm / skipped.
Viewer measurements run in their own Xvfb server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import memcap  # noqa: E402
import report  # noqa: E402

GiB = 1 << 30
MiB = 1 << 20
#: Plane of the test volumes (y, x): 16 MiB of uint16.
PLANE = (2048, 4096)
OPEN_METHODS = ("builtin", "memmap", "plugin")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- where the data go ----------------------------------------------------------
def _fs_type(path: Path) -> str:
    """File system type of the mount holding ``path`` (the plugin's parser)."""
    from napari_diskimage._files import mount_fstype

    return mount_fstype(path) or "?"


def choose_workdir(requested: str | None) -> Path:
    """A new folder on a disk file system (not tmpfs) with room for the data."""
    candidates = (
        [Path(requested)]
        if requested
        else [
            Path(tempfile.gettempdir()),
            Path.cwd(),
        ]
    )
    for base in candidates:
        if _fs_type(base) in ("tmpfs", "ramfs"):
            log(f"{base} is a RAM file system: not used for data")
            continue
        return Path(tempfile.mkdtemp(prefix="ndi-bench-", dir=base))
    raise SystemExit("no disk folder for the data: pass --workdir")


# --- test data --------------------------------------------------------------------
def _pattern(shape: tuple[int, int], seed: int):
    import numpy as np

    y, x = np.ogrid[: shape[0], : shape[1]]
    # something to look at, different per plane, not compressible to nothing
    return ((x // 8) ^ (y // 8)).astype(np.uint16) * 16 + np.uint16(seed * 97 % 4096)


def make_volume(path: Path, nbytes: int) -> int:
    """A (z, 2048, 4096) uint16 ImageJ TIFF of about ``nbytes``; returns z."""
    import warnings

    import numpy as np
    import tifffile

    nz = max(2, round(nbytes / (PLANE[0] * PLANE[1] * 2)))
    with warnings.catch_warnings():
        # past 4 GiB tifffile writes ImageJ's own layout (one IFD), and says so
        warnings.filterwarnings("ignore", "truncating ImageJ file")
        data = tifffile.memmap(
            path,
            shape=(nz, *PLANE),
            dtype=np.uint16,
            imagej=True,
            metadata={"axes": "ZYX"},
        )
    base = _pattern(PLANE, 0)
    for z in range(nz):
        data[z] = base + np.uint16(z * 97 % 4096)
    data.flush()
    del data
    return nz


def make_plane(path: Path, side: int) -> None:
    """A single ``side`` x ``side`` uint16 plane."""
    import numpy as np
    import tifffile

    data = tifffile.memmap(path, shape=(side, side), dtype=np.uint16)
    band = 1024
    for y0 in range(0, side, band):
        n = min(band, side - y0)
        data[y0 : y0 + n] = _pattern((n, side), y0 // band)
    data.flush()
    del data


# --- Xvfb -------------------------------------------------------------------------
@contextlib.contextmanager
def xvfb(size: str):
    """Start an Xvfb server; yield its DISPLAY."""
    if not shutil.which("Xvfb"):
        raise SystemExit(
            "Xvfb is needed for the viewer measurements (apt install xvfb)"
        )
    r, w = os.pipe()
    proc = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(w),
            "-screen",
            "0",
            f"{size}x24",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    with os.fdopen(r) as fh:
        number = fh.readline().strip()
    if not number:
        proc.kill()
        raise SystemExit("Xvfb did not start")
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- running one measurement ------------------------------------------------------
class Runner:
    def __init__(self, env: dict[str, str], timeout: float) -> None:
        self.env = env
        self.timeout = timeout
        self.worker = [sys.executable, str(HERE / "worker.py")]

    def run(self, op: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Run one measurement in a fresh process; its result or its error."""
        cmd = [*self.worker, op, json.dumps(args)]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=self.env,
                timeout=timeout or self.timeout,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout or self.timeout:.0f} s"}
        return parse_result(proc.returncode, proc.stdout, proc.stderr)

    def run_capped(self, cap: int, op: str, **args: Any) -> dict[str, Any]:
        cmd = [*self.worker, op, json.dumps(args)]
        res = memcap.run_capped(cap, cmd, timeout=self.timeout, env=self.env)
        out = parse_result(res.returncode or 0, res.stdout, res.stderr)
        steps = []
        for line in res.stdout.splitlines():
            if line.startswith("STEP "):
                *name, secs = line.split()[1:]
                steps.append(f"{' '.join(name)} {float(secs):.2f} s")
        out.pop("error", None)
        return {
            "verdict": res.verdict,
            "exit": (128 - res.returncode)
            if res.returncode and res.returncode < 0
            else res.returncode,
            "cap": cap / MiB,
            "cgroup_peak": res.peak_bytes / MiB,
            "oom_kills": res.oom_kills,
            "time": res.seconds,
            "done": steps,
            "stderr_tail": res.stderr[-2000:] if res.returncode else "",
            "error": None
            if res.returncode == 0 or res.killed
            else _last_line(res.stderr),
            **out,
        }


def _last_line(text: str) -> str:
    """The line of an error output that says what went wrong."""
    lines = [ln.strip() for ln in text.splitlines() if len(ln.strip()) > 3]
    for line in reversed(lines[-40:]):
        if re.search(r"error|abort|memory|killed|exception", line, re.IGNORECASE):
            return line[:300]
    return lines[-1][:300] if lines else ""


def parse_result(code: int, stdout: str, stderr: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    if code < 0:
        return {"error": f"killed by signal {signal.Signals(-code).name}"}
    return {"error": _last_line(stderr) or f"exit {code}"}


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of repeated runs, with all their times; else an error."""
    ok = [r for r in runs if not r.get("error")]
    if not ok:
        return runs[-1]
    best = dict(min(ok, key=lambda r: r["time"]))
    best["times"] = [r["time"] for r in ok]
    return best


def _show(name: str, res: dict[str, Any]) -> None:
    if res.get("error"):
        log(f"  {name}: ERROR {res['error']}")
        return
    keys = (
        "time",
        "peak_delta",
        "peak_anon_delta",
        "read",
        "bytes_read",
        "cold_median",
        "cold_p95",
        "verdict",
    )
    parts = []
    for k in keys:
        v = res.get(k)
        if isinstance(v, float):
            parts.append(f"{k}={v:.3f}")
        elif v is not None:
            parts.append(f"{k}={v}")
    log(f"  {name}: " + " ".join(parts))


# --- the benchmark ----------------------------------------------------------------
def machine() -> dict[str, Any]:
    import napari
    import numpy
    import tifffile

    def first(path: str, key: str) -> str:
        with contextlib.suppress(OSError), open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        return "?"

    import napari_diskimage

    root = Path(tempfile.gettempdir())
    disk = "?"
    with contextlib.suppress(Exception):
        dev = subprocess.run(
            ["findmnt", "-no", "SOURCE", "--target", str(root)],
            capture_output=True,
            text=True,
        ).stdout.strip()
        name = Path(dev).name
        size = int(Path(f"/sys/class/block/{name}/size").read_text()) * 512
        driver = Path(f"/sys/class/block/{name}/device/driver").resolve().name
        disk = f"{name}, {size / GiB:.0f} GiB, {driver}"
    return {
        "cpu": first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "ram_gib": round(int(first("/proc/meminfo", "MemTotal").split()[0]) / 2**20, 1),
        "disk": disk,
        "fs": _fs_type(root),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "napari": napari.__version__,
        "numpy": numpy.__version__,
        "tifffile": tifffile.__version__,
        "napari_diskimage": napari_diskimage.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env["NAPARI_DISKIMAGE_DIR"] = str(work / "scratch")
    (work / "scratch").mkdir()
    results: dict[str, Any] = {
        "machine": machine(),
        "sizes": args.sizes,
        "workdir_fs": _fs_type(work),
        "load": os.getloadavg(),
        "plane_side": args.plane,
        "repeat": args.repeat,
    }
    runner = Runner(env, args.timeout)
    sections = set(args.only or ["open", "copy", "save", "zstep", "plane", "caps"])

    need = (sum(args.sizes) + 2 * max(args.sizes)) * GiB + 2 * args.plane**2
    free = shutil.disk_usage(work).free
    if free < need * 1.1:
        raise SystemExit(
            f"{work} has {free / GiB:.1f} GiB free but the run needs about "
            f"{need / GiB:.1f} GiB: pass --workdir on a larger disk or fewer --sizes"
        )
    log(f"generating data in {work}")
    vols: dict[float, tuple[Path, int]] = {}
    for size in args.sizes:
        p = work / f"volume_{size:g}GiB.tif"
        t0 = time.perf_counter()
        vols[size] = (p, make_volume(p, int(size * GiB)))
        dt = time.perf_counter() - t0
        log(f"  {p.name}: {p.stat().st_size / GiB:.2f} GiB in {dt:.1f} s")
    plane = work / f"plane_{args.plane}.tif"
    if sections & {"plane"}:
        t0 = time.perf_counter()
        make_plane(plane, args.plane)
        dt = time.perf_counter() - t0
        log(f"  {plane.name}: {plane.stat().st_size / GiB:.2f} GiB in {dt:.1f} s")

    out = str(work / "out.tif")
    if "open" in sections:
        log("open")
        rows = results["open"] = []
        for size, (p, _nz) in vols.items():
            r = runner.run("open_tiff", path=str(p))
            _show(f"{size:g} GiB open_tiff", r)
            rows.append({"size": size, "method": "open_tiff", **r})
            for method in (*OPEN_METHODS, "plugin_direct"):
                r = runner.run("viewer_open", path=str(p), method=method)
                _show(f"{size:g} GiB {method}", r)
                rows.append({"size": size, "method": method, **r})
    for part, methods in (
        ("copy", ("cp", "numpy", "ndi")),
        ("save", ("imread", "memmap", "ndi")),
    ):
        if part not in sections:
            continue
        log(f"{part} (best of {args.repeat}, methods interleaved)")
        rows = results[part] = []
        for size, (p, _) in vols.items():
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
            for _ in range(args.repeat):
                for method in methods:
                    runs[method].append(
                        runner.run(part, path=str(p), out=out, method=method)
                    )
            for method in methods:
                r = best_of(runs[method])
                _show(f"{size:g} GiB {method}", r)
                rows.append({"size": size, "method": method, **r})
    big_size = max(vols)
    big, big_nz = vols[big_size]
    if "zstep" in sections:
        log(f"z-step latency on the {big_size:g} GiB volume")
        rows = results["zstep"] = []
        for method in OPEN_METHODS:
            r = runner.run("zstep", path=str(big), method=method, nz=big_nz)
            _show(method, r)
            rows.append({"size": big_size, "method": method, **r})
    if "plane" in sections:
        log(f"{args.plane} x {args.plane} plane")
        rows = results["plane"] = []
        for method in ("plugin", "memmap", "builtin"):
            r = runner.run("viewer_open", path=str(plane), method=method)
            _show(f"view {method}", r)
            rows.append({"method": method, **r})
        rows = results["load_plane"] = []
        for stride in (1, 4, 16):
            r = runner.run("load_plane", path=str(plane), stride=stride)
            _show(f"load_plane stride {stride}", r)
            rows.append({"stride": stride, **r})
    if "caps" in sections:
        if not memcap.available():
            log("memory caps skipped: no writable memory cgroup (run as root)")
            results["caps"] = []
        else:
            log(f"memory caps on the {big_size:g} GiB volume")
            rows = results["caps"] = []
            core, view = 512 * MiB, 1024 * MiB
            runs = [
                (
                    "core: open, copy, write_pixel, load_plane, save",
                    core,
                    "core_cap",
                    {"path": str(big), "out": out},
                ),
                (
                    "numpy memmap copy (by hand)",
                    core,
                    "numpy_cap",
                    {"path": str(big), "out": out, "what": "copy"},
                ),
                (
                    "tifffile imread + imwrite (by hand)",
                    core,
                    "numpy_cap",
                    {"path": str(big), "out": out, "what": "save"},
                ),
                (
                    "viewer, this plugin: open, browse z, 3D",
                    view,
                    "viewer_cap",
                    {"path": str(big), "method": "plugin", "nz": big_nz},
                ),
                (
                    "viewer, napari built-in reader",
                    view,
                    "viewer_cap",
                    {"path": str(big), "method": "builtin", "nz": big_nz},
                ),
                (
                    "viewer, tifffile.memmap + add_image",
                    view,
                    "viewer_cap",
                    {"path": str(big), "method": "memmap", "nz": big_nz},
                ),
            ]
            for name, cap, op, kw in runs:
                r = runner.run_capped(cap, op, **kw)
                _show(name, r)
                rows.append({"name": name, "size": big_size, **r})
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(out)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=float,
        nargs="+",
        default=[0.25, 1, 4],
        help="volume sizes in GiB (default 0.25 1 4); the largest is used for "
        "the z-step and memory-cap runs",
    )
    parser.add_argument(
        "--plane",
        type=int,
        default=32768,
        help="side of the big uint16 plane (default 32768: 2 GiB)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["open", "copy", "save", "zstep", "plane", "caps"],
        help="run only these parts",
    )
    parser.add_argument("--workdir", help="folder for the data (default: system temp)")
    parser.add_argument(
        "--out",
        default=str(HERE.parent / "docs"),
        help="where to write benchmarks.md/.png/.json",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds before one measurement is abandoned",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs of each copy and save measurement; the fastest is kept (default 2)",
    )
    parser.add_argument("--screen", default="1920x1200", help="Xvfb screen size")
    args = parser.parse_args(argv)
    args.sizes = sorted(args.sizes)

    work = choose_workdir(args.workdir)
    t0 = time.perf_counter()
    try:
        if os.geteuid() != 0:
            log("not root: measurements are warm-cache and memory caps are skipped")
        with xvfb(args.screen) as display:
            os.environ["DISPLAY"] = display
            os.environ.pop("WAYLAND_DISPLAY", None)
            results = benchmark(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        log(f"removed {work}")
    results["total_seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps(results, indent=1) + "\n")
    report.write(results, out)
    log(f"done in {results['total_seconds'] / 60:.1f} min: {out / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
