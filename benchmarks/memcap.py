"""Run a command under a memory cap (a fresh memory cgroup), report its fate.

A program that holds more than the cap in memory it cannot give back
(anonymous memory: numpy arrays, Python objects, GL buffers) is killed by
the kernel's OOM killer.  File pages (page cache, clean or written-back
memory-mapped pages) are charged to the cgroup too, but the kernel reclaims
them under the cap instead of killing: an out-of-core program lives there.

Needs root and either a cgroup v1 memory hierarchy mounted at
``/sys/fs/cgroup/memory`` or cgroup v2 with the memory controller enabled.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CapResult", "available", "run_capped"]

_V1 = Path("/sys/fs/cgroup/memory")
_V2 = Path("/sys/fs/cgroup")


@dataclass
class CapResult:
    """How a capped command ended."""

    cap_bytes: int
    returncode: int | None  # None: timed out (then killed by us)
    peak_bytes: int  # cgroup peak, page cache included
    oom_kills: int
    seconds: float
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def killed(self) -> bool:
        return self.oom_kills > 0 or self.returncode in (-signal.SIGKILL, 137)

    @property
    def verdict(self) -> str:
        if self.timed_out:
            return "timed out"
        if self.killed:
            return "killed (OOM, exit 137)"
        if self.returncode == 0:
            return "survived"
        if self.returncode is not None and self.returncode < 0:
            name = signal.Signals(-self.returncode).name
            return f"died of {name} (exit {128 - self.returncode})"
        return f"failed (exit {self.returncode})"


def _mode() -> str | None:
    if _V1.is_dir() and os.access(_V1, os.W_OK):
        return "v1"
    controllers = _V2 / "cgroup.controllers"
    if controllers.is_file() and "memory" in controllers.read_text().split():
        return "v2" if os.access(_V2, os.W_OK) else None
    return None


def available() -> bool:
    """True if this process can create capped memory cgroups."""
    return _mode() is not None


def _make_cgroup(cap: int) -> tuple[Path, str, str]:
    mode = _mode()
    name = f"ndi-bench-{os.getpid()}-{secrets.token_hex(4)}"
    if mode == "v1":
        cg = _V1 / name
        cg.mkdir()
        (cg / "memory.limit_in_bytes").write_text(str(cap))
        # no swap beyond the cap, where the kernel accounts swap
        with contextlib.suppress(OSError):
            (cg / "memory.memsw.limit_in_bytes").write_text(str(cap))
        return cg, "memory.max_usage_in_bytes", "memory.oom_control"
    if mode == "v2":
        cg = _V2 / name
        cg.mkdir()
        (cg / "memory.max").write_text(str(cap))
        with contextlib.suppress(OSError):
            (cg / "memory.swap.max").write_text("0")
        return cg, "memory.peak", "memory.events"
    raise PermissionError(
        "no writable memory cgroup here: run as root on a system with a "
        "cgroup v1 memory hierarchy or cgroup v2 with the memory controller"
    )


def _oom_kills(path: Path) -> int:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return 0


def _remove(cg: Path) -> None:
    # The processes are gone once wait() returned, but the kernel may take a
    # moment to let go of the cgroup.
    for _ in range(50):
        try:
            cg.rmdir()
            return
        except OSError:
            time.sleep(0.1)


def run_capped(
    cap_bytes: int,
    cmd: list[str],
    *,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> CapResult:
    """Run ``cmd`` in a fresh cgroup capped at ``cap_bytes``; wait for it.

    The child joins the cgroup before it execs, so everything it allocates
    (and every process it starts) is charged there.  On timeout the child's
    process group is killed and ``timed_out`` is set.
    """
    cg, peak_file, oom_file = _make_cgroup(cap_bytes)
    procs = str(cg / "cgroup.procs")

    def join() -> None:  # runs in the child between fork and exec
        os.setsid()
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))

    t0 = time.perf_counter()
    timed_out = False
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=join,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        seconds = time.perf_counter() - t0
        peak = int((cg / peak_file).read_text())
        kills = _oom_kills(cg / oom_file)
        return CapResult(
            cap_bytes=cap_bytes,
            returncode=None if timed_out else proc.returncode,
            peak_bytes=peak,
            oom_kills=kills,
            seconds=seconds,
            stdout=out,
            stderr=err,
            timed_out=timed_out,
        )
    finally:
        _remove(cg)


if __name__ == "__main__":  # python benchmarks/memcap.py 512M cmd ...
    import sys

    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    spec = sys.argv[1].upper().rstrip("B").rstrip("I")
    cap = int(float(spec[:-1]) * units[spec[-1]]) if spec[-1] in units else int(spec)
    res = run_capped(cap, sys.argv[2:])
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    print(
        f"memcap: cap {cap >> 20} MiB, peak with page cache "
        f"{res.peak_bytes >> 20} MiB, oom kills {res.oom_kills}: {res.verdict}",
        file=sys.stderr,
    )
    code = res.returncode
    sys.exit(124 if code is None else 128 - code if code < 0 else code)
