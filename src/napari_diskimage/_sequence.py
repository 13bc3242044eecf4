"""Opening a folder of TIFF slices as one disk image (:func:`open_tiff_sequence`).

Listing, natural ordering and the checks a user needs at open (an empty
folder, gaps in the numbering, unreadable or empty files) live here; how
the slices are read is :mod:`napari_diskimage.storage.sequence`.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import tifffile

from ._diskimage import DiskImage
from ._errors import CorruptFileError
from ._files import TIFF_SUFFIXES
from ._quiet import quieted
from ._tiff_meta import is_parse_error, spacing_of
from .storage.sequence import SequenceStorage, layout_of, slice_info

__all__ = [
    "SequenceGapWarning",
    "find_slices",
    "natural_key",
    "open_slice_files",
    "open_tiff_sequence",
]

_DIGITS = re.compile(r"(\d+)")
_GLOB = re.compile(r"[*?\[]")
#: Slices of another file size whose headers are checked at open.
CHECK_AT_OPEN = 16


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


@quieted
def open_tiff_sequence(
    path: str | os.PathLike[str], pattern: str | None = None, axis: str = "z"
) -> DiskImage:
    """Open a folder of TIFF slices as one read-only disk image.

    ``path`` is a folder (every ``*.tif``, ``*.tiff`` file in it) or a glob
    pattern such as ``"scan/rec_*.tif"`` (or give the folder and
    ``pattern``).  Files are taken in natural order (``slice_2`` before
    ``slice_10``); each file is one plane along ``axis`` (``"z"`` or
    ``"t"``); a multi-page file stacks its pages (along z).  Only the first
    file's header is read at open; the others are listed and their sizes
    checked, and each one's header is checked when it is first read.
    Uncompressed slices are read from their own files; compressed or tiled
    ones are decoded a plane at a time.  ``image.path`` is the folder,
    ``image.files`` the slices.

    Raises
    ------
    FileNotFoundError, NotADirectoryError, PermissionError
        The folder is missing, a file, or unreadable; a slice is unreadable.
    ValueError
        No TIFF slices in the folder (the message counts the other files),
        a slice of another size or type (naming it), an empty slice,
        ``axis`` not "z" or "t".

    Warns
    -----
    SequenceGapWarning
        The numbering has gaps: the warning names the missing numbers.
    """
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
            stacklevel=2,
        )
    return open_slice_files(folder, files, axis=axis)


def open_slice_files(
    folder: Path, files: Sequence[Path], *, axis: str = "z"
) -> DiskImage:
    """A disk image of the slice ``files`` (in this order) of ``folder``."""
    files = list(files)
    sizes = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError as exc:
            raise type(exc)(
                exc.errno, f"cannot open slice {str(f)!r}: {exc.strerror}", str(f)
            ) from exc
        if st.st_size == 0:
            raise ValueError(
                f"slice {str(f)!r} is empty (0 bytes): replace or remove it"
            )
        if not os.access(f, os.R_OK):
            raise PermissionError(
                errno.EACCES,
                f"cannot read slice {str(f)!r}: permission denied; check its "
                "permissions",
                str(f),
            )
        sizes.append((st.st_mtime_ns, st.st_size, st.st_ino))
    first_path = files[0]
    try:
        with tifffile.TiffFile(first_path) as tif:
            layout, pages = layout_of(tif, first_path)
            first = slice_info(first_path, sizes[0], layout, pages, None, tif)
            spacing, unit = spacing_of(tif, 0, tif.series[0])
    except Exception as exc:  # tifffile's own errors name no file: wrap them
        if isinstance(exc, OSError) or not is_parse_error(exc):
            raise
        raise CorruptFileError(
            f"slice {str(first_path)!r} is not a valid TIFF file "
            f"({type(exc).__name__}: {exc}); replace it or remove it from the "
            "folder",
            first_path,
        ) from exc
    storage = SequenceStorage(folder, files, layout, axis=axis, first=first)
    if first.offsets is not None:
        # uncompressed slices of one layout have one size: check the odd ones
        odd = [i for i, s in enumerate(sizes) if s[1] != sizes[0][1]]
        for i in odd[:CHECK_AT_OPEN]:
            # another shape or type fails the open; a truncated or corrupt
            # slice fails only when read (the others stay viewable)
            with contextlib.suppress(CorruptFileError):
                storage._slice(i)
    return DiskImage(
        folder,
        storage,
        kind="tiff sequence",
        spacing=spacing,
        unit=unit,
        rgb=layout.samples in (3, 4) and layout.dtype.itemsize <= 2,
    )
