"""Benchmarks of painting disk-image labels in napari.

    xvfb-run -a python benchmarks/labels.py --workdir /big/disk   # ~3 min

In a shown napari viewer (Xvfb, Mesa): brush-stroke latency, from each
mouse-move event sent to the canvas (Qt events, as a user's drag) to the
end of the next canvas draw, over 60 moves of a stroke, on a 4096 x 4096
and on a 32768 x 32768 uint32 labels plane (the latter painted through
the paint window), zoomed so that about 2048 pixels of the plane span the
view; a 2D fill of the whole 4096 x 4096 plane; then, in a
process under a 1 GiB memory cap, a 4 GiB labels volume (256 x 2048 x 2048
uint32): create, paint, fill, undo, 3D and back, undo again, save.  Results go to
``docs/benchmarks.md`` between the ``labels`` markers and to
``docs/benchmarks-labels.json``.
"""

from __future__ import annotations

import argparse
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
DOCS = HERE.parent / "docs"
sys.path.insert(0, str(HERE))

from process import log, machine  # noqa: E402
from report import write_section  # noqa: E402

GiB = 1 << 30


def _viewer():
    from worker import Viewer

    return Viewer()


def _stroke(v, layer, n: int = 60) -> list[float]:
    """Latencies (s) of the moves of one stroke across the canvas."""
    from qtpy.QtCore import QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    widget = v.viewer.window._qt_viewer.canvas._scene_canvas.native
    w, h = widget.width(), widget.height()
    left = Qt.MouseButton.LeftButton

    def send(kind, x, buttons):
        pos = QPointF(x, h / 2)
        QApplication.sendEvent(
            widget,
            QMouseEvent(kind, pos, widget.mapToGlobal(pos), left, buttons,
                        Qt.KeyboardModifier.NoModifier),
        )  # fmt: skip

    layer.mode = "paint"
    layer.brush_size = 10
    layer.selected_label = 3
    send(QMouseEvent.Type.MouseButtonPress, w * 0.2, left)
    v.settle(time.perf_counter() - 1, quiet=0.2, timeout=2)
    lat = []
    for k in range(1, n + 1):
        t0 = time.perf_counter()
        send(QMouseEvent.Type.MouseMove, w * 0.2 + w * 0.6 * k / n, left)
        d = v.next_draw(t0)
        lat.append(d if d is not None else float("nan"))
    send(QMouseEvent.Type.MouseButtonRelease, w * 0.8, Qt.MouseButton.NoButton)
    v.settle(time.perf_counter(), quiet=0.2, timeout=2)
    return lat


def _summary(lat: list[float]) -> dict:
    q = statistics.quantiles(lat, n=20, method="inclusive")
    return {"median_ms": statistics.median(lat) * 1000, "p95_ms": q[18] * 1000}


def one_plane(side: int, work: str) -> dict:
    os.environ["NAPARI_DISKIMAGE_DIR"] = work
    import numpy as np

    import napari_diskimage as ndi
    from napari_diskimage._napari.labels import KEY, DiskLabels

    path = Path(work) / f"plane_{side}x{side}_UInt32.raw"
    with open(path, "wb") as fh:
        fh.truncate(side * side * 4)
    labels = ndi.open_labels(path, mode="r+")
    v = _viewer()
    layer = DiskLabels.attach(v.viewer, labels, name="labels")
    # a user paints zoomed in: about 2048 pixels of the plane across the view
    v.viewer.scene.camera.center = (side / 2, side / 2)
    v.viewer.scene.camera.zoom = v.viewer.canvas.size[1] / 2048
    layer.metadata[KEY].move_window()
    v.settle(time.perf_counter() - 1, quiet=0.3, timeout=5)
    res: dict = {"side": side, "windowed": layer.metadata[KEY].windowed}
    res["stroke"] = _summary(_stroke(v, layer))
    painted = np.memmap(path, np.uint32, "r", shape=(side, side))
    res["stroke_in_file"] = bool((painted == 3).any())
    if not res["windowed"]:
        t0 = time.perf_counter()
        layer.fill((side // 4, side // 4), 5)  # the background: the whole plane
        res["fill_seconds"] = time.perf_counter() - t0
        res["fill_in_file"] = int(painted[side // 4, side // 4]) == 5
    del painted
    return res


CAPPED = """
import os, sys, time, json
os.environ["NAPARI_DISKIMAGE_DIR"] = sys.argv[1]
import numpy as np, napari
import napari_diskimage as ndi
from napari_diskimage._qt.labels import LabelsTool
from qtpy.QtWidgets import QApplication
steps = {}
def step(name, fn):
    t = time.perf_counter(); out = fn(); QApplication.processEvents()
    steps[name] = time.perf_counter() - t; print("STEP", name, steps[name], flush=True)
    return out
viewer = napari.Viewer(show=True)
img = ndi.new_disk_image(ndi.Geometry("uint8", 2048, 2048, 256))  # the image
from napari_diskimage._qt import add_disk_image
add_disk_image(viewer, img, "scan")
tool = LabelsTool(viewer)
tool.dtype.value = "uint32"
layer = step("create 4 GiB labels", tool.new_labels)
viewer.dims.set_current_step(0, 128)
step("paint", lambda: layer.paint((128, 1000, 1000), 7))
step("fill a plane", lambda: layer.fill((128, 10, 10), 9))
step("undo", layer.undo)
step("3D", lambda: (setattr(viewer.dims, "ndisplay", 3),
                    viewer.screenshot(canvas_only=True, flash=False)))
step("back to 2D", lambda: setattr(viewer.dims, "ndisplay", 2))
step("undo the paint after 3D", layer.undo)
assert not layer.data[128, 1000, 1000]
def save():
    job = tool.save(os.path.join(sys.argv[1], "labels.tif"))
    while not job.done:
        QApplication.processEvents(); time.sleep(0.01)
    assert job.error is None, job.error
step("save", save)
print("RESULT " + json.dumps(steps))
viewer.close()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "WORK"))
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one_plane(int(args.one[0]), args.one[1])))
        sys.stdout.flush()
        os._exit(0)
    base = Path(args.workdir or tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="ndi-bench-labels-", dir=base))
    results: dict = {"machine": machine(), "planes": {}}
    try:
        for side in (4096, 32768):
            log(f"{side} x {side} plane")
            proc = subprocess.run(
                [sys.executable, __file__, "--one", str(side), str(work)],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            results["planes"][side] = (
                json.loads(line[-1][7:]) if line else {"failed": proc.stderr[-500:]}
            )
        if os.geteuid() == 0:
            import memcap

            log("4 GiB labels volume under a 1 GiB cap")
            res = memcap.run_capped(
                GiB, [sys.executable, "-c", CAPPED, str(work)], timeout=900
            )
            line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
            results["capped"] = {
                "verdict": res.verdict,
                "cgroup_peak": res.peak_bytes,
                "steps": json.loads(line[-1][7:]) if line else None,
                "stderr": None if line else res.stderr[-500:],
            }
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (DOCS / "benchmarks-labels.json").write_text(json.dumps(results, indent=1))
    write_report(results)


def write_report(r: dict) -> None:
    m = r["machine"]
    lines = [
        f"Run {m['date']}, {m['cpus']} cores, napari under Xvfb (Mesa llvmpipe).",
        "",
        "| labels plane (uint32) | brush stroke, event to next draw: median | p95 "
        "| 2D fill of the plane | in the file |",
        "| --- | --- | --- | --- | --- |",
    ]
    for side, p in r["planes"].items():
        if "stroke" not in p:
            lines.append(
                f"| {side} x {side} | failed: {p.get('failed', '')[:60]} | | | |"
            )
            continue
        fill = f"{p['fill_seconds']:.2f} s" if "fill_seconds" in p else "-"
        how = " (paint window)" if p["windowed"] else ""
        lines.append(
            f"| {side} x {side}{how} | {p['stroke']['median_ms']:.0f} ms | "
            f"{p['stroke']['p95_ms']:.0f} ms | {fill} | "
            f"{'yes' if p['stroke_in_file'] else 'NO'} |"
        )
    c = r.get("capped")
    if c:
        steps = c.get("steps") or {}
        done = ", ".join(f"{k} {v:.2f} s" for k, v in steps.items())
        lines += [
            "",
            f"4 GiB labels volume (256 x 2048 x 2048 uint32) under a 1 GiB cap for "
            f"the whole napari process: **{c['verdict']}** ({done or c['stderr']}); "
            f"cgroup peak {c['cgroup_peak'] / 2**20:.0f} MiB (page cache included).",
        ]
    text = "\n".join(lines) + "\n"
    write_section(DOCS / "benchmarks.md", "labels", "Painting labels", text)


if __name__ == "__main__":
    main()
