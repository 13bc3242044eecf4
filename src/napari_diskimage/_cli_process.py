"""``napari-diskimage process``: an operation of
:mod:`napari_diskimage.process` run on SRC, its result saved to DST; its
parameters become options (``--sigma 2``), ``threshold`` takes ``--otsu``,
``otsu`` prints Otsu's threshold.  Part of :mod:`napari_diskimage._cli`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._cli_common import (
    UsageError,
    cluster_options,
    open_input,
    raw_options,
    run_with_bar,
)

__all__ = ["add_command", "process_file", "process_parsers"]


def add_command(
    commands: Any, name: str, help: str, description: str, epilog: str, **kwargs: Any
) -> argparse.ArgumentParser:
    """A subcommand of ``commands`` as every command of the CLI has it: a
    one-line ``help``, a ``description`` and an ``epilog`` of examples
    shown as written."""
    return commands.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def process_parsers(commands: Any) -> None:
    """Add ``process`` and its operations to the subcommands ``commands``."""
    from .process import OPERATIONS

    proc = add_command(
        commands,
        "process",
        "run a processing operation out of core, save the result",
        "Run an operation of napari_diskimage.process on SRC, block "
        "by block (memory bounded whatever the size), and save the result to DST "
        "(a DST ending in .zarr is written straight into an OME-Zarr store, chunk "
        "by chunk, with its pyramid).",
        "examples:\n  napari-diskimage process gaussian scan.tif smooth.tif "
        "--sigma 2\n  napari-diskimage process gaussian scan.tif smooth.ome.zarr "
        "--sigma 2\n  napari-diskimage process otsu smooth.tif",
    )
    ops = proc.add_subparsers(dest="operation", required=True, metavar="OPERATION")
    for key, op in OPERATIONS.items():
        sub = ops.add_parser(key, help=op.title, description=op.title)
        sub.add_argument("src", type=Path)
        sub.add_argument("dst", type=Path, help="the result (.tif, .raw, .ome.zarr)")
        for p in op.parameters:
            _add_parameter(sub, p)
        if key == "threshold":
            _otsu_option(sub)
        raw_options(sub)
        cluster_options(sub)
    otsu = ops.add_parser("otsu", help="print Otsu's threshold of the whole image")
    otsu.add_argument("src", type=Path)
    raw_options(otsu)
    cluster_options(otsu)


def _add_parameter(parser: argparse.ArgumentParser, p: Any) -> None:
    flag = "--" + p.name.replace("_", "-")
    helptext = p.help or p.name.replace("_", " ")
    if p.kind == "int":
        parser.add_argument(flag, dest=p.name, type=int, default=p.default,
                            help=f"{helptext} (default {p.default})")  # fmt: skip
    elif p.kind in ("float", "optional float"):
        parser.add_argument(flag, dest=p.name, type=float, default=p.default,
                            help=f"{helptext} (default {p.default})")  # fmt: skip
    elif p.kind == "choice":
        parser.add_argument(flag, dest=p.name, choices=p.choices, default=p.default,
                            help=f"{helptext} (default {p.default})")  # fmt: skip
    elif p.kind == "bool":
        parser.add_argument(flag, dest=p.name, action=argparse.BooleanOptionalAction,
                            default=p.default, help=helptext)  # fmt: skip
    else:  # an image or a number
        helptext = "a number, or a TIFF/RAW file of the same size"
        parser.add_argument(flag, dest=p.name, default=str(p.default), help=helptext)


def _otsu_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--otsu",
        choices=("dark", "bright"),
        help="the dark phase (value <= Otsu's threshold of SRC, e.g. the pores "
        "of a scan) or the bright one (value >= it); one pass over SRC first",
    )
    parser.epilog = (
        "give --low, --high (or both) or --otsu dark|bright; e.g.\n"
        "  napari-diskimage process threshold scan.tif pores.tif --otsu dark"
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _threshold_bounds(args: argparse.Namespace) -> None:
    """Check the bounds of ``process threshold``; ``--otsu`` fills in one."""
    if args.otsu is None:
        if args.low is None and args.high is None:
            raise UsageError(
                "threshold needs a bound: --low VALUE (keep value >= VALUE), "
                "--high VALUE (keep value <= VALUE), both, or --otsu dark|bright "
                "(Otsu's threshold of SRC as --high for the dark phase, as --low "
                "for the bright one)"
            )
        return
    sets = "high" if args.otsu == "dark" else "low"
    if getattr(args, sets) is not None:
        raise UsageError(
            f"--otsu {args.otsu} sets --{sets} to Otsu's threshold; leave out "
            f"--{sets} (or --otsu)"
        )


def process_file(args: argparse.Namespace) -> int:
    import napari_diskimage as ndi
    from napari_diskimage import process
    from napari_diskimage.process._engine import CANCEL_WAIT
    from napari_diskimage.process._out import make_run_to

    image = open_input(args.src, args)
    with image:
        if args.operation == "otsu":
            value = run_with_bar(iter(process.otsu.run(image)), "otsu")
            print(f"{value:g}")
            return 0
        op = process.OPERATIONS[args.operation]
        params = {p.name: getattr(args, p.name) for p in op.parameters}
        if args.operation == "threshold":
            _threshold_bounds(args)
            if args.otsu is not None:
                value = run_with_bar(iter(process.otsu.run(image)), "otsu")
                params["high" if args.otsu == "dark" else "low"] = value
                print(
                    f"Otsu's threshold: {value:g}; the {args.otsu} phase is "
                    f"value {'<=' if args.otsu == 'dark' else '>='} {value:g}",
                    file=sys.stderr,
                )
        others = []
        for p in op.parameters:
            if p.kind == "image or number":
                params[p.name], opened = _image_or_number(params[p.name], args)
                others += opened
        try:
            # DST.ome.zarr: the blocks are written straight into the store
            to_zarr = args.dst.name.endswith(".zarr")
            run = make_run_to(
                op.make_run, (image,), params, args.dst if to_zarr else None,
                labels=op.labels_result,
            )  # fmt: skip
            run.cancel_wait = CANCEL_WAIT  # Ctrl+C, SIGTERM: out within a second
            out = run_with_bar(iter(run), args.operation)
            with out:
                saved = out.path if to_zarr else run_with_bar(
                    ndi.iter_save(out, args.dst, args.byte_order),
                    f"save {args.dst.name}",
                )  # fmt: skip
        finally:
            for other in others:
                other.close()
    if "n_labels" in run.info:
        print(f"{run.info['n_labels']} components")
    print(f"wrote {saved}", file=sys.stderr)
    return 0


def _image_or_number(text: str, args: argparse.Namespace) -> tuple[Any, list[Any]]:
    try:
        return float(text), []
    except ValueError:
        pass
    other = open_input(Path(text), args)
    return other, [other]
