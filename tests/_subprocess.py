"""Run Python code in a fresh interpreter and read the JSON it prints last."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest


def run_python(code: str, *args: str, timeout: float = 60, **env: str) -> dict:
    """Run ``code`` (``sys.argv[1:]`` = ``args``); return the JSON it prints last.

    Fails the test with the signal's name if the process was killed by one
    (SIGBUS from a mapped page beyond the end of a file, SIGKILL by the OOM
    killer, ...).
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )
    if proc.returncode < 0:
        pytest.fail(
            f"the subprocess was killed by {signal.Signals(-proc.returncode).name}"
            f"\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
