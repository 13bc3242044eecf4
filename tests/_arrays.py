"""Test data and set-ups shared by the processing tests: smooth volumes, a
local two-process cluster and a progress callback that cancels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.ndimage as sndi


def smooth_volume(shape, dtype="uint16", seed=0, sigma=1.5):
    """Smooth random values over the dtype's useful range."""
    rng = np.random.default_rng(seed)
    field = sndi.gaussian_filter(rng.random(shape), sigma)
    field = (field - field.min()) / (field.max() - field.min())
    if np.dtype(dtype).kind == "f":
        return (field * 100 - 20).astype(dtype)
    top = 250 if np.dtype(dtype) == np.uint8 else 60000
    return np.rint(field * top).astype(dtype)


@contextlib.contextmanager
def local_cluster() -> Iterator[Any]:
    """A dask client on a LocalCluster of 2 worker processes of 1 thread
    (quiet, no dashboard): what a cluster's workers do, on this machine.

    The scheduler runs in this process and unpickles the tasks' disk images
    (reopened by path); its low-level log would keep them, and their files
    open, after the cluster closed (as ``_cluster.Session`` also prevents)."""
    import dask
    import distributed

    with (
        dask.config.set({"distributed.admin.low-level-log-length": 0}),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def cancel_at_first_step(seen: list[int]):
    """A ``progress`` callback that records ``done`` in ``seen`` and cancels
    (KeyboardInterrupt, as Ctrl+C) once some work is done."""

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done > 0:
            raise KeyboardInterrupt

    return progress
