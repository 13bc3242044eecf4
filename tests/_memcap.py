"""Run a command in a fresh memory cgroup (root, cgroup v1 or v2).

The kernel kills a process whose anonymous memory exceeds the cap (exit
137); page cache and clean mapped file pages are reclaimed instead, which is
what out-of-core code relies on.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from pathlib import Path

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


def unavailable_reason() -> str | None:
    """Why capped runs are impossible here, or None if they work."""
    if os.geteuid() != 0:
        return "memory caps need root (a memory cgroup)"
    if V1.is_dir() and os.access(V1, os.W_OK):
        return None
    controllers = V2 / "cgroup.controllers"
    if controllers.is_file() and "memory" in controllers.read_text().split():
        return None
    return "no writable memory cgroup on this machine"


def run_capped(
    limit_bytes: int, args: list[str], **kwargs
) -> subprocess.CompletedProcess:
    """``subprocess.run(args)`` inside a new cgroup capped at ``limit_bytes``."""
    name = f"ndi-test-{os.getpid()}-{secrets.token_hex(4)}"
    if V1.is_dir() and os.access(V1, os.W_OK):
        cg = V1 / name
        cg.mkdir()
        (cg / "memory.limit_in_bytes").write_text(str(limit_bytes))
        swap = cg / "memory.memsw.limit_in_bytes"
        if swap.exists():
            with contextlib.suppress(OSError):
                swap.write_text(str(limit_bytes))
    else:
        cg = V2 / name
        cg.mkdir()
        (cg / "memory.max").write_text(str(limit_bytes))
        with contextlib.suppress(OSError):
            (cg / "memory.swap.max").write_text("0")
    procs = cg / "cgroup.procs"
    try:
        return subprocess.run(
            args, preexec_fn=lambda: procs.write_text(str(os.getpid())), **kwargs
        )
    finally:
        with contextlib.suppress(OSError):
            cg.rmdir()
