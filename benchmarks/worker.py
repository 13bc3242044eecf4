"""One benchmark measurement, run in a fresh process by ``run.py``.

``python benchmarks/worker.py OPERATION '{"json": "arguments"}'`` runs one
operation and prints ``RESULT {...}`` (JSON) as its last line.  A fresh
process per measurement keeps peak memory per operation: the peak resident
set (``VmHWM``) is reset through ``/proc/self/clear_refs`` just before the
timed part, and the page cache is dropped there too for cold measurements
(root only; the result says whether it was cold).

Memory figures, in MiB:

* ``peak_rss``: the process's peak resident set during the operation;
* ``peak_delta``: that peak minus the resident set just before the
  operation (what the operation added, file pages mapped in included);
* ``peak_anon_delta``: peak anonymous memory (``RssAnon``, sampled every
  5 ms) minus its value before: memory the kernel cannot reclaim by
  dropping file pages;
* ``read``: bytes the process caused to be read from the disk
  (``/proc/self/io`` ``read_bytes``; meaningful with a cold cache).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MiB = 1 << 20
#: Size of the napari window (width, height) on the 1920 x 1200 Xvfb screen.
WINDOW = (1600, 1000)


# --- process measurements ---------------------------------------------------
def drop_caches() -> bool:
    """Write dirty pages back and drop the page cache; False if not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
    except OSError:
        return False
    return True


def _status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _read_bytes() -> int:
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    # "5" resets the peak resident set size (VmHWM) of this process.
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


class _AnonSampler(threading.Thread):
    """Samples RssAnon every few ms; ``peak`` is the largest seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _status()["RssAnon"]
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.005):
            self.peak = max(self.peak, _status()["RssAnon"])

    def stop(self) -> int:
        self._halt.set()
        self.join()
        self.peak = max(self.peak, _status()["RssAnon"])
        return self.peak


@contextlib.contextmanager
def measure(res: dict[str, Any], cold: bool = True) -> Iterator[None]:
    """Time the block; record memory and disk reads into ``res``."""
    gc.collect()
    res["cold"] = drop_caches() if cold else False
    _reset_peak()
    before = _status()
    io0 = _read_bytes()
    sampler = _AnonSampler()
    sampler.start()
    t0 = res["_t0"] = time.perf_counter()
    yield
    res.setdefault("time", time.perf_counter() - t0)
    del res["_t0"]
    anon = sampler.stop()
    after = _status()
    res["rss_before"] = before["VmRSS"] / MiB
    res["peak_rss"] = after["VmHWM"] / MiB
    res["peak_delta"] = (after["VmHWM"] - before["VmRSS"]) / MiB
    res["peak_anon_delta"] = (anon - before["RssAnon"]) / MiB
    res["read"] = (_read_bytes() - io0) / MiB


def _poll_peak(proc: subprocess.Popen) -> int:
    """Wait for ``proc``; return its peak resident set (VmHWM), polled.

    (``wait4``'s ``ru_maxrss`` would include this Python process, which
    the child was forked from before it ran ``exec``.)
    """
    peak = 0
    status = f"/proc/{proc.pid}/status"
    while proc.poll() is None:
        with contextlib.suppress(OSError, ValueError), open(status) as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        time.sleep(0.002)
    return peak


def cached_mib(path: str | os.PathLike[str]) -> float | None:
    """MiB of ``path`` now in the page cache (fincore): after a cold start,
    what was read from that file, read-ahead included."""
    try:
        out = subprocess.run(
            ["fincore", "-bno", "RES", str(path)], capture_output=True, text=True
        ).stdout
        return int(out.split()[0]) / MiB
    except (OSError, ValueError, IndexError):
        return None


def _fsync(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# --- core operations ----------------------------------------------------------
def op_open_tiff(a: dict[str, Any]) -> dict[str, Any]:
    import napari_diskimage as ndi

    res: dict[str, Any] = {}
    with measure(res):
        img = ndi.open_tiff(a["path"])
    img.close()
    warm = []
    for _ in range(20):
        t0 = time.perf_counter()
        ndi.open_tiff(a["path"]).close()
        warm.append(time.perf_counter() - t0)
    res["warm_median"] = statistics.median(warm)
    return res


def op_copy(a: dict[str, Any]) -> dict[str, Any]:
    """Copy ``path`` with ``method``: cp, numpy (memmap), ndi."""
    method, path, out = a["method"], a["path"], a["out"]
    res: dict[str, Any] = {}
    try:
        if method == "cp":
            res["cold"] = drop_caches()
            t0 = time.perf_counter()
            proc = subprocess.Popen(["cp", path, out])
            peak = _poll_peak(proc)
            res["time"] = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"cp failed with exit code {proc.returncode}")
            # cp is a separate program: its whole peak resident set
            res["peak_rss"] = res["peak_delta"] = peak / MiB
        elif method == "numpy":
            import numpy as np
            import tifffile

            with measure(res):
                src = tifffile.memmap(path, mode="r")
                dst = np.memmap(out, dtype=src.dtype, mode="w+", shape=src.shape)
                dst[...] = src
                del dst, src
        elif method == "ndi":
            import napari_diskimage as ndi

            with ndi.open_tiff(path) as img:
                with measure(res):
                    copy = ndi.copy(img)
                out = copy.path
                t0 = time.perf_counter()
                copy.flush()
                res["time_fsync"] = res["time"] + time.perf_counter() - t0
                copy.close()
            return res
        else:
            raise ValueError(f"unknown copy method {method!r}")
        t0 = time.perf_counter()
        _fsync(out)
        res["time_fsync"] = res["time"] + time.perf_counter() - t0
        return res
    finally:
        if method != "ndi":
            _remove(out)


def op_save(a: dict[str, Any]) -> dict[str, Any]:
    """Save ``path`` to TIFF with ``method``: imread, memmap, ndi."""
    method, path, out = a["method"], a["path"], a["out"]
    res: dict[str, Any] = {}
    import tifffile

    try:
        if method == "imread":  # load it, then save the loaded array
            with measure(res):
                data = tifffile.imread(path)
                res["time_load"] = _since(res)
                tifffile.imwrite(out, data)
                del data
        elif method == "memmap":  # save a memory-mapped view
            with measure(res):
                tifffile.imwrite(out, tifffile.memmap(path, mode="r"))
        elif method == "ndi":
            import napari_diskimage as ndi

            with measure(res), ndi.open_tiff(path) as img:
                ndi.save_tiff(img, out)
        else:
            raise ValueError(f"unknown save method {method!r}")
        t0 = time.perf_counter()
        _fsync(out)
        res["time_fsync"] = res["time"] + time.perf_counter() - t0
        return res
    finally:
        _remove(out)


def op_load_plane(a: dict[str, Any]) -> dict[str, Any]:
    import napari_diskimage as ndi

    res: dict[str, Any] = {}
    s = a["stride"]
    with ndi.open_tiff(a["path"]) as img:
        with measure(res):
            plane = img.load_plane(z=a.get("z", 0), stride_x=s, stride_y=s)
        res["bytes_read"] = img.bytes_read / MiB
        res["file_read"] = cached_mib(a["path"])
        res["shape"] = list(plane.shape)
    return res


def op_core_cap(a: dict[str, Any]) -> dict[str, Any]:
    """open, copy, write_pixel, load_plane, save: run under a memory cap."""
    import napari_diskimage as ndi

    steps: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        steps[name] = time.perf_counter() - t0
        print(f"STEP {name} {steps[name]:.3f}", flush=True)
        return value

    img = step("open_tiff", lambda: ndi.open_tiff(a["path"]))
    copy = step("copy", lambda: ndi.copy(img))
    z_mid = img.shape[2] // 2

    def write() -> None:
        for i in range(1000):
            copy.write_pixel(
                i % 60000, (i * 37) % img.shape[4], i % img.shape[3], z_mid
            )

    step("write_pixel x1000", write)
    for s in (1, 4, 16):
        step(
            f"load_plane stride {s}",
            lambda s=s: copy.load_plane(z_mid, stride_x=s, stride_y=s),
        )
    out = Path(a["out"])
    try:
        step("save_tiff", lambda: ndi.save_tiff(copy, out))
        with ndi.open_tiff(out) as back:
            ok = int(
                back.array[0, 0, z_mid, 999 % img.shape[3], (999 * 37) % img.shape[4]]
            )
            if ok != 999:
                raise AssertionError(f"saved pixel reads {ok}, expected 999")
        print("STEP verify-saved-pixel 0", flush=True)
    finally:
        _remove(out)
        copy.close()
        img.close()
    return {"steps": steps}


def op_numpy_cap(a: dict[str, Any]) -> dict[str, Any]:
    """The by-hand competitors under a cap: memmap copy, imread + imwrite."""
    res = (
        op_copy({**a, "method": "numpy"})
        if a["what"] == "copy"
        else op_save({**a, "method": "imread"})
    )
    return res


def _since(res: dict[str, Any]) -> float:
    return time.perf_counter() - res["_t0"]


# --- viewer operations ----------------------------------------------------------
class Viewer:
    """A shown napari viewer whose canvas draws are timestamped."""

    def __init__(self) -> None:
        import napari
        from qtpy.QtWidgets import QApplication

        self.viewer = napari.Viewer(show=True)
        self.app = QApplication.instance()
        # The same window (and so canvas) size for every run: napari picks
        # the multiscale level, and so what is read, from the canvas size.
        self.viewer.window._qt_window.resize(*WINDOW)
        self.draws: list[float] = []
        scene = self.viewer.window._qt_viewer.canvas._scene_canvas
        # position="last": after napari's own draw handler (which may ask a
        # multiscale layer for a finer level and schedule another draw).
        scene.events.draw.connect(self._on_draw, position="last")
        self.settle(time.perf_counter(), quiet=0.5, timeout=30)
        # napari's one-time costs at the first layer of a session (the pint
        # unit registry, lazy imports: ~1-2 s) are the same whatever the
        # reader: pay them with a tiny layer before anything is timed.
        import numpy as np

        t0 = time.perf_counter()
        self.viewer.add_image(np.zeros((2, 8, 8), np.uint16), name="warm-up")
        self.settle(t0, quiet=0.2, timeout=30)
        self.viewer.layers.clear()
        self.settle(time.perf_counter() - 1, quiet=0.2, timeout=30)
        self.first_layer_seconds = time.perf_counter() - t0

    def _on_draw(self, event: Any) -> None:
        self.draws.append(time.perf_counter())

    @property
    def canvas_size(self) -> list[int]:
        return list(self.viewer.window._qt_viewer.canvas.size)

    def settle(
        self, t0: float, *, quiet: float = 0.5, timeout: float = 120
    ) -> tuple[float, float] | None:
        """Process events until the canvas was drawn after ``t0`` and then
        stayed quiet for ``quiet`` s; return (first, last) draw times after
        ``t0``, relative to it, or None on timeout."""
        while True:
            self.app.processEvents()
            now = time.perf_counter()
            after = [d for d in self.draws if d > t0]
            if after and now - after[-1] > quiet:
                return after[0] - t0, after[-1] - t0
            if now - t0 > timeout:
                return None
            time.sleep(0.002)

    def next_draw(self, t0: float, timeout: float = 30) -> float | None:
        """Process events until the first draw after ``t0``; its delay."""
        while True:
            self.app.processEvents()
            after = [d for d in self.draws if d > t0]
            if after:
                return after[0] - t0
            if time.perf_counter() - t0 > timeout:
                return None

    def open(self, path: str, method: str) -> Any:
        if method == "builtin":
            self.viewer.open(path, plugin="napari")
        elif method == "memmap":
            import tifffile

            self.viewer.add_image(tifffile.memmap(path, mode="r"), name=Path(path).stem)
        elif method == "plugin":
            self.viewer.open(path, plugin="napari-diskimage")
        elif method == "plugin_direct":
            # The same reader without viewer.open's own work (progress bar,
            # plugin lookup): what the reader and add_image cost.
            from napari_diskimage._napari.reader import napari_get_reader

            for data, kwargs, _ in napari_get_reader(path)(path):
                self.viewer.add_image(data, **kwargs)
        else:
            raise ValueError(f"unknown open method {method!r}")
        return self.viewer.layers[-1]


def _disk_images(layer: Any) -> list[Any]:
    """The DiskImages behind a layer (found in its data and metadata)."""
    import numpy as np

    from napari_diskimage import DiskImage

    found: dict[int, Any] = {}

    def visit(obj: Any, depth: int) -> None:
        if isinstance(obj, DiskImage):
            found[id(obj)] = obj
        elif depth > 4 or isinstance(obj, (np.ndarray, str, bytes, int, float)):
            return
        elif isinstance(obj, dict):
            for v in obj.values():
                visit(v, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v, depth + 1)
        elif hasattr(obj, "__dict__"):
            for v in vars(obj).values():
                visit(v, depth + 1)

    visit(layer.data, 0)
    visit(layer.metadata, 0)
    return list(found.values())


def _layer_info(layer: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"multiscale": bool(layer.multiscale)}
    if layer.multiscale:
        info["levels"] = len(layer.data)
        info["data_level"] = int(layer.data_level)
    info["shape"] = (
        [int(n) for n in layer.data[0].shape]
        if layer.multiscale
        else [int(n) for n in layer.data.shape]
    )
    images = _disk_images(layer)
    if images:
        info["bytes_read"] = sum(img.bytes_read for img in images) / MiB
    return info


def op_viewer_open(a: dict[str, Any]) -> dict[str, Any]:
    """Open a TIFF into a shown viewer; time until the view is drawn.

    ``time``: until the call has returned *and* the canvas has drawn its
    last frame (no draw for 0.5 s after); ``time_first_draw``: until the
    first draw after the layer was added; ``time_call``: the call alone.
    """
    v = Viewer()
    added: list[float] = []
    v.viewer.layers.events.inserted.connect(lambda e: added.append(time.perf_counter()))
    res: dict[str, Any] = {"canvas": v.canvas_size}
    with measure(res):
        t0 = res["_t0"]
        layer = v.open(a["path"], a["method"])
        res["time_call"] = time.perf_counter() - t0
        if v.settle(t0, timeout=a.get("timeout", 240)) is None:
            raise TimeoutError("the view was not drawn")
        after = [d for d in v.draws if d > added[0]]
        if not after:
            v.viewer.window._qt_viewer.canvas._scene_canvas.update()
            after = [t0 + v.next_draw(t0)]
        res["time_first_draw"] = after[0] - t0
        res["time"] = max(res["time_call"], after[-1] - t0)
    res["file_read"] = cached_mib(a["path"])
    res.update(_layer_info(layer))
    return res


def _z_axis(viewer: Any, nz: int) -> int:
    for axis in viewer.dims.not_displayed:
        if viewer.dims.nsteps[axis] == nz:
            return axis
    raise RuntimeError(f"no viewer axis with {nz} steps: {viewer.dims.nsteps}")


def op_zstep(a: dict[str, Any]) -> dict[str, Any]:
    """Latency of z steps: from dims.set_current_step to the canvas drawn."""
    v = Viewer()
    layer = v.open(a["path"], a["method"])
    v.settle(0)
    res: dict[str, Any] = {"canvas": v.canvas_size, **_layer_info(layer)}
    nz = a["nz"]
    axis = _z_axis(v.viewer, nz)
    n = min(nz - 1, a.get("steps", 60))
    v.viewer.dims.set_current_step(axis, 0)
    v.settle(0, quiet=0.2)
    res["cold"] = drop_caches()
    io0 = _read_bytes()
    passes = {}
    for name, zs in (("cold", range(1, n + 1)), ("warm", range(n - 1, -1, -1))):
        lat = []
        for z in zs:
            t0 = time.perf_counter()
            v.viewer.dims.set_current_step(axis, z)
            d = v.next_draw(t0)
            if d is None:
                raise TimeoutError(f"no draw after stepping to z={z}")
            lat.append(d)
            # let follow-up work (a multiscale level change) finish untimed
            v.settle(time.perf_counter() - 1, quiet=0.03, timeout=5)
        passes[name] = lat
        if name == "cold":
            res["read"] = (_read_bytes() - io0) / MiB / n
            res["file_read"] = (cached_mib(a["path"]) or 0) / n
    for name, lat in passes.items():
        q = statistics.quantiles(lat, n=20, method="inclusive")
        res[f"{name}_median"] = statistics.median(lat) * 1000
        res[f"{name}_p95"] = q[18] * 1000
        res[f"{name}_max"] = max(lat) * 1000
    res["steps"] = n
    res.update({k: v2 for k, v2 in _layer_info(layer).items() if k == "bytes_read"})
    return res


def op_viewer_cap(a: dict[str, Any]) -> dict[str, Any]:
    """open, browse z, 3D view: run under a memory cap."""
    steps: dict[str, float] = {}
    v = Viewer()
    print("STEP viewer 0", flush=True)

    def step(name: str, fn: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        fn()
        if v.settle(t0, quiet=0.3, timeout=a.get("timeout", 240)) is None:
            raise TimeoutError(f"{name}: the view was not drawn")
        steps[name] = time.perf_counter() - t0
        print(f"STEP {name} {steps[name]:.3f}", flush=True)

    step("open", lambda: v.open(a["path"], a["method"]))
    axis = _z_axis(v.viewer, a["nz"])

    def browse() -> None:
        for z in range(0, a["nz"], max(1, a["nz"] // 20)):
            v.viewer.dims.set_current_step(axis, z)
            v.next_draw(time.perf_counter())

    step("browse z", browse)
    step("3D view", lambda: setattr(v.viewer.dims, "ndisplay", 3))
    step("back to 2D", lambda: setattr(v.viewer.dims, "ndisplay", 2))
    return {"steps": steps}


OPERATIONS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def main() -> None:
    op, args = sys.argv[1], json.loads(sys.argv[2])
    res = OPERATIONS[op](args)
    print("RESULT " + json.dumps(res), flush=True)
    sys.stdout.flush()
    # napari and Qt can take seconds to tear down; the result is out.
    os._exit(0)


if __name__ == "__main__":
    main()
