"""Listing a folder of TIFF slices (for :func:`napari_diskimage.open_tiff_sequence`).

Listing, natural ordering and the checks a user needs at open (an empty
folder, gaps in the numbering) live here; how the slices are opened and
read is :mod:`napari_diskimage.storage.sequence`.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import warnings
from pathlib import Path

from ._files import TIFF_SUFFIXES

__all__ = ["SequenceGapWarning", "find_slices", "list_sequence", "natural_key"]

_DIGITS = re.compile(r"(\d+)")
_GLOB = re.compile(r"[*?\[]")


class SequenceGapWarning(UserWarning):
    """The slice numbering of a folder has gaps (missing files)."""


def natural_key(path: Path) -> tuple:
    """Sort key putting ``slice_2`` before ``slice_10``."""
    parts = _DIGITS.split(path.name)
    return tuple(
        (0, int(p), p) if i % 2 else (1, p.lower(), p) for i, p in enumerate(parts)
    )


def find_slices(
    path: str | os.PathLike[str], pattern: str | None = None
) -> tuple[Path, list[Path], int]:
    """``(folder, slice files in natural order, other files)`` of a folder
    (TIFF files, hidden files skipped) or of a glob pattern."""
    text = os.fspath(path)
    if pattern is None and _GLOB.search(Path(text).name):
        folder, pattern = Path(text).parent, Path(text).name
    else:
        folder = Path(text)
    folder = folder.expanduser()
    if not folder.exists():
        raise FileNotFoundError(
            errno.ENOENT, f"no such folder: {str(folder)!r}", str(folder)
        )
    if not folder.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"{str(folder)!r} is a file, not a folder of slices: open it with "
            "open_tiff or open_raw",
            str(folder),
        )
    files: list[Path] = []
    others = 0
    try:
        entries = list(os.scandir(folder))
    except PermissionError as exc:
        raise PermissionError(
            exc.errno, f"cannot list the folder {str(folder)!r}: permission "
            "denied; check its permissions", str(folder),
        ) from exc  # fmt: skip
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue
        if pattern is not None and not fnmatch.fnmatchcase(name, pattern):
            others += 1
            continue
        if Path(name).suffix.lower() in TIFF_SUFFIXES and entry.is_file():
            files.append(Path(entry.path))
        else:
            others += 1
    files.sort(key=natural_key)
    return folder, files, others


def _gaps(files: list[Path]) -> list[int]:
    """Numbers missing from the last number of the names (same prefix)."""
    numbers = []
    for f in files:
        found = _DIGITS.findall(f.stem)
        if not found:
            return []
        numbers.append(int(found[-1]))
    prefixes = {_DIGITS.sub("#", f.stem) for f in files}
    if len(prefixes) != 1 or len(set(numbers)) != len(numbers):
        return []
    present = set(numbers)
    return [n for n in range(min(numbers), max(numbers) + 1) if n not in present]


def list_sequence(
    path: str | os.PathLike[str], pattern: str | None = None, axis: str = "z"
) -> tuple[Path, list[Path]]:
    """``(folder, slice files)`` of a slice folder or glob pattern, checked
    as :func:`napari_diskimage.open_tiff_sequence` says (no slices: ValueError;
    gaps in the numbering: :class:`SequenceGapWarning`)."""
    if axis not in ("z", "t"):
        raise ValueError(f"axis must be 'z' or 't', got {axis!r}")
    folder, files, others = find_slices(path, pattern)
    where = f"{str(folder)!r}" + (f" matching {pattern!r}" if pattern else "")
    if not files:
        raise ValueError(
            f"no TIFF slices in {where}"
            + (f" ({others} other files)" if others else " (it is empty)")
            + ": a slice folder holds one .tif file per plane"
        )
    missing = _gaps(files)
    if missing:
        shown = ", ".join(str(n) for n in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        warnings.warn(
            SequenceGapWarning(
                f"{len(missing)} slices are missing from the numbering of "
                f"{where}: {shown}{more}; the volume has {len(files)} planes "
                "without them"
            ),
            stacklevel=3,
        )
    return folder, files
