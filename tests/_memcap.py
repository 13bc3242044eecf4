"""Run a command under a memory cap, for the out-of-core tests.

One implementation serves the benchmarks and the tests:
``benchmarks/memcap.py`` (a fresh memory cgroup, v1 or v2; page cache and
clean mapped pages are reclaimed under the cap, anonymous memory over it
is killed).  This adapter gives it the ``subprocess.run`` shape the tests
use.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "ndi_bench_memcap", Path(__file__).resolve().parents[1] / "benchmarks" / "memcap.py"
)
assert _SPEC is not None and _SPEC.loader is not None
memcap = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = memcap  # its dataclass looks itself up there
_SPEC.loader.exec_module(memcap)


def unavailable_reason() -> str | None:
    """Why capped runs are impossible here, or None if they work."""
    if os.geteuid() != 0:
        return "memory caps need root (a memory cgroup)"
    if not memcap.available():
        return "no writable memory cgroup on this machine"
    return None


def run_capped(
    limit_bytes: int, args: list[str], *, timeout: float = 600, **_kwargs: object
) -> subprocess.CompletedProcess:
    """``subprocess.run(args, capture_output=True, text=True)`` in a cgroup
    capped at ``limit_bytes``; a process killed by the cap returns 137."""
    result = memcap.run_capped(limit_bytes, args, timeout=timeout)
    code = 137 if result.killed else result.returncode
    if result.timed_out:
        code = 124
    return subprocess.CompletedProcess(args, code, result.stdout, result.stderr)
