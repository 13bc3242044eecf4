"""Checks shared by the openers: clear errors for paths that cannot be read."""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["check_byte_order", "check_mode", "check_readable"]


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
