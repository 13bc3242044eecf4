"""What a block shares with whoever watches it, in any process: the
engine's counters and :class:`Cancelled`.

A leaf module (it imports nothing of the package), so both the engine and
the cluster session (:mod:`napari_diskimage._cluster`, which reads a
worker's counters and raises ``Cancelled`` while waiting for workers) use
it without importing each other.
"""

from __future__ import annotations

import threading

__all__ = ["Cancelled", "count", "stats"]

# Per-process counters, read by tests and benchmarks (also in cluster
# workers, through ``client.run(stats)``).
_STATS = {
    "bytes_read": 0,
    "bytes_written": 0,
    "blocks_written": 0,
    # blocks written into part of a Zarr chunk (under a lock): a run's blocks
    # were not aligned with the chunks of its out= store
    "partial_chunk_writes": 0,
}
_STATS_LOCK = threading.Lock()


def stats() -> dict[str, int]:
    """This process's engine counters: bytes read and written, blocks,
    blocks that covered part of a Zarr chunk."""
    with _STATS_LOCK:
        return dict(_STATS)


def count(key: str, n: int) -> None:
    """Add ``n`` to counter ``key`` (see :func:`stats`)."""
    with _STATS_LOCK:
        _STATS[key] += n


class Cancelled(Exception):
    """Raised inside blocks of a run that was cancelled."""
