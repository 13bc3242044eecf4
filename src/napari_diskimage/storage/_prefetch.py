"""Decode the next row of chunks along z while the viewer shows this one.

A chunked store's plane at z lives in a row of chunks that also holds the
next ``chunks[z] - 1`` planes: browsing in z is cheap inside a row and
waits for a whole row's decode when it crosses into the next one (measured
on a 512 MiB store with 8 x 256 x 256 chunks: p50 16 ms, p95 196 ms).
:class:`RowPrefetch` starts that decode in one background thread as soon
as a row is entered, in the direction the user is stepping, so the step
that crosses finds the chunks in the store's cache.  At most one decode is
in flight per store; a read that needs its chunks waits for it instead of
decoding them twice.  The decoded row goes into the store's own bounded
cache, so memory stays what the cache allows.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["RowPrefetch", "prefetch_next_row"]


class RowPrefetch:
    """One background decode at a time of a set of chunk keys."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[frozenset[Any], Future[None]] | None = None
        self._lock = threading.Lock()
        #: (level name, t, c) -> the last z read: the stepping direction
        self.last_z: dict[tuple[Any, ...], int] = {}

    def start(self, keys: Iterable[Any], decode: Callable[[], None]) -> bool:
        """Run ``decode`` (which fills the cache with ``keys``) in the
        background unless a decode is still in flight; True if started."""
        with self._lock:
            if self._pending is not None and not self._pending[1].done():
                return False
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="ndi-prefetch")
            future = self._pool.submit(decode)
            self._pending = (frozenset(keys), future)
            return True

    def wait_for(self, keys: Iterable[Any]) -> None:
        """Wait for the decode in flight if it covers any of ``keys``."""
        pending = self._pending
        if pending is None or pending[1].done():
            return
        if not pending[0].isdisjoint(keys):
            self._settle(pending[1])

    def wait(self) -> None:
        """Wait for the decode in flight, if any."""
        pending = self._pending
        if pending is not None:
            self._settle(pending[1])

    @staticmethod
    def _settle(future: Future[None]) -> None:
        # a failed decode is reported by the read that needs those chunks
        with contextlib.suppress(Exception):
            future.result()

    def close(self) -> None:
        """Wait for the decode in flight and stop the thread."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._pending = None
        if pool is not None:
            pool.shutdown(wait=True)


def prefetch_next_row(storage: Any, ranges: dict[str, range]) -> None:
    """After ``storage`` (a :class:`~.zarr_array.ZarrStorage`) read the
    plane at ``ranges``: start decoding the same part of the neighbouring
    row of chunks along z, in the direction of the last step (forward
    first).  Nothing when the row is cached, z has one row, or the row
    would take more than a quarter of the store's cache: the row shown and
    the next must both stay cached, or the next evicts the one being
    browsed (a processing read, whose cache is off, never prefetches)."""
    if "z" not in storage.axes:
        return
    arr = storage.zarr_array
    chunks = dict(zip(storage.axes, arr.chunks, strict=True))
    nz, cz = storage.shape[2], chunks["z"]
    if cz >= nz:
        return
    prefetch: RowPrefetch = storage.handle.prefetch
    z = ranges["z"].start
    where = (storage.name, ranges["t"].start, ranges["c"].start)
    last = prefetch.last_z.get(where)
    prefetch.last_z[where] = z
    row = z // cz + (-1 if last is not None and z < last else 1)
    if not 0 <= row * cz < nz:
        return
    per_axis = []
    for a in storage.axes:
        if a == "z":
            per_axis.append([row])
        else:
            per_axis.append(sorted({v // chunks[a] for v in ranges[a]}))
    keys = list(itertools.product(*per_axis))
    cache = storage.handle.cache
    chunk_bytes = math.prod(arr.chunks) * storage.dtype.itemsize
    if len(keys) * chunk_bytes > cache.max_bytes // 4:
        return
    if all((storage.name, k) in cache for k in keys):  # not a use: no reorder
        return

    def decode() -> None:
        storage._decode_missing(keys)
        for key in keys:
            storage._chunk(key)

    prefetch.start([(storage.name, k) for k in keys], decode)
