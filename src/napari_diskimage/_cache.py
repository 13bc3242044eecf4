"""One bounded cache: least-recently-used values, at most ``max_bytes``.

Used for decoded TIFF strips and tiles, decoded slices of a folder and the
display's strided planes.  Thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["LRUCache"]


class LRUCache:
    """Values with their sizes, the least recently used dropped first so
    that at most ``max_bytes`` are held.

    ``nbytes`` is the size held; ``misses`` counts :meth:`put` calls (a
    value computed because it was not cached).  A value larger than
    ``max_bytes`` is not kept, unless ``keep_last``: then the most recent
    value is always kept (a decoded plane read again row by row).
    """

    def __init__(self, max_bytes: int, *, keep_last: bool = False) -> None:
        self.max_bytes = int(max_bytes)
        self.keep_last = keep_last
        self.nbytes = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        """Whether ``key`` is held; unlike :meth:`get`, it does not count as
        a use (a look that should not keep the value longer)."""
        with self._lock:
            return key in self._items

    def get(self, key: Hashable) -> Any:
        """The value of ``key`` (now the most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Keep ``value`` (``nbytes`` large) under ``key``, dropping the least
        recently used values beyond ``max_bytes``."""
        with self._lock:
            self.misses += 1
            if nbytes > self.max_bytes and not self.keep_last:
                return
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._items[key] = (value, nbytes)
            self.nbytes += nbytes
            while self.nbytes > self.max_bytes and len(self._items) > self.keep_last:
                _, (_, size) = self._items.popitem(last=False)
                self.nbytes -= size

    def drop(self, predicate: Callable[[Hashable], bool]) -> None:
        """Forget the values whose key satisfies ``predicate``."""
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                self.nbytes -= self._items.pop(key)[1]

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._items.clear()
            self.nbytes = 0
