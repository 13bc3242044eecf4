"""Whole planes of the strided display levels, cached for all images.

napari reads the same coarse planes several times in a row (the view and
the thumbnail, and each re-slice while a layer is added), so whole planes
of the strided levels are kept in one :class:`~napari_diskimage._cache.LRUCache`
(:data:`CACHE_BYTES` for all images).  An entry is used only while the
image's ``write_count`` and the file's modification time and size are
unchanged, and is dropped when unused for :data:`CACHE_SECONDS`: a pixel
written with :meth:`DiskImage.write_pixel` shows at every level on the next
``layer.refresh()``.  After writing through ``DiskImage.array`` (which the
file's modification time may not show at once), call :func:`clear_cache`.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections.abc import Hashable
from typing import Any

import numpy as np

from .._cache import LRUCache

__all__ = [
    "CACHE_BYTES",
    "CACHE_PLANE_BYTES",
    "CACHE_SECONDS",
    "clear_cache",
    "plane_cache",
    "token_of",
    "version_of",
]

#: Memory for cached planes of the strided levels, all images together.
CACHE_BYTES = 96 << 20
#: Largest plane that is cached; bigger ones are read in parts, as shown.
CACHE_PLANE_BYTES = 4 << 20
#: A cached plane unused for this many seconds is read again.
CACHE_SECONDS = 60.0


class PlaneCache:
    """Planes keyed by ``(token, ...)``, each valid for one version of its
    image and for :data:`CACHE_SECONDS` after its last use."""

    def __init__(self, max_bytes: int) -> None:
        self._lru = LRUCache(max_bytes)

    @property
    def nbytes(self) -> int:
        return self._lru.nbytes

    def get(self, key: Hashable, version: Any) -> np.ndarray | None:
        entry = self._lru.get(key)
        if entry is None:
            return None
        now = time.monotonic()
        if entry[0] != version or now - entry[1] > CACHE_SECONDS:
            self._lru.drop(lambda k: k == key)
            return None
        entry[1] = now
        return entry[2]

    def put(self, key: Hashable, version: Any, plane: np.ndarray) -> None:
        plane.flags.writeable = False  # shared by every reader of the level
        self._lru.put(key, [version, time.monotonic(), plane], plane.nbytes)

    def drop(self, token: int) -> None:
        """Forget the planes whose key starts with ``token``."""
        self._lru.drop(lambda key: key[0] == token)  # type: ignore[index]


# One cache for all images; each image gets a token (weak keys: the cache
# never keeps an image, or its scratch file, alive) and its planes are
# dropped when it is.
plane_cache = PlaneCache(CACHE_BYTES)
_tokens: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_next_token = itertools.count()
_tokens_lock = threading.Lock()


def token_of(image: Any) -> int | None:
    """The cache token of ``image``; None if it cannot be weakly referenced."""
    with _tokens_lock:
        try:
            token = _tokens.get(image)
            if token is None:
                token = _tokens[image] = next(_next_token)
                weakref.finalize(image, plane_cache.drop, token)
        except TypeError:  # unhashable or not weakly referenceable
            return None
        return token


def clear_cache(image: Any) -> None:
    """Forget the cached planes of ``image`` (after writing to it directly)."""
    with _tokens_lock:
        token = _tokens.get(image)
    if token is not None:
        plane_cache.drop(token)


def version_of(image: Any) -> tuple[Any, ...]:
    """What must not change for a cached plane of ``image`` to stay valid."""
    try:
        st = os.stat(image.path)
        stamp: tuple[Any, ...] = (st.st_mtime_ns, st.st_size, st.st_ino)
    except (OSError, TypeError, AttributeError):
        stamp = ()
    return (getattr(image, "write_count", None), *stamp)
