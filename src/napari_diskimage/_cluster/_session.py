"""A session on a cluster: open it (a first worker; a SLURM job that ends
before its worker starts is an error naming its log), check that the
workers see the files, note which workers did the work, close it (the
client, then the cluster: ``scancel``) however the run ends.
"""

from __future__ import annotations

import contextlib
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

from ..process._counters import Cancelled, stats
from ._spec import ClusterSpec, no_workers_timeout

__all__ = ["Session", "session", "steps_on", "worker_identity"]

_SHARED_FS_FIX = (
    "the input files and the disk-image directory must be on a file system "
    "every worker sees at the same path (a shared file system): move them "
    "there, or choose a shared disk-image directory (NAPARI_DISKIMAGE_DIR, "
    "or the 'Disk-image directory' tool)"
)


# --- what runs in a worker ---------------------------------------------------
def worker_identity() -> dict[str, Any]:
    """This process's host, pid, SLURM job id and engine counters."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        **stats(),
    }


def _missing_paths(paths: Sequence[str]) -> list[str]:
    return [p for p in paths if not os.path.exists(p)]


def _copy_in_worker(image: Any, dst: str, byte_order: str) -> dict[str, Any]:
    from .._steps import run_steps
    from ..io.save import iter_save

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
    :class:`~napari_diskimage.process._counters.Cancelled`.
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
        from .._scratch import format_bytes

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
