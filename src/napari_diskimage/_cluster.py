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
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

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

_SHARED_FS_FIX = (
    "the input files and the disk-image directory must be on a file system "
    "every worker sees at the same path (a shared file system): move them "
    "there, or choose a shared disk-image directory (NAPARI_DISKIMAGE_DIR, "
    "or the 'Disk-image directory' tool)"
)


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

    def describe(self) -> str:
        if self.kind == "scheduler":
            return f"the dask scheduler at {self.address}"
        if self.kind == "slurm":
            size = ", ".join(
                f"{k} {v}"
                for k, v in (
                    ("cores", self.cores),
                    ("memory", self.memory),
                    ("walltime", self.walltime),
                    ("queue", self.queue),
                    ("account", self.account),
                )
                if v is not None
            )
            jobs = f"{self.jobs} SLURM job{'s' if self.jobs > 1 else ''}"
            return f"{jobs} ({size})" if size else jobs
        return "this machine"

    def slurm_options(self) -> dict[str, Any]:
        """Keyword arguments of ``dask_jobqueue.SLURMCluster``."""
        import dask

        options: dict[str, Any] = {
            k: v
            for k, v in (
                ("cores", self.cores),
                ("memory", self.memory),
                ("walltime", self.walltime),
                ("queue", self.queue),
                ("account", self.account),
                ("interface", self.interface),
                ("log_directory", self.log_directory),
                ("python", self.python),
            )
            if v is not None
        }
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


# --- what runs in a worker ---------------------------------------------------
def worker_identity() -> dict[str, Any]:
    """This process's host, pid, SLURM job id and engine counters."""
    from .process._engine import stats

    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        **stats(),
    }


def _missing_paths(paths: Sequence[str]) -> list[str]:
    return [p for p in paths if not os.path.exists(p)]


def _copy_in_worker(image: Any, dst: str, byte_order: str) -> dict[str, Any]:
    from ._steps import run_steps
    from .io.save import iter_save

    with image:
        saved = run_steps(iter_save(image, dst, byte_order), None)
    return {"saved": str(saved), **worker_identity()}


# --- a session -------------------------------------------------------------------
class Session:
    """A ``distributed.Client`` on the cluster of ``spec``, for one run.

    Use as a context manager (or :meth:`open` / :meth:`close`).  While it
    is open, its client is dask's default client: every processing call
    runs on it.  ``workers`` maps each worker seen to its
    :func:`worker_identity` (last known counters); :meth:`report` says
    which did the work.

    ``cancelled`` (optional) is polled while waiting for the first worker:
    when it returns True, :meth:`open` stops waiting and raises
    :class:`~napari_diskimage.process._engine.Cancelled`.
    """

    def __init__(
        self,
        spec: ClusterSpec,
        *,
        say: Callable[[str], Any] | None = None,
        cancelled: Callable[[], bool] | None = None,
        start_timeout: float | None = None,
    ) -> None:
        if spec.is_local:
            raise ValueError("a session is for a cluster, not this machine")
        self.spec = spec
        self.say = say or (lambda _text: None)
        self.cancelled = cancelled or (lambda: False)
        self.start_timeout = start_timeout
        self.client: Any = None
        self.cluster: Any = None
        self.workers: dict[str, dict[str, Any]] = {}
        self._baseline: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._lock = threading.Lock()
        self._config: Any = None

    # --- opening ---
    def open(self) -> Session:
        try:
            from distributed import Client
        except ImportError as exc:
            raise ImportError(
                f"running on a cluster needs dask.distributed ({exc}): pip "
                "install 'napari-diskimage[cluster]'"
            ) from exc
        import dask

        # distributed keeps each connection's last 1000 messages for
        # debugging; in this process (the SLURM cluster's scheduler, the
        # client) their tasks hold references to the images, whose files
        # would stay open after close (a deleted scratch file's space
        # not freed) until the session ends.
        self._config = dask.config.set({"distributed.admin.low-level-log-length": 0})
        try:
            if self.spec.kind == "slurm":
                self.cluster = _slurm_cluster(self.spec)
                self.cluster.scale(jobs=self.spec.jobs)
                self.client = Client(self.cluster, set_as_default=True)
                self.say(
                    f"submitted {self.spec.describe()}; dask scheduler at "
                    f"{self.cluster.scheduler_address}"
                )
            else:
                try:
                    self.client = Client(
                        self.spec.address, set_as_default=True, timeout=10
                    )
                except OSError as exc:
                    raise OSError(
                        errno.ECONNREFUSED,
                        f"cannot reach the dask scheduler at {self.spec.address!r} "
                        f"({exc}); is it running, and is the address the one it "
                        "printed?",
                    ) from exc
            self._wait_for_workers()
            self._poll()
            self._baseline = {a: dict(w) for a, w in self.workers.items()}
            self._monitor = threading.Thread(
                target=self._watch, name="ndi-cluster-monitor", daemon=True
            )
            self._monitor.start()
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def job_ids(self) -> list[str]:
        """The SLURM job ids this session submitted (those known so far)."""
        if self.cluster is None:
            return []
        jobs = [getattr(j, "job_id", None) for j in self.cluster.workers.values()]
        return sorted((str(j) for j in jobs if j), key=lambda j: (len(j), j))

    def _n_workers(self) -> int:
        info = self.client.scheduler_info(n_workers=-1)
        return len(info.get("workers", {}))

    def _wait_for_workers(self) -> None:
        start = time.monotonic()
        said = False
        while self._n_workers() == 0:
            if self.cancelled():
                from .process._engine import Cancelled

                raise Cancelled("cancelled while waiting for the cluster's workers")
            waited = time.monotonic() - start
            if self.spec.kind == "slurm":
                self._check_jobs_alive(waited)
            elif waited > (self.start_timeout or no_workers_timeout()):
                raise TimeoutError(
                    errno.ETIMEDOUT,
                    f"the dask scheduler at {self.spec.address} has no worker "
                    f"after {waited:.0f} s; start workers for it (dask worker "
                    f"{self.spec.address}) and run again",
                )
            if not said and waited > 2:
                self.say(f"waiting for a first worker of {self.spec.describe()}...")
                said = True
            time.sleep(0.2)

    def _check_jobs_alive(self, waited: float) -> None:
        """Raise when every submitted SLURM job left the queue workerless."""
        if waited < 3:
            return
        ids = self.job_ids()
        if not ids or len(ids) < self.spec.jobs:
            return
        try:
            out = subprocess.run(
                ["squeue", "-h", "-o", "%i", "-j", ",".join(ids)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return
        if set(out.split()) & set(ids):
            return
        if self._n_workers():
            return
        job = self.cluster._dummy_job  # the job script's settings
        logs = getattr(job, "log_directory", None) or os.getcwd()
        command = getattr(job, "_command_template", "").split(" -m ")[0]
        raise OSError(
            errno.ECHILD,
            f"SLURM jobs {', '.join(ids)} ended before any dask worker started; "
            f"see their output (slurm-JOBID.out or dask-worker-*.err) in {logs!r}. "
            "The nodes must see this Python and its packages "
            f"({command or sys.executable})",
        )

    # --- during the run ---
    def check_paths(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        """Raise FileNotFoundError when a worker does not see one of ``paths``.

        The message names the path, the worker (host, SLURM job) and the
        fix: a file system every worker sees at the same path.
        """
        wanted = [str(Path(p).absolute()) for p in paths]
        found = self.client.run(_missing_paths, wanted, on_error="return")
        for address, missing in sorted(found.items()):
            if isinstance(missing, BaseException) or not missing:
                continue
            who = self._describe_worker(address)
            raise FileNotFoundError(
                errno.ENOENT,
                f"dask worker {who} does not see {missing[0]!r}: {_SHARED_FS_FIX}",
                missing[0],
            )

    def copy(self, image: Any, dst: str | os.PathLike[str], byte_order: str) -> Path:
        """Copy ``image`` into ``dst`` on one worker (one streamed task)."""
        future = self.client.submit(
            _copy_in_worker, image, str(Path(dst).absolute()), byte_order, pure=False
        )
        done = future.result()
        address = next(iter(self.client.who_has(future).get(future.key, [])), "")
        if address:
            self.workers.setdefault(address, {}).update(done)
        self._copied_by = address or f"pid {done['pid']} on {done['host']}"
        return Path(done["saved"])

    def _poll(self) -> None:
        """Note the workers there now, and their counters."""
        try:
            found = self.client.run(worker_identity, on_error="ignore")
        except Exception:  # a worker leaving mid-call: next time
            return
        with self._lock:
            for address, identity in found.items():
                if isinstance(identity, dict):
                    self.workers[address] = identity

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            self._poll()

    # --- closing ---
    def close(self) -> None:
        """Stop watching, close the client, then the cluster (scancel)."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join()
            self._monitor = None
            self._poll()  # the last counters of the workers still there
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()  # cancels the SLURM jobs
        config, self._config = self._config, None
        if config is not None:
            config.__exit__(None, None, None)

    # --- reporting ---
    def _describe_worker(self, address: str) -> str:
        identity = self.workers.get(address, {})
        where = [f"on {identity['host']}"] if identity.get("host") else []
        if identity.get("slurm_job_id"):
            where.insert(0, f"SLURM job {identity['slurm_job_id']}")
        return f"{address} ({', '.join(where)})" if where else address

    def work_done(self) -> dict[str, dict[str, int]]:
        """Per worker address: blocks written and bytes read in this session
        (the workers' counters now, not those of the last second's poll)."""
        if self.client is not None:
            self._poll()
        done = {}
        with self._lock:
            for address, identity in self.workers.items():
                before = self._baseline.get(address, {})
                counts = {
                    key: int(identity.get(key, 0)) - int(before.get(key, 0))
                    for key in ("blocks_written", "bytes_read", "bytes_written")
                }
                done[address] = counts
        return done

    def report(self) -> str:
        """Which workers (and SLURM jobs) did the work: a few lines."""
        from ._scratch import format_bytes

        lines = []
        for address, counts in sorted(self.work_done().items()):
            if not any(counts.values()):
                continue
            lines.append(
                f"  {self._describe_worker(address)}: {counts['blocks_written']} "
                f"blocks written, {format_bytes(counts['bytes_read'])} read"
            )
        copied = getattr(self, "_copied_by", None)
        if copied:
            lines.append(f"  copied by {self._describe_worker(copied)}")
        head = f"ran on {self.spec.describe()}"
        jobs = self.job_ids()
        if jobs:
            head += f" (SLURM job ids {', '.join(jobs)})"
        if not lines:
            return head + ": no worker reported any block"
        return head + ", work done by:\n" + "\n".join(lines)


def _import_dask_jobqueue() -> Any:
    """``dask_jobqueue``, imported without its SIGINT handler.

    dask-jobqueue 0.9's ``runner`` module, imported by its package, calls
    ``signal.signal(SIGINT, lambda *_: sys.exit())`` at import: Ctrl+C would
    then exit with status 0 instead of cancelling (130), and the import
    fails outside the main thread (the panel's worker thread).
    """
    import signal

    if "dask_jobqueue" in sys.modules:
        return sys.modules["dask_jobqueue"]
    real = signal.signal
    signal.signal = lambda *_args, **_kwargs: None
    try:
        import dask_jobqueue
    finally:
        signal.signal = real
    return dask_jobqueue


def _slurm_cluster(spec: ClusterSpec) -> Any:
    try:
        SLURMCluster = _import_dask_jobqueue().SLURMCluster
    except ImportError as exc:
        raise ImportError(
            f"running on SLURM needs dask-jobqueue ({exc}): pip install "
            "'napari-diskimage[cluster]'"
        ) from exc
    try:
        return SLURMCluster(**spec.slurm_options())
    except ValueError as exc:
        raise ValueError(
            f"cannot make SLURM jobs of {spec.describe()}: {exc}. Give "
            "--slurm-cores/--slurm-memory/--slurm-walltime, or set them in "
            "~/.config/dask/jobqueue.yaml (jobqueue: slurm: ...)"
        ) from exc


@contextlib.contextmanager
def session(
    spec: ClusterSpec | None,
    *,
    say: Callable[[str], Any] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Iterator[Session | None]:
    """A :class:`Session` for ``spec``, or None for this machine."""
    if spec is None or spec.is_local:
        yield None
        return
    with Session(spec, say=say, cancelled=cancelled) as opened:
        yield opened


def steps_on(
    spec: ClusterSpec | None,
    steps: Any,
    *,
    paths: Sequence[str | os.PathLike[str]] = (),
    cancelled: Callable[[], bool] | None = None,
    say: Callable[[str], Any] | None = None,
) -> Any:
    """The steps of ``steps`` (a generator) run on the cluster of ``spec``.

    Opens the session first (its jobs, a first worker), checks that the
    workers see ``paths``, and closes it at the end, however the steps
    end (closing this generator, a cancel, ends the SLURM jobs).  ``say``
    gets the session's messages and, at the end, its report.  Returns
    what ``steps`` returns.
    """
    with session(spec, say=say, cancelled=cancelled) as opened:
        if opened is not None:
            opened.check_paths(paths)
        result = yield from steps
        if opened is not None and say is not None:
            say(opened.report())
    return result


# --- the engine's wait on a cluster ----------------------------------------------
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

    from .process._engine import Cancelled

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
