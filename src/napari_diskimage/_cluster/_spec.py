"""Where a run goes: :class:`ClusterSpec` ("local", "scheduler" or
"slurm", checked when made) and the dask-jobqueue options of its SLURM
jobs; :func:`no_workers_timeout`.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

__all__ = ["KINDS", "ClusterSpec", "no_workers_timeout"]

#: Where a run can go, in the words of the panel.
KINDS = {
    "local": "this machine",
    "scheduler": "a dask scheduler",
    "slurm": "SLURM",
}

#: Seconds a run waits with no worker at all before it fails (dask config
#: ``napari-diskimage.no-workers-timeout``, env
#: ``DASK_NAPARI_DISKIMAGE__NO_WORKERS_TIMEOUT``).
NO_WORKERS_TIMEOUT = 120.0
#: Used when neither the spec nor dask's config gives them.
DEFAULT_CORES = 1
DEFAULT_MEMORY = "4GiB"


def no_workers_timeout() -> float:
    import dask

    return float(
        dask.config.get("napari-diskimage.no-workers-timeout", NO_WORKERS_TIMEOUT)
    )


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """Where to run: ``kind`` "local", "scheduler" (``address``) or "slurm".

    For "slurm": ``jobs`` SLURM jobs, each of ``cores`` cores and
    ``memory`` (e.g. "16GB") for ``walltime`` ("HH:MM:SS"), in ``queue``
    (partition) under ``account``.  None takes dask-jobqueue's config
    (``jobqueue.slurm.*`` in ``~/.config/dask/jobqueue.yaml`` or
    ``DASK_JOBQUEUE__SLURM__*`` variables); cores and memory fall back to
    1 and 4 GiB.  ``interface`` is the network interface workers and
    scheduler talk on ("lo" on one machine), ``log_directory`` where the
    jobs' output goes, ``python`` the command that runs a worker's Python
    (default: this Python, ``sys.executable``: the nodes must see it).
    """

    kind: str = "local"
    address: str = ""
    jobs: int = 0
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    queue: str | None = None
    account: str | None = None
    interface: str | None = None
    log_directory: str | None = None
    python: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"run on {self.kind!r}? choose one of {', '.join(map(repr, KINDS))}"
            )
        if self.kind == "scheduler" and not self.address.strip():
            raise ValueError(
                "a dask scheduler needs its address, e.g. tcp://10.0.0.5:8786 "
                "(what `dask scheduler` or a cluster's scheduler_address prints)"
            )
        if self.kind == "slurm" and self.jobs < 1:
            raise ValueError(f"SLURM needs at least 1 job, got {self.jobs}")
        if self.cores is not None and self.cores < 1:
            raise ValueError(f"cores per SLURM job must be >= 1, got {self.cores}")

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def _sizes(self) -> dict[str, Any]:
        """The SLURM job's size given in the spec: cores, memory, walltime,
        queue, account (those not None, in that order)."""
        return {
            k: v
            for k, v in (
                ("cores", self.cores),
                ("memory", self.memory),
                ("walltime", self.walltime),
                ("queue", self.queue),
                ("account", self.account),
            )
            if v is not None
        }

    def describe(self) -> str:
        if self.kind == "scheduler":
            return f"the dask scheduler at {self.address}"
        if self.kind == "slurm":
            size = ", ".join(f"{k} {v}" for k, v in self._sizes().items())
            jobs = f"{self.jobs} SLURM job{'s' if self.jobs > 1 else ''}"
            return f"{jobs} ({size})" if size else jobs
        return "this machine"

    def slurm_options(self) -> dict[str, Any]:
        """Keyword arguments of ``dask_jobqueue.SLURMCluster``."""
        import dask

        options: dict[str, Any] = self._sizes()
        options.update(
            (k, v)
            for k, v in (
                ("interface", self.interface),
                ("log_directory", self.log_directory),
                ("python", self.python),
            )
            if v is not None
        )
        config = dask.config.get("jobqueue.slurm", {}) or {}
        if "cores" not in options and config.get("cores") is None:
            options["cores"] = DEFAULT_CORES
        if "memory" not in options and config.get("memory") is None:
            options["memory"] = DEFAULT_MEMORY
        if "python" not in options and config.get("python") is None:
            options["python"] = sys.executable  # the nodes must see this Python
        # A worker reads tiles through a memory map of the input: the file's
        # pages it touched count in its RSS, which dask's nanny holds
        # against the memory limit, so a worker that read more of a file
        # than its memory was restarted (both workers of a 1 GiB gaussian
        # with memory="2GB", measured).  Those pages are the kernel's page
        # cache, reclaimable, and the engine keeps no data in the workers:
        # no pausing, spilling or restarts by RSS.
        prologue = list(config.get("job-script-prologue") or [])
        prologue += [
            f"export DASK_DISTRIBUTED__WORKER__MEMORY__{key}=False"
            for key in ("TARGET", "SPILL", "PAUSE", "TERMINATE")
        ]
        options["job_script_prologue"] = prologue
        scheduler = dict(config.get("scheduler-options") or {})
        # several runs on one machine: no fight over port 8787
        scheduler.setdefault("dashboard_address", ":0")
        options["scheduler_options"] = scheduler
        return options
