"""What the ``napari-diskimage`` commands share: the RAW and cluster
options, opening an input (:func:`open_input`), what ``info`` prints
(:func:`describe_file`) and the progress bar on stderr
(:class:`ProgressBar`, :func:`run_with_bar`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ._scratch import format_bytes

__all__ = [
    "ProgressBar",
    "UsageError",
    "cluster_options",
    "describe_file",
    "open_input",
    "raw_options",
    "run_with_bar",
]


def raw_options(parser: argparse.ArgumentParser) -> None:
    raw = parser.add_argument_group(
        "RAW files", "geometry of a RAW input whose name does not carry it"
    )
    raw.add_argument(
        "--raw-type", dest="pixel_type", help="pixel type, e.g. UInt16, Real32, uint8"
    )
    raw.add_argument(
        "--raw-size",
        dest="raw_size",
        type=int,
        nargs="+",
        metavar="N",
        help="sizes x y [z [c [t]]]",
    )
    raw.add_argument(
        "--raw-offset", dest="offset", type=int, default=0, help="header bytes (0)"
    )
    raw.add_argument(
        "--byte-order",
        choices=("<", ">"),
        default="<",
        help="of the RAW input (and output): < little-endian (default), > big",
    )


def cluster_options(parser: argparse.ArgumentParser) -> None:
    """--slurm JOBS / --scheduler ADDRESS (process, copy, measure)."""
    group = parser.add_argument_group(
        "cluster",
        "run on SLURM jobs or a dask scheduler instead of this machine (the "
        "input and the disk-image directory must be on a file system every "
        "node sees); SLURM sizes not given here come from dask-jobqueue's "
        "config, ~/.config/dask/jobqueue.yaml",
    )
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--slurm",
        type=int,
        metavar="JOBS",
        help="start JOBS SLURM jobs of dask workers (dask-jobqueue), run, end them",
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="run on this dask scheduler"
    )
    group.add_argument("--slurm-cores", type=int, metavar="N", help="cores per job")
    group.add_argument("--slurm-memory", metavar="SIZE", help="per job, e.g. 16GB")
    group.add_argument("--slurm-walltime", metavar="HH:MM:SS", help="per job")
    group.add_argument("--slurm-queue", metavar="NAME", help="partition")
    group.add_argument("--slurm-account", metavar="NAME", help="account")


class UsageError(ValueError):
    """Options that do not fit the input (exit status 2, as argparse's)."""


def open_input(path: Path, args: argparse.Namespace) -> Any:
    """Open a TIFF, or a RAW file (geometry from the options or the name)."""
    import napari_diskimage as ndi

    from ._open import kind_of, open_any

    raw_options = [
        flag
        for flag, given in (
            ("--raw-type", args.pixel_type),
            ("--raw-size", args.raw_size),
            ("--raw-offset", args.offset),
        )
        if given
    ]
    kind = kind_of(path)
    if kind.name != "raw":
        what = {
            "tiff sequence": "a folder of TIFF slices",
            "tiff": "a TIFF file",
            "zarr": "a Zarr store",
        }
        _no_raw_options(raw_options, path, what.get(kind.name, f"a {kind.name}"))
        return open_any(path)
    geometry = None
    if args.raw_size or args.pixel_type:
        if not (args.raw_size and args.pixel_type):
            raise ValueError(
                "a RAW geometry needs both --raw-type (e.g. UInt16) and "
                "--raw-size X Y [Z [C [T]]]"
            )
        if len(args.raw_size) > 5:
            raise ValueError(
                f"--raw-size takes at most 5 sizes x y z c t, got {args.raw_size}"
            )
        geometry = ndi.Geometry(args.pixel_type, *args.raw_size)
    return open_any(
        path, geometry=geometry, offset=args.offset, byte_order=args.byte_order
    )


def _no_raw_options(given: list[str], path: Path, what: str) -> None:
    if given:
        raise UsageError(
            f"{' and '.join(given)} describe a RAW file; {str(path)!r} is {what}, "
            "whose header gives its geometry: leave them out"
        )


def describe_file(image: Any) -> str:
    """What ``napari-diskimage info`` prints for an open image."""
    from ._tiff import tiff_series

    g = image.geometry
    lines = [
        f"file: {image.path}",
        f"format: {image.kind.upper()}",
        f"geometry: {g}",
        f"shape (t, c, z, y, x): {image.shape}",
        f"pixel type: {image.dtype} "
        f"({'big' if image.byte_order == '>' else 'little'}-endian in the file)",
        f"pixels: {format_bytes(image.nbytes)}; "
        f"{'files' if len(image.files) > 1 else 'file'}: "
        f"{format_bytes(sum(f.stat().st_size for f in image.files))}",
    ]
    if image.spacing != (1.0, 1.0, 1.0) or image.unit:
        z, y, x = image.spacing
        lines.append(f"pixel size (x, y, z): {x:g} x {y:g} x {z:g} {image.unit or ''}")
    if image.kind == "tiff sequence":
        files = image.files
        lines.append(
            f"storage: {image.storage.describe()} ({files[0].name} ... "
            f"{files[-1].name})"
        )
        lines.append(
            "napari-diskimage: opens it at once (the first slice's header "
            "only), reads each slice when shown and checks its header then; "
            "read-only (copy it into one file to edit it)"
        )
    elif image.is_mapped:
        lines.append("storage: uncompressed and contiguous: memory-mapped")
        lines.append(
            "napari-diskimage: opens it at once without reading the pixels; "
            "shows strided planes on demand; edits in place only with mode 'r+'"
        )
    else:
        lines.append(
            f"storage: {image.storage.describe()}: decoded lazily, chunk by chunk"
        )
        lines.append(
            "napari-diskimage: opens it at once, decodes only the strips, "
            "tiles or chunks shown; read-only (copy it to edit)"
        )
    if image.kind == "tiff":
        series = tiff_series(image.path)
        if len(series) > 1:
            lines.append(f"series: {len(series)}")
            lines += [
                f"  {s.index}: {s.name} {s.shape} {s.dtype} {s.storage}"
                + (" (a reduced level)" if s.reduced else "")
                for s in series
            ]
        if len(image.display_levels) > 1:
            lines.append(f"stored resolution levels: {len(image.display_levels)}")
    return "\n".join(lines)


class ProgressBar:
    """A tqdm bar on stderr for ``(done_bytes, total_bytes)`` steps; when
    stderr is not a terminal (a log file, a batch job's output), a line
    every :data:`LOG_EVERY` of the work instead."""

    #: Fraction of the work between two progress lines in a log.
    LOG_EVERY = 0.1

    def __init__(self, what: str) -> None:
        self.what = what
        self.bar: Any = None
        self.logged = -1.0
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if not is_terminal(sys.stderr):
            self._log(done, total)
            return
        if self.bar is None:
            self.bar = tqdm(
                total=total,
                desc=self.what,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                leave=True,
                disable=None,  # no bar when stderr is not a terminal
            )
        self.bar.update(done - self.bar.n)

    def _log(self, done: int, total: int) -> None:
        fraction = done / total if total > 0 else 1.0
        if fraction < 1.0 and fraction < self.logged + self.LOG_EVERY:
            return
        if fraction >= 1.0 and self.logged >= 1.0:
            return
        self.logged = fraction
        print(
            f"{self.what}: {100 * fraction:.0f} % ({format_bytes(done)} of "
            f"{format_bytes(total)}, {time.perf_counter() - self.start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def run_with_bar(steps: Any, what: str) -> Any:
    from ._steps import run_steps

    bar = ProgressBar(what)
    try:
        return run_steps(steps, bar)
    finally:
        bar.close()
