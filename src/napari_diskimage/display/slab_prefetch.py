"""Decode the next slab of a view cache's chunks while a YZ view steps in x.

A YZ plane of the view cache decodes one slab of chunks: every chunk of
the view's z and y that holds its column, 64 columns thick.  The next 63
x-steps read those chunks from memory (~25 ms a step at 16 GiB); the step
into the next slab decodes it, about as long as a first view (874 ms at
16 GiB, 6496 x 3248 x 407).  :class:`SlabPrefetch` decodes that next slab
in one background thread as soon as the view steps, in the direction of
the steps, so the step that enters it finds its chunks decoded.

* **Memory**: the decoded chunks go into the store's own bounded cache
  (:func:`~.cached_views.chunk_cache_bytes`: two slabs and a quarter,
  within the ``view_cache_memory_bytes`` setting).  A slab is prefetched
  only when two of the view's slabs fit in that cache, so the slab being
  browsed is never evicted by the next (the least recently used chunks go
  first, and the slab browsed is used at every step).
* **Stale prefetches**: the slab is decoded in pieces of at most
  :data:`PIECE_BYTES`; a step the other way (or a jump elsewhere) cancels
  the decode in flight after its current piece, and starts the new one.
* **No double work**: a read that needs the slab being decoded waits for
  it instead of decoding it again.

One decode in flight per view (a level of the store and the planes and
rows it shows): napari reads the shown level and the coarsest one, for the
thumbnail, at each step, and neither cancels the other's.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

__all__ = ["PIECE_BYTES", "SlabPrefetch"]

#: Most bytes of chunks decoded by one piece of a prefetch (one zarr read:
#: its chunks are decoded in parallel); a cancel takes effect between pieces.
PIECE_BYTES = 16 << 20


#: Views whose last column is remembered (each pan of the view is a new one).
VIEWS = 16


@dataclass
class _Pending:
    slab: int  # the chunk column (x // chunk width) being decoded
    future: Future[None]
    cancel: threading.Event


class SlabPrefetch:
    """Background decodes of the next slab of chunks of a YZ view (one per
    view at a time).  ``started`` and ``cancelled`` count slabs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        #: view (level name, t, channels, z, rows) -> its decode in flight
        self._pending: dict[tuple[Any, ...], _Pending] = {}
        #: view -> the last column it read: the direction of the steps
        self._last_x: OrderedDict[tuple[Any, ...], int] = OrderedDict()
        self.started = 0
        self.cancelled = 0

    # --- the view's reads ----------------------------------------------------
    def before_read(self, storage: Any, x: int) -> None:
        """Before a YZ plane at column ``x`` of ``storage`` (a level of the
        cache) is read: wait for the decode of its slab if it is in flight."""
        slab = x // _chunks(storage)[2]
        for view, pending in list(self._pending.items()):
            if view[0] == storage.name and pending.slab == slab:
                with contextlib.suppress(Exception):  # the read reports errors
                    pending.future.result()

    def after_read(
        self,
        storage: Any,
        ts: range,
        channels: tuple[int, ...],
        zyx: tuple[range, range, range],
    ) -> None:
        """After a YZ plane (``zyx[2]``: one column, on the level's grid) was
        read: start decoding the neighbouring slab in the direction of the
        last step; cancel a decode of this level aimed elsewhere."""
        zs, rows, cols = zyx
        x = cols[0]
        view = (storage.name, ts, channels, zs, rows)
        last = self._last_x.pop(view, None)
        self._last_x[view] = x
        while len(self._last_x) > VIEWS:
            self._last_x.popitem(last=False)
        if last is None or x == last:  # no step yet (or napari re-reading)
            return
        cz, cy, cx = _chunks(storage)
        slab = x // cx + (1 if x > last else -1)
        with self._lock:
            for done in [v for v, p in self._pending.items() if p.future.done()]:
                del self._pending[done]
            pending = self._pending.get(view)
            if pending is not None and not pending.future.done():
                if pending.slab == slab:
                    return  # already on its way
                pending.cancel.set()
                self.cancelled += 1
        if not 0 <= slab * cx < storage.shape[4]:
            return
        x0 = slab * cx
        keys, nbytes = _keys(storage, ts, channels, zs, rows, x0)
        cache = storage.handle.cache
        if 2 * nbytes > cache.max_bytes:
            return  # the slab browsed would be evicted by the next
        if all((storage.name, k) in cache for k in keys):  # not a use
            return
        pieces = _pieces(storage, ts, channels, zs, rows, x0, cz * cy * cx)
        self._start(view, slab, pieces)

    # --- the thread ----------------------------------------------------------
    def _start(
        self, view: tuple[Any, ...], slab: int, pieces: list[Callable[[], Any]]
    ) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="ndi-slab")
            cancel = threading.Event()

            def run() -> None:
                for piece in pieces:
                    if cancel.is_set():
                        return
                    piece()

            future = self._pool.submit(run)
            self._pending[view] = _Pending(slab, future, cancel)
            self.started += 1

    def wait(self) -> None:
        """Wait for every decode in flight (tests, benchmarks, closing)."""
        for pending in list(self._pending.values()):
            with contextlib.suppress(Exception):
                pending.future.result()

    def close(self) -> None:
        """Cancel the decodes in flight, wait for them, stop the thread."""
        with self._lock:
            pool, self._pool = self._pool, None
            for pending in self._pending.values():
                pending.cancel.set()
            self._pending = {}
        if pool is not None:
            pool.shutdown(wait=True)


def _chunks(storage: Any) -> tuple[int, int, int]:
    cz, cy, cx = (int(c) for c in storage.zarr_array.chunks[-3:])
    return cz, cy, cx


def _keys(
    storage: Any,
    ts: range,
    channels: tuple[int, ...],
    zs: range,
    rows: range,
    x0: int,
) -> tuple[list[tuple[int, ...]], int]:
    """The chunk-grid keys (the array's axes) of the slab at column ``x0``
    that the view's planes ``zs`` and ``rows`` lie in, and their bytes
    decoded (edge chunks are cut to the array)."""
    chunks = dict(zip(storage.axes, storage.zarr_array.chunks, strict=True))
    sizes = dict(zip(storage.axes, storage.array_shape, strict=True))
    wanted = {"t": ts, "c": channels, "z": zs, "y": rows, "x": (x0,)}
    per_axis = []
    nbytes = storage.dtype.itemsize
    for a in storage.axes:
        c, n = int(chunks[a]), sizes[a]
        ks = sorted({v // c for v in wanted[a]})
        per_axis.append(ks)
        nbytes *= sum(min((k + 1) * c, n) - k * c for k in ks)
    return list(itertools.product(*per_axis)), nbytes


def _pieces(
    storage: Any,
    ts: range,
    channels: tuple[int, ...],
    zs: range,
    rows: range,
    x0: int,
    chunk_voxels: int,
) -> list[Callable[[], Any]]:
    """Reads of column ``x0`` by bands of rows: each decodes (and caches)
    whole chunks of the slab, at most about :data:`PIECE_BYTES` a band."""
    cz, cy, _ = _chunks(storage)
    depth = len({z // cz for z in zs})
    band_bytes = depth * chunk_voxels * storage.dtype.itemsize * len(ts)
    per_piece = max(1, PIECE_BYTES // max(1, band_bytes))  # chunk rows a piece
    first, last = rows[0] // cy, rows[-1] // cy
    pieces: list[Callable[[], Any]] = []
    for band in range(first, last + 1, per_piece):
        lo, hi = band * cy, (band + per_piece) * cy
        j0 = max(0, -(-(lo - rows.start) // rows.step))
        j1 = min(len(rows), -(-(hi - rows.start) // rows.step))
        if j0 >= j1:
            continue
        part = rows[j0:j1]
        for c in channels:
            ranges = [ts, range(c, c + 1), zs, part, range(x0, x0 + 1)]
            pieces.append(functools.partial(storage.read_box, ranges))
    return pieces
