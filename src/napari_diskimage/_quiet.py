"""Hold back tifffile's log lines while our own checks read a header.

tifffile logs what it finds wrong in a file (``<tifffile.TiffPages @8>
invalid page offset ...``) before it raises or guesses; the checks of
:func:`~napari_diskimage.open_tiff` and the slice folders then say it
again in one message that names the file and the fix.  The user should
read ours only.  The filter is per thread: another thread's use of
tifffile (the user's own code) still logs.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["quiet_tifffile", "quieted"]

_local = threading.local()
_installed = threading.Lock()
_F = TypeVar("_F", bound=Callable[..., Any])


class _HoldBack(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_local, "depth", 0)


_FILTER = _HoldBack()


@contextmanager
def quiet_tifffile() -> Iterator[None]:
    """No tifffile log records from this thread while inside."""
    logger = logging.getLogger("tifffile")
    with _installed:
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def quieted(func: _F) -> _F:
    """``func`` run inside :func:`quiet_tifffile`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with quiet_tifffile():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
