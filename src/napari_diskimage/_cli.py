"""The ``napari-diskimage`` command: the demo, and the operations for a terminal.

For servers and batch jobs where there is no napari, the same operations
as the Python API, with a terminal progress bar (tqdm) on stderr:

* ``napari-diskimage info FILE``: geometry, storage and what the plugin
  does with the file;
* ``napari-diskimage copy SRC DST`` (also ``save``): the pixels of SRC
  into a new TIFF or RAW file DST (by its suffix), streamed and atomic;
* ``napari-diskimage process OPERATION SRC DST [--param value ...]``: an
  operation of :mod:`napari_diskimage.process`, its result saved to DST;
* ``napari-diskimage measure LABELS -o table.csv``: a table of every
  labelled object (:func:`napari_diskimage.measure.regionprops_table`);
* ``napari-diskimage porosity MASK [--profile AXIS]``: the porosity (and
  the per-slice profile as CSV);
* ``napari-diskimage view-cache FILE`` (``--clear``): build the view
  cache of FILE (remove every view cache);
* ``napari-diskimage demo``: napari on a large synthetic scan.

Exit status as a Unix tool's: 0 done, 1 failed (the message on stderr
names the file and the fix), 2 bad usage, 130 cancelled with Ctrl+C, 143
by SIGTERM (a batch scheduler's time limit), 129 by SIGHUP (the terminal
closed).  A cancelled or failed command leaves no partial file (output or
scratch) and never changes SRC.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._cli_common import (
    ProgressBar,
    UsageError,
    cluster_options,
    describe_file,
    open_input,
    raw_options,
    run_with_bar,
)
from ._cli_process import add_command, process_file, process_parsers
from ._napari.samples import DEFAULT_LARGE_SIZE, parse_size
from ._scratch import format_bytes, get_disk_image_dir

__all__ = ["main"]

EXAMPLES = """\
examples:
  napari-diskimage info scan.tif
  napari-diskimage copy scan_2048x2048x900_UInt16.raw scan.tif
  napari-diskimage process gaussian scan.tif smooth.tif --sigma 2
  napari-diskimage process threshold smooth.tif pores.tif --otsu dark
  napari-diskimage process threshold smooth.tif mask.tif --low 1200
  napari-diskimage measure labels.tif --intensity scan.tif -o pores.csv
  napari-diskimage porosity pores.tif --profile 0
  napari-diskimage process gaussian scan.tif smooth.tif --sigma 2 --slurm 8
  napari-diskimage demo --screenshot demo.png
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage, then exit status 2
        if message.endswith("required: COMMAND"):
            message += (
                " (info, copy, save, process, measure, porosity, view-cache or "
                "demo; see --help)"
            )
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="napari-diskimage",
        description=(
            "Disk images: image volumes larger than memory, opened not loaded. "
            "The same operations as in napari, for a terminal."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = add_command(
        commands,
        "info",
        help="what a file holds and what the plugin does with it",
        description="Geometry, storage and what napari-diskimage does with FILE "
        "(nothing but its header is read).",
        epilog="example:\n  napari-diskimage info scan.tif",
    )
    info.add_argument("file", type=Path, help="a TIFF or RAW file")
    raw_options(info)

    copy = add_command(
        commands,
        "copy",
        aliases=["save"],
        help="copy an image into a new TIFF or RAW file (streamed, atomic)",
        description="Copy the pixels of SRC into DST, a TIFF (.tif, .tiff) or "
        "RAW (.raw) file by its suffix, streaming with bounded memory; written "
        "under a temporary name and renamed when complete.",
        epilog="example:\n  napari-diskimage copy scan_2048x2048x900_UInt16.raw "
        "scan.tif",
    )
    copy.add_argument("src", type=Path, help="a TIFF or RAW file")
    copy.add_argument(
        "dst", type=Path, help="the new file (.tif, .tiff, .raw, .ome.zarr)"
    )
    raw_options(copy)
    cluster_options(copy)

    process_parsers(commands)
    _measure_parsers(commands)

    cache = add_command(
        commands,
        "view-cache",
        help="build the view cache of FILE (fast XZ/YZ views, averaged 3D)",
        description="Build the view cache of FILE in the disk-image directory "
        f"(now {get_disk_image_dir()}): a chunked, averaged multiscale OME-Zarr "
        "copy that napari-diskimage reads for views that are not XY. Reused "
        "while FILE is unchanged. --clear removes every view cache.",
        epilog="examples:\n  napari-diskimage view-cache scan.tif\n"
        "  napari-diskimage view-cache --clear",
    )
    cache.add_argument("file", type=Path, nargs="?", help="a TIFF, RAW or folder")
    cache.add_argument(
        "--clear", action="store_true", help="remove every view cache instead"
    )
    raw_options(cache)

    demo = add_command(
        commands,
        "demo",
        help="open napari on a large synthetic scan with the plugin's panel",
        description=(
            "Write a large synthetic uint16 scan into the disk-image "
            f"directory (now {get_disk_image_dir()}; set NAPARI_DISKIMAGE_DIR "
            "to change it) unless it is already there, then open it in napari "
            "without loading it, with the 'Disk images' panel docked."
        ),
        epilog="example:\n  xvfb-run -a napari-diskimage demo --screenshot demo.png",
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
    demo.add_argument(
        "--processed",
        action="store_true",
        help="also show a processing result and a painted labels layer",
    )
    return parser


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from ._quiet import quiet_tifffile
    from ._signals import Terminated, cancel_on_signals, exit_status

    parser = _parser()
    args = parser.parse_args(argv)
    name = f"napari-diskimage {args.command}"
    try:
        with cancel_on_signals(), quiet_tifffile():
            if args.command == "demo":
                return demo(args)
            if args.command == "info":
                print(describe_file(open_input(args.file, args)))
                return 0
            if args.command in ("copy", "save"):
                paths = [args.src, args.dst.absolute().parent]
                with _on_cluster(args, paths) as session:
                    copy_file(args, session)
                return 0
            if args.command == "process":
                with _on_cluster(args, [args.src]):
                    return process_file(args)
            if args.command == "measure":
                inputs = [args.labels] + ([args.intensity] if args.intensity else [])
                with _on_cluster(args, inputs):
                    return measure_file(args)
            if args.command == "view-cache":
                return view_cache_file(args)
            if args.command == "porosity":
                with _on_cluster(args, [args.mask]):
                    return porosity_file(args)
    except KeyboardInterrupt as exc:
        by = f" by {exc.name}" if isinstance(exc, Terminated) else ""
        print(f"\n{name}: cancelled{by}; no partial file was left", file=sys.stderr)
        _leave_now_if_blocks_in_flight(exit_status(exc))
        return exit_status(exc)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError, IndexError) as exc:
        from ._errors import error_message

        print(f"{name}: error: {error_message(exc)}", file=sys.stderr)
        return 1
    except ImportError as exc:  # a napari-only command without napari
        print(
            f"{name}: error: {exc}. The demo needs napari: pip install "
            "'napari-diskimage[all]'",
            file=sys.stderr,
        )
        return 1
    raise AssertionError(args.command)  # pragma: no cover - argparse checks


def _leave_now_if_blocks_in_flight(status: int) -> None:
    """Exit at once when blocks of the cancelled run are still computing.

    Their output is already deleted and they write nothing more (the run's
    cancel flag), but Python would wait at exit for dask's pool threads to
    finish them: seconds for a filter's block, minutes on a loaded disk.
    Only a cancelled command gets here, after its clean-up."""
    import threading

    if any(t.name.startswith("ndi-") and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


# --- terminal commands ---------------------------------------------------------
def copy_file(args: argparse.Namespace, session: Any = None) -> Path:
    import napari_diskimage as ndi

    image = open_input(args.src, args)
    with image:
        if args.dst.name.lower().endswith(".zarr"):  # OME-Zarr with a pyramid
            saved = run_with_bar(
                ndi.iter_save_ome_zarr(image, args.dst), f"copy to {args.dst.name}"
            )
        elif session is not None:  # one streamed copy on a worker
            saved = session.copy(image, args.dst, args.byte_order)
        else:
            saved = run_with_bar(
                ndi.iter_save(image, args.dst, args.byte_order),
                f"copy to {args.dst.name}",
            )
    print(f"wrote {saved} ({format_bytes(image.nbytes)})", file=sys.stderr)
    return saved


def view_cache_file(args: argparse.Namespace) -> int:
    import napari_diskimage as ndi

    if args.clear:
        freed = ndi.clear_view_caches()
        print(f"removed view caches: {format_bytes(freed)} freed", file=sys.stderr)
        return 0
    if args.file is None:
        raise UsageError("give FILE to build its view cache, or --clear")
    with open_input(args.file, args) as image:
        size = format_bytes(ndi.view_cache_size(image))
        print(f"view cache of {args.file.name}: at most {size}", file=sys.stderr)
        cache = run_with_bar(
            ndi.iter_view_cache(image), f"view cache of {args.file.name}"
        )
    with cache:
        print(cache.path)
    return 0


def _measure_parsers(commands: Any) -> None:
    from .measure import PROPERTIES

    measure = add_command(
        commands,
        "measure",
        help="a table (CSV) of every labelled object, out of core",
        description="Measure every object of LABELS (0 = background) block by "
        "block, as skimage.measure.regionprops_table, and write the table to a "
        "CSV file (complete or not at all). Properties: " + ", ".join(PROPERTIES),
        epilog="example:\n  napari-diskimage measure labels.tif --intensity "
        "scan.tif --properties label area centroid intensity_mean -o pores.csv",
    )
    measure.add_argument("labels", type=Path, help="a TIFF or RAW labels image")
    measure.add_argument(
        "--intensity", type=Path, metavar="IMAGE", help="image of the same sizes"
    )
    measure.add_argument(
        "--properties",
        nargs="+",
        choices=list(PROPERTIES),
        default=["label", "area", "bbox", "centroid", "equivalent_diameter_area"],
        metavar="NAME",
        help="properties to measure (default: label area bbox centroid "
        "equivalent_diameter_area)",
    )
    measure.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        metavar="S",
        help="voxel size along z y x (y x for a 2D image); default 1",
    )
    measure.add_argument(
        "-o", "--output", type=Path, required=True, help="the CSV file to write"
    )
    raw_options(measure)
    cluster_options(measure)

    porosity = add_command(
        commands,
        "porosity",
        help="print the porosity of a mask (fraction of nonzero voxels)",
        description="Print the fraction of nonzero voxels of MASK, read block "
        "by block; with --profile, that fraction for each slice along AXIS as "
        "CSV (slice,porosity).",
        epilog="example:\n  napari-diskimage porosity mask.tif --profile 0",
    )
    porosity.add_argument("mask", type=Path, help="a TIFF or RAW mask")
    porosity.add_argument(
        "--profile",
        type=int,
        metavar="AXIS",
        help="print the profile along AXIS (0 = z, 1 = y, 2 = x of a volume)",
    )
    raw_options(porosity)
    cluster_options(porosity)


def measure_file(args: argparse.Namespace) -> int:
    from .measure import measure_run, save_csv

    labels = open_input(args.labels, args)
    with labels:
        intensity = None if args.intensity is None else open_input(args.intensity, args)
        try:
            run = measure_run(labels, intensity, args.properties, spacing=args.spacing)
            table = run_with_bar(iter(run), f"measure {args.labels.name}")
        finally:
            if intensity is not None:
                intensity.close()
    saved = save_csv(table, args.output)
    print(f"wrote {saved} ({len(table)} objects)", file=sys.stderr)
    return 0


def porosity_file(args: argparse.Namespace) -> int:
    from .measure import porosity_run

    mask = open_input(args.mask, args)
    with mask:
        value = run_with_bar(iter(porosity_run(mask, args.profile)), "porosity")
    if args.profile is None:
        print(f"{value:.6g}")
    else:
        print("slice,porosity")
        for i, v in enumerate(value):
            print(f"{i},{v:.6g}")
    return 0


@contextlib.contextmanager
def _on_cluster(args: argparse.Namespace, paths: Sequence[Path] = ()) -> Iterator[Any]:
    """The cluster of --slurm / --scheduler while the command runs (None
    without them); at the end, which workers and SLURM jobs did the work.
    Closing it ends the SLURM jobs, also on failure and Ctrl+C."""
    from . import _cluster

    if args.slurm is None and args.scheduler is None:
        yield None
        return
    spec = _cluster.ClusterSpec(
        kind="slurm" if args.slurm is not None else "scheduler",
        address=args.scheduler or "",
        jobs=args.slurm or 0,
        cores=args.slurm_cores,
        memory=args.slurm_memory,
        walltime=args.slurm_walltime,
        queue=args.slurm_queue,
        account=args.slurm_account,
    )

    def say(text: str) -> None:
        print(f"napari-diskimage: {text}", file=sys.stderr, flush=True)

    with _cluster.Session(spec, say=say) as session:
        # the workers open the input and write into the disk-image directory
        folder = get_disk_image_dir()
        folder.mkdir(parents=True, exist_ok=True)  # checked before any work
        seen = [folder, *paths]
        session.check_paths([p for p in seen if Path(p).exists()])
        yield session
        say(session.report())


# --- the demo ------------------------------------------------------------------
def demo(args: argparse.Namespace) -> int:
    """``napari-diskimage demo``: :func:`napari_diskimage._napari.demo.demo`
    (imported here only: the other commands need no napari), with the
    terminal's progress bar while the sample scan is written."""
    from ._napari.demo import demo as run_demo

    bar = ProgressBar("writing the sample scan")
    try:
        return run_demo(
            args.size,
            screenshot=args.screenshot,
            processed=args.processed,
            progress=bar,
        )
    finally:
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
