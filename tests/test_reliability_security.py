"""Scratch files are private: owner-only, created exclusively under
unpredictable names, never through a planted symlink."""

from __future__ import annotations

import collections
import itertools
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

import napari_diskimage as ndi
from napari_diskimage import _scratch
from napari_diskimage.io import atomic as _io

GEOMETRY = ndi.Geometry("uint16", 8, 4)


@pytest.fixture
def permissive_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def test_scratch_files_are_owner_only_whatever_the_umask(permissive_umask):
    with ndi.new_disk_image(GEOMETRY) as img, ndi.copy(np.ones((3, 3))) as copied:
        for path in (img.path, copied.path):
            st = path.lstat()
            assert stat.S_ISREG(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
            assert st.st_uid == os.geteuid()


def test_a_save_in_progress_is_private_then_gets_normal_permissions(
    data_dir, permissive_umask
):
    """While a save runs, its file is owner-only, and where the system
    allows (O_TMPFILE) it has no name in the folder at all."""
    target = data_dir / "out.raw"
    seen = []

    def progress(done, total):
        names = [p.name for p in data_dir.iterdir()]
        files = []  # (path, mode) of this process's open files in data_dir
        for fd in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{fd}")
                mode = stat.S_IMODE(os.stat(f"/proc/self/fd/{fd}").st_mode)
            except OSError:
                continue  # the fd listdir itself used
            if link.startswith(str(data_dir)):
                files.append((link, mode))
        seen.append((names, files))

    ndi.save_raw(np.ones((4, 4), np.uint8), target, progress=progress)
    assert seen
    for names, files in seen:
        assert len(files) == 1 and files[0][1] == 0o600, files
        # unnamed ("#123 (deleted)"), or a dot-file ending in .part
        assert names == [] or (len(names) == 1 and names[0].startswith(".out.raw.")), (
            names
        )
    assert stat.S_IMODE(target.stat().st_mode) == 0o666  # umask 0
    assert sorted(p.name for p in data_dir.iterdir()) == ["out.raw"]


def test_scratch_names_are_unpredictable():
    """200 names: 64-bit hex tokens, all different, digits spread evenly
    (a counter, a clock or the pid would not be)."""
    tokens = []
    for _ in range(200):
        with ndi.new_disk_image(GEOMETRY) as img:
            match = _scratch.SCRATCH_PATTERN.match(img.path.name)
            assert match is not None and match["pid"] == str(os.getpid())
            tokens.append(match["token"])
    assert len(set(tokens)) == 200
    assert all(len(t) == 16 for t in tokens)
    counts = collections.Counter("".join(tokens))
    assert set(counts) == set("0123456789abcdef")
    assert all(120 < n < 290 for n in counts.values()), counts  # ~200 each
    # consecutive names share no structure: position by position they differ
    same = sum(
        a == b for t, u in itertools.pairwise(tokens) for a, b in zip(t, u, strict=True)
    )
    assert same < 0.15 * 16 * 199  # 1/16 expected by chance


@pytest.fixture
def predictable_token(monkeypatch):
    """Pretend an attacker guessed the next random token."""
    monkeypatch.setattr(_scratch.secrets, "token_hex", lambda n: "ab" * n)
    return "ab" * 8


def test_planted_symlink_at_the_scratch_name_is_not_followed(
    disk_image_dir, data_dir, predictable_token
):
    victim = data_dir / "victim.txt"
    victim.write_text("the user's data")
    disk_image_dir.mkdir()
    name = GEOMETRY.filename(f"ndi-{os.getpid()}-{predictable_token}")
    trap = disk_image_dir / name
    trap.symlink_to(victim)
    with pytest.raises(FileExistsError) as info:
        ndi.new_disk_image(GEOMETRY)
    assert str(disk_image_dir) in str(info.value)
    assert victim.read_text() == "the user's data"  # not truncated, not grown
    assert trap.is_symlink() and os.readlink(trap) == str(victim)
    # a dangling symlink (to a file that would be created) is not followed
    trap.unlink()
    missing = data_dir / "created-through-link"
    trap.symlink_to(missing)
    with pytest.raises(FileExistsError):
        ndi.new_disk_image(GEOMETRY)
    assert not missing.exists()
    trap.unlink()


def test_planted_symlink_at_the_temporary_save_name_is_not_followed(
    data_dir, monkeypatch
):
    monkeypatch.setattr(_io.secrets, "token_hex", lambda n: "cd" * n)
    victim = data_dir / "victim.txt"
    victim.write_text("the user's data")
    target = data_dir / "out.raw"
    (data_dir / f".out.raw.ndi-{os.getpid()}-{'cd' * 6}.part").symlink_to(victim)
    with pytest.raises(FileExistsError) as info:
        ndi.save_raw(np.ones((4, 4), np.uint8), target)
    assert str(target) in str(info.value)
    assert victim.read_text() == "the user's data"
    assert not target.exists()


def test_sweep_does_not_follow_a_planted_symlink(disk_image_dir, data_dir):
    victim = data_dir / "victim_4x4_UInt8.raw"
    victim.write_bytes(b"x" * 16)
    disk_image_dir.mkdir()
    child = subprocess.Popen(["true"])
    child.wait()  # a pid that is not running
    trap = disk_image_dir / f"ndi-{child.pid}-{'0' * 16}_4x4_UInt8.raw"
    trap.symlink_to(victim)
    assert ndi.sweep_orphans() == []
    assert victim.read_bytes() == b"x" * 16
    trap.unlink()


@pytest.fixture
def shared_dir():
    """A disk-image directory other users can enter (like a shared scratch
    disk), outside pytest's private tmp tree."""
    folder = Path(tempfile.mkdtemp(prefix="ndi-shared-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_another_user_cannot_read_or_write_a_scratch_file(shared_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user (nobody)")
    ndi.set_disk_image_dir(shared_dir)
    with ndi.copy(np.full((4, 4), 42, np.uint8)) as img:
        code = f"""
            import json, os
            os.setgid(65534)
            os.setuid(65534)
            out = {{}}
            for mode, flags in (("read", os.O_RDONLY), ("write", os.O_WRONLY)):
                try:
                    os.close(os.open({str(img.path)!r}, flags))
                    out[mode] = "opened"
                except OSError as exc:
                    out[mode] = type(exc).__name__
            out["listed"] = {img.path.name!r} in os.listdir({str(shared_dir)!r})
            print(json.dumps(out))
        """
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out == {
            "read": "PermissionError",
            "write": "PermissionError",
            "listed": True,
        }
        assert img.load_plane()[0, 0] == 42
    assert os.listdir(shared_dir) == []
