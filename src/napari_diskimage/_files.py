"""Files and folders: checks with clear errors, suffixes, file systems.

The one place for what several modules need: the checks the openers make,
the file suffixes of each format, the folder that exists nearest a path
that may not (yet), and the file system a folder is on.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = [
    "RAW_SUFFIXES",
    "TIFF_SUFFIXES",
    "check_byte_order",
    "check_mode",
    "check_readable",
    "format_of",
    "mount_fstype",
    "nearest_existing",
]

#: Suffixes of TIFF files (matched without regard to case).
TIFF_SUFFIXES = (".tif", ".tiff", ".btf")
#: Suffixes of RAW files.
RAW_SUFFIXES = (".raw",)


def format_of(path: str | os.PathLike[str]) -> str:
    """``"tiff"`` or ``"raw"`` from the suffix of ``path``.

    Raises
    ------
    ValueError
        Another suffix; the message says which ones are known.
    """
    suffix = Path(path).suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in RAW_SUFFIXES:
        return "raw"
    raise ValueError(
        f"cannot tell the format of {str(path)!r} from its suffix "
        f"{suffix or '(none)'}: end the name with "
        f"{', '.join(TIFF_SUFFIXES + RAW_SUFFIXES)}"
    )


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """``path`` if it exists, else its nearest parent that does."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def mount_fstype(
    folder: str | os.PathLike[str], mounts: str = "/proc/mounts"
) -> str | None:
    """File-system type of the mount holding ``folder`` (``"ext4"``,
    ``"tmpfs"``, ...), from ``/proc/mounts``; None if unknown.  ``folder``
    need not exist yet."""
    p = Path(folder).expanduser().absolute()
    base = nearest_existing(p)
    p = base.resolve() / p.relative_to(base)  # symlinks of what exists
    best, fstype = "", None
    try:
        with open(mounts, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                inside = str(p) == point or str(p).startswith(point.rstrip("/") + "/")
                if (inside or point == "/") and len(point) >= len(best):
                    best, fstype = point, parts[2]
    except OSError:
        return None
    return fstype


def check_readable(path: str | os.PathLike[str], what: str) -> Path:
    """Return ``path`` as an absolute Path if it is a readable regular file.

    Raises FileNotFoundError, IsADirectoryError or PermissionError whose
    message names the file and what to do.
    """
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot open {what} {str(p)!r}: no such file; check the path",
            str(p),
        )
    if p.is_dir():
        raise IsADirectoryError(
            errno.EISDIR,
            f"cannot open {what} {str(p)!r}: it is a folder; choose a file",
            str(p),
        )
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError as exc:
        raise PermissionError(
            exc.errno,
            f"cannot read {what} {str(p)!r}: permission denied; check the "
            "file's permissions",
            str(p),
        ) from exc
    os.close(fd)
    return p


def check_mode(mode: str) -> str:
    if mode not in ("r", "r+"):
        raise ValueError(
            f"mode must be 'r' (read-only) or 'r+' (edit the file in place), "
            f"got {mode!r}"
        )
    return mode


def check_writable_file(path: Path) -> None:
    """For mode 'r+': raise PermissionError unless ``path`` can be written."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise PermissionError(
            exc.errno,
            f"cannot open {str(path)!r} for writing ({exc.strerror}); open it "
            "read-only (mode='r') and copy it to edit a copy",
            str(path),
        ) from exc
    os.close(fd)


def check_byte_order(byte_order: str) -> str:
    aliases = {"<": "<", "little": "<", ">": ">", "big": ">"}
    if byte_order == "=":
        return "<" if __import__("sys").byteorder == "little" else ">"
    try:
        return aliases[byte_order]
    except (KeyError, TypeError):
        raise ValueError(
            f"byte_order must be '<' (little-endian) or '>' (big-endian), "
            f"got {byte_order!r}"
        ) from None
