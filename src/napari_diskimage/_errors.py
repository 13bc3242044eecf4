"""The exceptions of napari-diskimage, built in one place.

Callers catch the built-in type they expect: ``FileNotFoundError``,
``PermissionError``, ``OSError`` for a full disk, ``IndexError`` for a
coordinate outside the image, ``ValueError`` for a bad value.  Two cases a
caller needs to tell apart from other ``ValueError`` s have their own
subclasses, as tifffile has ``TiffFileError(ValueError)``:

* :class:`CorruptFileError`: the file is not a valid image of its format,
  is truncated, or contradicts itself (its header is unreadable);
* :class:`ClosedImageError`: the disk image was closed (``close()``, the
  end of a ``with`` block) and cannot be used any more.

Every message is a whole sentence naming the file, the value and the fix;
``str(exc)`` is that sentence.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "ClosedImageError",
    "CorruptFileError",
    "DiskImageError",
    "closed_error",
    "error_message",
]


class DiskImageError(Exception):
    """Base of the library's own exception types."""


class CorruptFileError(DiskImageError, ValueError):
    """A file is not a valid image of its format, or is truncated.

    ``path`` is the file.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None):
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)


class ClosedImageError(DiskImageError, ValueError):
    """A disk image was used after :meth:`DiskImage.close`."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None):
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)


def closed_error(path: Any) -> ClosedImageError:
    """The error for using the closed disk image of ``path``."""
    return ClosedImageError(
        f"disk image {str(path)!r} is closed; open the file again "
        "(open_tiff, open_raw) to use it",
        path,
    )


def error_message(exc: BaseException) -> str:
    """The user-facing text of ``exc``: the library's message, no noise.

    An ``OSError`` raised by the library carries its whole sentence in
    ``strerror`` and the file in ``filename``; others are their ``str``.
    """
    if isinstance(exc, OSError) and exc.strerror:
        msg = exc.strerror
        if exc.filename and str(exc.filename) not in msg:
            msg = f"{msg}: {str(exc.filename)!r}"
        return msg
    return str(exc) or type(exc).__name__
