"""The engine's wait for its blocks on a cluster: a worker that dies
costs nothing (dask reruns its blocks elsewhere, a block's write is
idempotent), a run left with no worker at all fails after
:func:`~._spec.no_workers_timeout` seconds instead of waiting forever.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..process._counters import Cancelled
from ._spec import no_workers_timeout

__all__ = ["completed"]


def completed(
    futures: Sequence[Any], client: Any, cancelled: Callable[[], bool] | None = None
) -> Iterator[Any]:
    """``futures`` as they complete, like ``distributed.as_completed``.

    Workers may come and go: dask reruns the blocks of a worker that died.
    When the cluster has had no worker at all for
    :func:`no_workers_timeout` seconds, raises ``TimeoutError`` (the
    engine then cancels the futures and removes the output).  When
    ``cancelled()`` turns True, raises ``Cancelled`` without waiting for
    the next block.
    """
    from distributed import as_completed

    timeout = no_workers_timeout()
    pending = as_completed(futures)
    idle_since = time.monotonic()
    none_since: float | None = None
    next_check = 0.0
    while True:
        if not pending.queue.empty():
            yield next(pending)
            idle_since = time.monotonic()
            continue
        if pending.is_empty():
            return
        with pending.thread_condition:  # as as_completed's own iteration
            pending.thread_condition.wait(timeout=0.1)
        if not pending.queue.empty():
            continue
        if cancelled is not None and cancelled():
            raise Cancelled("the run was cancelled")
        now = time.monotonic()
        if now - idle_since < 1 or now < next_check:
            continue  # blocks are landing: no need to ask the scheduler
        next_check = now + 0.5
        if client.scheduler_info(n_workers=-1).get("workers"):
            none_since = None
        elif none_since is None:
            none_since = now
        elif now - none_since > timeout:
            raise TimeoutError(
                errno.ETIMEDOUT,
                f"every dask worker is gone (SLURM jobs cancelled, past "
                f"their walltime or on a failed node) and none came back "
                f"in {timeout:g} s; the run was stopped. Start workers "
                "again (a longer --slurm-walltime, more jobs) and rerun",
            )
