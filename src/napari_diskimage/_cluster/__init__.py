"""Where processing runs: this machine, a dask scheduler, or SLURM jobs.

Processing runs on the active ``distributed.Client`` when there is one
(dask's convention, see :mod:`napari_diskimage.process`).  This module
makes that client for one command or one run of the panel and ends it
afterwards:

* :class:`ClusterSpec` says where: ``"local"`` (dask's threads, nothing to
  make), ``"scheduler"`` (an existing dask scheduler at ``address``) or
  ``"slurm"`` (``jobs`` SLURM jobs started through dask-jobqueue's
  ``SLURMCluster``; cores, memory, walltime, queue and account from the
  spec or from dask's own config, ``~/.config/dask/jobqueue.yaml``).
* :class:`Session` opens it (waits for a first worker; a SLURM job that
  ends before its worker starts is an error naming its log), checks that
  the workers see the input files and the disk-image directory, notes
  which workers (and SLURM job ids) did the work, and closes it: the
  client, then the cluster, which cancels its SLURM jobs (``scancel``) on
  success, failure, cancel or Ctrl+C alike.
* :func:`completed` is how the engine waits for its blocks on a cluster:
  a worker that dies costs nothing (dask reruns its blocks elsewhere, and a
  block's write is idempotent), but a run left with no worker at all fails
  after :func:`no_workers_timeout` seconds instead of waiting forever.

The same works on PBS, SGE, LSF, ... through dask-jobqueue's other cluster
classes: start one yourself, and pass its ``scheduler_address`` as the
``"scheduler"`` address (``--scheduler`` in the terminal).

The package: :mod:`._spec` (where, checked; dask-jobqueue's options),
:mod:`._session` (the session: open, check, watch, report, close) and
:mod:`._wait` (the engine's wait for its blocks on a cluster).
"""

from __future__ import annotations

from ._session import Session, session, steps_on, worker_identity
from ._spec import KINDS, ClusterSpec, no_workers_timeout
from ._wait import completed

__all__ = [
    "KINDS",
    "ClusterSpec",
    "Session",
    "completed",
    "no_workers_timeout",
    "session",
    "steps_on",
    "worker_identity",
]
