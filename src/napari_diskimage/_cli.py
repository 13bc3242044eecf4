"""The ``napari-diskimage`` console command.

``napari-diskimage demo [--size 4GiB] [--screenshot PATH]`` writes the large
sample volume into the disk-image directory (once; reused afterwards), opens
napari with it and docks the plugin's widgets.  With ``--screenshot`` it
renders the window to a PNG and exits instead, so it also runs headless
under ``xvfb-run``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._napari.samples import DEFAULT_LARGE_SIZE, large_sample_geometry, parse_size
from ._scratch import format_bytes, get_disk_image_dir

__all__ = ["main"]

PLUGIN = "napari-diskimage"
WINDOW_SIZE = (1280, 800)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-diskimage",
        description="Disk images for napari: volumes larger than memory.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="open napari with a large synthetic volume and the plugin's widgets",
        description=(
            "Write a large synthetic uint16 volume into the disk-image "
            f"directory (now {get_disk_image_dir()}; set NAPARI_DISKIMAGE_DIR "
            "to change it) unless it is already there, then open it in napari "
            "without loading it, with the plugin's widgets docked."
        ),
    )
    demo.add_argument(
        "--size",
        type=_size,
        default=DEFAULT_LARGE_SIZE,
        help="size of the volume, e.g. 4GiB (default), 512MiB, 20GiB",
    )
    demo.add_argument(
        "--screenshot",
        type=Path,
        metavar="PATH",
        help="render the window to this PNG file and exit (works under xvfb-run)",
    )
    return parser


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        try:
            return demo(args.size, screenshot=args.screenshot)
        except (OSError, ValueError) as exc:
            print(f"napari-diskimage demo: {exc}", file=sys.stderr)
            return 1
    raise AssertionError(args.command)  # pragma: no cover - argparse checks


def demo(size: int | str = DEFAULT_LARGE_SIZE, screenshot: Path | None = None) -> int:
    """Open napari on the large sample volume (written first if missing)."""
    from ._napari.samples import large_sample_path

    if _no_display():
        how = "render it headless with" if screenshot else "or run"
        raise OSError(
            "napari needs a display and none was found ($DISPLAY and "
            f"$WAYLAND_DISPLAY are unset); {how} 'xvfb-run -a napari-diskimage "
            "demo --screenshot demo.png'"
        )
    geometry = large_sample_geometry(size)
    path = large_sample_path(size, progress=_TerminalProgress(geometry.nbytes))
    print(f"opening {path} ({geometry}, {format_bytes(geometry.nbytes)})")

    import napari

    viewer = napari.Viewer(title=f"napari-diskimage demo: {path.name}")
    viewer.window.resize(*WINDOW_SIZE)
    start = time.perf_counter()
    layers = viewer.open(path, plugin=PLUGIN)
    print(f"opened in {time.perf_counter() - start:.2f} s")
    for name in dock_plugin_widgets(viewer):
        print(f"docked widget: {name}")
    if layers:
        viewer.dims.set_current_step(0, viewer.dims.nsteps[0] // 2)
    _process_events()
    viewer.window.resize(*WINDOW_SIZE)  # docking may have grown it
    _process_events()
    viewer.reset_view()
    if screenshot is not None:
        _process_events()
        viewer.screenshot(str(screenshot), canvas_only=False)
        print(f"screenshot written to {screenshot}")
        viewer.close()
        return 0
    napari.run()
    return 0


def dock_plugin_widgets(viewer: Any) -> list[str]:
    """Dock every widget this plugin's manifest declares; return their names.

    A widget that fails to load is reported on stderr and skipped, so the
    demo still opens while widgets are being developed.
    """
    from npe2 import PluginManager

    try:
        manifest = PluginManager.instance().get_manifest(PLUGIN)
    except KeyError:  # pragma: no cover - the plugin is not installed
        return []
    docked: list[str] = []
    first = None
    for widget in manifest.contributions.widgets or []:
        try:
            # tabs in one dock: the canvas keeps its room
            dock, _ = viewer.window.add_plugin_dock_widget(
                PLUGIN, widget.display_name, tabify=bool(docked)
            )
        except Exception as exc:  # a broken widget must not stop the demo
            print(
                f"could not dock widget {widget.display_name!r}: {exc}",
                file=sys.stderr,
            )
        else:
            docked.append(widget.display_name)
            first = first or dock
    if first is not None:
        _process_events()  # napari tabifies the docks once shown
        first.raise_()  # show the first widget's tab
    return docked


def _no_display() -> bool:
    """True on Linux without an X or Wayland display (Qt would abort)."""
    if not sys.platform.startswith("linux"):
        return False
    env = os.environ
    if env.get("QT_QPA_PLATFORM", "").split(":")[0] not in ("", "xcb", "wayland"):
        return False  # e.g. offscreen, vnc: the user chose a platform
    return not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def _process_events() -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        for _ in range(3):
            app.processEvents()


class _TerminalProgress:
    """Prints "writing ... 42 %" on one terminal line, at most each 1 %."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // max(1, total)
        if percent != self.last:
            self.last = percent
            end = "\n" if done >= total else ""
            print(
                f"\rwriting the sample volume ({format_bytes(total)}): {percent:3d} %",
                end=end,
                file=sys.stderr,
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
