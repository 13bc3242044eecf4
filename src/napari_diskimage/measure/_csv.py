"""Tables saved as CSV files, atomically (a complete file or none)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from .._steps import Steps, run_steps
from ..io.atomic import atomic_write as _atomic_write

__all__ = ["save_csv"]


def save_csv(table: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` (a pandas DataFrame) to ``path`` as CSV, no index.

    Written under a temporary name beside ``path`` and renamed when
    complete: a failure (full disk, no permission) leaves no partial file
    and an existing ``path`` unchanged.

    Raises
    ------
    FileNotFoundError
        The folder of ``path`` does not exist.
    IsADirectoryError
        ``path`` is a folder.
    OSError
        The file cannot be written (the message names it).
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, f"cannot save the table to {str(target)!r}: it is a folder"
        )
    if not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot save the table to {str(target)!r}: folder "
            f"{str(target.parent)!r} does not exist",
            str(target),
        )
    data = table.to_csv(index=False).encode("utf-8")

    def write(fh: Any) -> Steps:
        fh.write(data)
        yield len(data), len(data)

    return Path(run_steps(_atomic_write(target, len(data), write), None))
