"""Tables, target checks and plot from the results of ``run.py``.

``python benchmarks/report.py docs/benchmarks.json`` re-renders
``docs/benchmarks.md`` (between its ``results`` markers) and
``docs/benchmarks.png`` without running anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BEGIN = "<!-- results:begin (written by benchmarks/run.py) -->"
END = "<!-- results:end -->"

NAMES = {
    "builtin": "napari built-in reader",
    "memmap": "tifffile.memmap + add_image",
    "plugin": "**napari-diskimage reader**",
    "open_tiff": "**ndi.open_tiff** alone",
    "plugin_direct": "**its reader + add_image** (no viewer.open)",
    "cp": "`cp`",
    "numpy": "numpy memmap copy",
    "ndi": "**napari-diskimage**",
    "imread": "tifffile.imread + imwrite",
}
COPY_NAMES = {**NAMES, "ndi": "**ndi.copy**"}
SAVE_NAMES = {
    **NAMES,
    "memmap": "tifffile.imwrite(tifffile.memmap)",
    "ndi": "**ndi.save_tiff**",
}
OURS = {"plugin", "plugin_direct", "open_tiff", "ndi"}


def _f(v: Any, digits: int = 2, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}{unit}"
        if abs(v) >= 10:
            return f"{v:.1f}{unit}"
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def _mib(v: float | None) -> str:
    return "–" if v is None else f"{_f(v)} MiB"


def _ratio(value: float | None, best: float | None) -> str:
    if value is None or not best:
        return "–"
    return f"{value / best:.2f}×"


def _best(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [
        r[key]
        for r in rows
        if r.get("method") not in OURS and not r.get("error") and r.get(key) is not None
    ]
    return min(vals) if vals else None


def _err(r: dict[str, Any]) -> str | None:
    return f"failed: {r['error']}" if r.get("error") else None


def _by_size(rows: list[dict[str, Any]]) -> dict[float, list[dict[str, Any]]]:
    out: dict[float, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["size"], []).append(r)
    return out


def _cold(rows: list[dict[str, Any]]) -> str:
    flags = {bool(r.get("cold")) for r in rows if not r.get("error")}
    return (
        "cold cache"
        if flags == {True}
        else "warm cache"
        if flags == {False}
        else ("mixed cold/warm cache")
    )


def table_open(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        f"### 1. Open a TIFF into a napari viewer ({_cold(rows)})",
        "",
        "Time from the call until the canvas has drawn the final view; memory is "
        "what the process added during the open (peak resident set; anonymous "
        "memory in brackets: the part the kernel cannot drop). Ratios are to the "
        "best competitor (time / memory).",
        "",
        "| size | method | time to view | ratio | peak memory added | ratio | "
        "read from the file | read from disk |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size, group in _by_size(rows).items():
        t_best, m_best = _best(group, "time"), _best(group, "peak_delta")
        for r in group:
            name = NAMES[r["method"]]
            if _err(r):
                out.append(f"| {size:g} GiB | {name} | {_err(r)} | | | | | |")
                continue
            t = r["time"]
            mem = f"{_f(r['peak_delta'])} MiB ({_f(r.get('peak_anon_delta'))})"
            out.append(
                f"| {size:g} GiB | {name} | {_ms(t)} | {_ratio(t, t_best)} | {mem} | "
                f"{_ratio(r['peak_delta'], m_best)} | {_mib(r.get('file_read'))} | "
                f"{_f(r.get('read'))} MiB |"
            )
    return out


def table_copy_save(
    rows: list[dict[str, Any]], title: str, names: dict, cp: dict[float, float]
) -> list[str]:
    n = max((len(r.get("times", [])) for r in rows), default=1)
    out = [
        f"### {title} ({_cold(rows)}, fastest of {n} runs)",
        "",
        "Time as the user waits for it (the kernel writes the last dirty pages "
        "back afterwards), and until the output is on disk (fsync). Ratios are to "
        "the best competitor; `× cp` is the time over `cp` of the same file.",
        "",
        "| size | method | time | ratio | × cp | time to disk | peak memory added "
        "| ratio |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size, group in _by_size(rows).items():
        t_best, m_best = _best(group, "time"), _best(group, "peak_delta")
        for r in group:
            name = names[r["method"]]
            if _err(r):
                out.append(f"| {size:g} GiB | {name} | {_err(r)} | | | | | |")
                continue
            anon = r.get("peak_anon_delta")
            mem = f"{_f(r['peak_delta'])} MiB" + (
                f" ({_f(anon)})" if anon is not None else ""
            )
            out.append(
                f"| {size:g} GiB | {name} | {_ms(r['time'])} | "
                f"{_ratio(r['time'], t_best)} | {_ratio(r['time'], cp.get(size))} | "
                f"{_ms(r.get('time_fsync'))} | {mem} | "
                f"{_ratio(r['peak_delta'], m_best)} |"
            )
    return out


def table_zstep(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    size = rows[0]["size"]
    out = [
        f"### 4. z-step latency, {size:g} GiB volume of 2048 × 4096 uint16 planes",
        "",
        "From `viewer.dims.set_current_step` to the end of the next canvas draw, "
        "stepping through planes never read before (cold cache) and back "
        "(warm). Ratios are p95 over the best competitor's p95.",
        "",
        "| method | cold median | cold p95 | ratio | warm median | warm p95 | "
        "file read per step | level shown |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    best = _best(rows, "cold_p95")
    for r in rows:
        name = NAMES[r["method"]]
        if _err(r):
            out.append(f"| {name} | {_err(r)} | | | | | | |")
            continue
        level = (
            f"level {r['data_level']} of {r['levels']}"
            if r.get("multiscale")
            else "full resolution"
        )
        out.append(
            f"| {name} | {_f(r['cold_median'], 1)} ms | {_f(r['cold_p95'], 1)} ms | "
            f"{_ratio(r['cold_p95'], best)} | {_f(r['warm_median'], 1)} ms | "
            f"{_f(r['warm_p95'], 1)} ms | {_mib(r.get('file_read'))} | {level} |"
        )
    return out


def table_plane(rows: list[dict[str, Any]], side: int) -> list[str]:
    if not rows:
        return []
    gib = side * side * 2 / 2**30
    out = [
        f"### 5. A {side} × {side} uint16 plane ({gib:g} GiB) ({_cold(rows)})",
        "",
        "Time until the first view is on screen (first draw) and until it is "
        "final (multiscale: the right level drawn); bytes read from the disk "
        "(`/proc/self/io`) and, for this plugin, bytes the reader asked for "
        "(`DiskImage.bytes_read`).",
        "",
        "| method | first draw | final view | ratio | read from the file | "
        "bytes_read | read from disk | peak memory added |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    best = _best(rows, "time")
    for r in rows:
        name = NAMES[r["method"]]
        if _err(r):
            out.append(f"| {name} | {_err(r)} | | | | | | |")
            continue
        out.append(
            f"| {name} | {_ms(r['time_first_draw'])} | {_ms(r['time'])} | "
            f"{_ratio(r['time'], best)} | {_mib(r.get('file_read'))} | "
            f"{_mib(r.get('bytes_read'))} | {_f(r['read'])} MiB | "
            f"{_f(r['peak_delta'])} MiB ({_f(r.get('peak_anon_delta'))}) |"
        )
    return out


def table_load_plane(rows: list[dict[str, Any]], side: int) -> list[str]:
    if not rows:
        return []
    out = [
        f"### 6. `load_plane` of the {side} × {side} plane ({_cold(rows)})",
        "",
        "| stride | result | time | bytes_read | read from the file | "
        "peak memory added |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if _err(r):
            out.append(f"| {r['stride']} | {_err(r)} | | | | |")
            continue
        shape = " × ".join(str(n) for n in r["shape"])
        out.append(
            f"| {r['stride']} | {shape} | {_ms(r['time'])} | {_f(r['bytes_read'])} MiB "
            f"| {_mib(r.get('file_read'))} | {_f(r['peak_delta'])} MiB |"
        )
    return out


def table_caps(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["### 7. Memory caps", "", "Not run (needs root and cgroups)."]
    size = rows[0]["size"]
    out = [
        f"### 7. Under memory caps ({size:g} GiB volume)",
        "",
        "Each run in a fresh memory cgroup (`benchmarks/memcap.py`); the cgroup "
        "peak counts page cache, which the kernel reclaims under the cap, so it "
        "sits near the cap for file-heavy work: survival is the test.",
        "",
        "| run | cap | result | exit | cgroup peak | steps completed (s) |",
        "|---|---:|---|---:|---:|---|",
    ]
    for r in rows:
        steps = ", ".join(r.get("done") or []) or "– (no steps: one operation)"
        verdict = r["verdict"]
        if "out of memory" in (r.get("stderr_tail") or ""):
            verdict += " (OpenGL: out of memory)"
        elif r.get("error"):
            verdict += f": {r['error']}"
        out.append(
            f"| {r['name']} | {r['cap']:.0f} MiB | {verdict} | {r['exit']} | "
            f"{r['cgroup_peak']:.0f} MiB | {steps} |"
        )
    return out


def _get(rows: list[dict[str, Any]], **kw: Any) -> dict[str, Any] | None:
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()) and not r.get("error"):
            return r
    return None


def targets(res: dict[str, Any]) -> list[str]:
    """One line per target: measured value and met / missed by how much."""
    lines = ["### Targets", "", "| target | measured | |", "|---|---|---|"]

    def add(target: str, measured: str, ok: bool | None) -> None:
        mark = "–" if ok is None else "met" if ok else "**missed**"
        lines.append(f"| {target} | {measured} | {mark} |")

    opens = res.get("open", [])
    sizes = res.get("sizes", [])
    for method, limit, label in (
        ("plugin", 0.5, "open into a viewer < 0.5 s (viewer.open)"),
        ("plugin_direct", 0.5, "open into a viewer < 0.5 s (reader + add_image)"),
        ("open_tiff", 0.020, "open_tiff alone < 20 ms (cold cache, first call)"),
    ):
        vals = [(_get(opens, size=s, method=method) or {}).get("time") for s in sizes]
        if any(v is None for v in vals) or not vals:
            add(label, "not measured", None)
            continue
        text = ", ".join(
            f"{_ms(v)} ({s:g} GiB)" for v, s in zip(vals, sizes, strict=True)
        )
        if method == "open_tiff":
            warm = [
                (_get(opens, size=s, method=method) or {}).get("warm_median")
                for s in sizes
            ]
            if None not in warm:
                text += f"; warm {_ms(min(warm))} to {_ms(max(warm))}"
        add(label, text, max(vals) < limit)
    mem = [
        (_get(opens, size=s, method="plugin") or {}).get("peak_delta") for s in sizes
    ]
    if mem and None not in mem:
        add(
            "open: peak memory flat in size",
            ", ".join(f"{m:.0f} MiB" for m in mem),
            max(mem) - min(mem) < 64,
        )
    for key, label in (("copy", "copy"), ("save", "save_tiff")):
        rows = res.get(key, [])
        for s in sizes:
            cp = _get(res.get("copy", []), size=s, method="cp")
            ours = _get(rows, size=s, method="ndi")
            if not cp or not ours:
                add(f"{label} ≤ 1.2 × cp, < 128 MiB ({s:g} GiB)", "not measured", None)
                continue
            ratio = ours["time"] / cp["time"]
            add(
                f"{label} ≤ 1.2 × cp, peak < 128 MiB ({s:g} GiB)",
                f"{ratio:.2f} × cp, {ours['peak_delta']:.0f} MiB",
                ratio <= 1.2 and ours["peak_delta"] < 128,
            )
    z = _get(res.get("zstep", []), method="plugin")
    add(
        "z-step p95 < 50 ms",
        f"{z['cold_p95']:.1f} ms cold, {z['warm_p95']:.1f} ms warm"
        if z
        else "not measured",
        (z["cold_p95"] < 50) if z else None,
    )
    p = _get(res.get("plane", []), method="plugin")
    if p:
        fr = p.get("file_read") or p["read"]
        add(
            "first view of the 2 GiB plane reads ≤ 64 MiB",
            f"{fr:.1f} MiB of the file from disk ({p.get('bytes_read', 0):.1f} MiB "
            "bytes_read, some of it twice from the page cache)",
            fr <= 64,
        )
    else:
        add("first view of the 2 GiB plane reads ≤ 64 MiB", "not measured", None)
    caps = res.get("caps", [])
    for r in caps:
        if "core" in r["name"] or "this plugin" in r["name"]:
            add(
                f"survives its cap: {r['name']}",
                r["verdict"],
                r["verdict"] == "survived",
            )
    return lines


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    side = res.get("plane_side", 32768)
    cp = {
        r["size"]: r["time"]
        for r in res.get("copy", [])
        if r["method"] == "cp" and not r.get("error")
    }
    parts = [
        BEGIN,
        "",
        f"Run {m['date']} on {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, "
        f"disk {m['disk']} ({res.get('workdir_fs', m['fs'])}), Linux {m['kernel']}; "
        f"Python {m['python']}, napari {m['napari']}, numpy {m['numpy']}, tifffile "
        f"{m['tifffile']}, napari-diskimage {m['napari_diskimage']}. Load average "
        f"at start {', '.join(f'{x:.1f}' for x in res.get('load', []))} (the cores "
        f"were shared with other work). Whole run: "
        f"{res.get('total_seconds', 0) / 60:.1f} min.",
        "",
        "![open time and memory, copy and save time against file size](benchmarks.png)",
        "",
    ]
    parts += [*targets(res), ""]
    if res.get("open"):
        parts += [*table_open(res["open"]), ""]
    if res.get("copy"):
        parts += [*table_copy_save(res["copy"], "2. Copy", COPY_NAMES, cp), ""]
    if res.get("save"):
        parts += [*table_copy_save(res["save"], "3. Save to TIFF", SAVE_NAMES, cp), ""]
    parts += [*table_zstep(res.get("zstep", [])), ""]
    parts += [*table_plane(res.get("plane", []), side), ""]
    parts += [*table_load_plane(res.get("load_plane", []), side), ""]
    parts += [*table_caps(res.get("caps", [])), "", END]
    return "\n".join(parts)


def _plain(name: str) -> str:
    return name.replace("*", "").replace("`", "")


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=80)
    series = [
        (
            "open",
            "time",
            axes[0],
            "open into viewer: time to view (s)",
            ("builtin", "memmap", "plugin", "plugin_direct", "open_tiff"),
        ),
        (
            "open",
            "peak_delta",
            axes[1],
            "open into viewer: memory added (MiB)",
            ("builtin", "memmap", "plugin", "plugin_direct"),
        ),
    ]
    for key, field, ax, title, methods in series:
        rows = res.get(key, [])
        for method in methods:
            pts = [
                (r["size"], r[field])
                for r in rows
                if r["method"] == method
                and not r.get("error")
                and r.get(field) is not None
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(
                    xs, [max(y, 1e-3) for y in ys], "o-", label=_plain(NAMES[method])
                )
        ax.set_title(title, fontsize=9)
    ax = axes[2]
    for key, names in (("copy", COPY_NAMES), ("save", SAVE_NAMES)):
        for method in ("cp", "numpy", "ndi", "imread", "memmap"):
            pts = [
                (r["size"], r["time"])
                for r in res.get(key, [])
                if r["method"] == method and not r.get("error")
            ]
            if pts and not (key == "save" and method == "cp"):
                xs, ys = zip(*pts, strict=True)
                style = "-" if key == "copy" else "--"
                ax.plot(xs, ys, "o" + style, label=f"{key}: {_plain(names[method])}")
    ax.set_title("copy / save: time (s)", fontsize=9)
    sizes = res.get("sizes", [])
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("file size (GiB)", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_section(md: Path, key: str, heading: str, text: str) -> None:
    """Put ``text`` between the ``<!-- key:begin -->`` and ``<!-- key:end -->``
    markers of ``md``, or append them under ``## heading`` the first time.
    Each benchmark script (process, view3d, sequence, labels) owns one."""
    doc = md.read_text()
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    if begin in doc:
        head, rest = doc.split(begin, 1)
        doc = f"{head}{begin}\n{text}{end}{rest.split(end, 1)[1]}"
    else:
        doc += f"\n## {heading}\n\n{begin}\n{text}{end}\n"
    md.write_text(doc)


def write(res: dict[str, Any], out: Path) -> None:
    doc = out / "benchmarks.md"
    section = markdown(res)
    if doc.exists() and BEGIN in (text := doc.read_text()) and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = f"# Benchmarks\n\n{section}\n"
    doc.write_text(text)
    plot(res, out / "benchmarks.png")


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks.json")
    write(json.loads(src.read_text()), src.parent)
