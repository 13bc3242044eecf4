"""Small real file systems for full-disk tests (a tmpfs mounted as root)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest


def mount_tmpfs(options: str) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = Path(tempfile.mkdtemp(prefix="ndi-fs-"))
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    return folder


def unmount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], check=False)
    if os.path.ismount(folder):  # something still holds a file: detach
        subprocess.run(["umount", "-l", str(folder)], check=False)
    folder.rmdir()
