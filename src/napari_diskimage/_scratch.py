"""The disk-image directory and the scratch files in it.

A scratch file holds the pixels of a disk image made by this library
(:func:`napari_diskimage.copy`, ...).  It lives in the disk-image directory
(IPSDK ``getAllocatedDiskImagePath``) and is deleted when its image is
dropped.  Each one is

* created exclusively (``O_EXCL | O_NOFOLLOW``) with owner-only permissions
  under an unpredictable name, so nobody else can read it or redirect it
  through a symlink;
* named ``ndi-<pid>-<random>_<X>x<Y>x..._<Type>.raw``: the RAW naming
  convention, so other tools can open it by name;
* locked with ``flock`` by the process that owns it for as long as it is
  open, and fully allocated (``posix_fallocate``) so that writing through a
  memory map on a full disk fails at creation with ENOSPC instead of killing
  the process with SIGBUS later.

A process killed with SIGKILL cannot delete its scratch files.  The next
allocation (in any process) sweeps them: a file is removed only if its
name matches the pattern above, the process named in it is gone *and* no
process holds its lock.  Nothing else in the folder is touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from ._geometry import Geometry

__all__ = [
    "ENV_VAR",
    "check_free_space",
    "format_bytes",
    "get_disk_image_dir",
    "set_disk_image_dir",
    "sweep_orphans",
]

#: Environment variable that sets the default disk-image directory.
ENV_VAR = "NAPARI_DISKIMAGE_DIR"

SCRATCH_PATTERN = re.compile(r"^ndi-(?P<pid>\d+)-(?P<token>[0-9a-f]{16})_.+\.raw$")

_dir: Path | None = None
_dir_lock = threading.Lock()


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _default_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    # A per-user cache folder on disk: /tmp is a RAM filesystem on many
    # systems, which defeats the point of a disk image.
    return platformdirs.user_cache_path("napari-diskimage") / "disk-images"


def get_disk_image_dir() -> Path:
    """Return the folder where new disk images are created.

    IPSDK: ``PyIPSDK.getAllocatedDiskImagePath()``.  It is the folder given
    to :func:`set_disk_image_dir`, else ``$NAPARI_DISKIMAGE_DIR``, else a
    per-user cache folder (``~/.cache/napari-diskimage/disk-images`` on
    Linux).  The folder may not exist yet; it is created on first use.
    """
    with _dir_lock:
        return _dir if _dir is not None else _default_dir()


def _check_writable(path: Path) -> None:
    """Raise a clear error unless a file can be created in ``path``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"cannot use {str(path)!r} as disk-image directory: it exists and "
            "is not a folder; choose a folder",
            str(path),
        ) from exc
    except OSError as exc:
        cls = PermissionError if exc.errno == errno.EROFS else type(exc)
        raise cls(
            exc.errno,
            f"cannot create disk-image directory {str(path)!r}: "
            f"{exc.strerror}; choose a folder you can write to",
            str(path),
        ) from exc
    if not path.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"cannot use {str(path)!r} as disk-image directory: not a folder",
            str(path),
        )
    # os.access() is not enough (root, read-only mounts, ACLs): try it.
    probe = path / f".ndi-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        cls = PermissionError if exc.errno in (errno.EACCES, errno.EPERM) else OSError
        if exc.errno == errno.EROFS:
            cls = PermissionError
        raise cls(
            exc.errno,
            f"disk-image directory {str(path)!r} is not writable "
            f"({exc.strerror}); choose a folder you can write to, e.g. with "
            f"set_disk_image_dir() or ${ENV_VAR}",
            str(path),
        ) from exc
    os.close(fd)
    os.unlink(probe)


def set_disk_image_dir(path: str | os.PathLike[str]) -> Path:
    """Set the folder where new disk images are created.

    IPSDK: ``PyIPSDK.setAllocatedDiskImagePath(path)``.  The folder is
    created if missing.  Images already open keep their files.

    Returns
    -------
    pathlib.Path
        The absolute folder.

    Raises
    ------
    PermissionError
        The folder cannot be written (permissions, read-only file system).
    NotADirectoryError
        The path is a file.
    OSError
        The folder cannot be created for another reason.
    """
    global _dir
    folder = Path(path).expanduser().absolute()
    _check_writable(folder)
    with _dir_lock:
        _dir = folder
    return folder


def _reset_disk_image_dir() -> None:
    """Forget :func:`set_disk_image_dir` (tests)."""
    global _dir
    with _dir_lock:
        _dir = None


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise ``OSError(ENOSPC)`` with the numbers if ``folder`` lacks space."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"not enough free space for {what}: it needs {format_bytes(needed)} "
            f"but {str(folder)!r} has {format_bytes(free)} free; free some "
            "space or choose another folder",
            str(folder),
        )


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def sweep_orphans(folder: Path | None = None) -> list[Path]:
    """Remove scratch files left behind by processes that were killed.

    A file is removed only if it is named like a scratch file, the process
    named in it is not running and nobody holds its lock.  Returns the
    removed paths.
    """
    folder = get_disk_image_dir() if folder is None else Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    me = os.getpid()
    for entry in entries:
        match = SCRATCH_PATTERN.match(entry.name)
        if match is None:
            continue
        pid = int(match["pid"])
        if pid != me and remove_orphan(entry.path, pid):
            removed.append(Path(entry.path))
    return removed


def remove_orphan(path: str, pid: int) -> bool:
    """Delete ``path`` if process ``pid`` is gone and nobody holds its lock.

    Never follows a symlink; returns True if the file was removed.
    """
    if _pid_running(pid):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # gone already, a symlink, or not ours to read
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False  # a live process (e.g. a forked child) still holds it
    try:
        # Only unlink the file we hold: another sweeper may have replaced
        # the name meanwhile.
        st = os.fstat(fd)
        cur = os.lstat(path)
        if (st.st_dev, st.st_ino) == (cur.st_dev, cur.st_ino):
            os.unlink(path)
            return True
    except OSError:
        pass
    finally:
        os.close(fd)
    return False


@dataclass
class ScratchFile:
    """An open, locked, allocated scratch file; :meth:`release` deletes it."""

    path: Path
    fd: int
    nbytes: int
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        """Delete the file and drop the lock (idempotent, never raises)."""
        if self._released:
            return
        self._released = True
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def release_at_exit(self) -> None:
        """Delete the file's name now; free its space when this process ends,
        in a helper process, not in this one (for a command about to exit).

        Freeing a large file's blocks can take minutes: on a file system
        mounted with ``discard``, ext4 discards them synchronously in the
        ``close`` (or the process exit) that drops the last reference, behind
        whatever the disk is doing (a cancelled command took 228 s to exit
        after a 6 GiB file was deleted).  A helper that inherited the
        descriptor holds that last reference until this process has exited,
        then pays the wait itself.  Falls back to :meth:`release`."""
        if self._released:
            return
        import subprocess

        try:
            helper = subprocess.Popen(
                ["/bin/sh", "-c", "read _"],  # EOF: this process has exited
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(self.fd,),
                start_new_session=True,  # not stopped by the terminal's Ctrl+C
            )
        except OSError:
            self.release()
            return
        _HELPERS.append(helper)  # its pipe stays open until this process ends
        self.release()


#: Helpers holding released scratch files until this process exits.
_HELPERS: list[Any] = []


def create_scratch(geometry: Geometry, what: str = "a new disk image") -> ScratchFile:
    """Create, lock and allocate a scratch file for ``geometry``.

    Raises
    ------
    OSError
        ENOSPC with the numbers when the disk-image directory lacks space;
        PermissionError when it is not writable.
    """
    folder = get_disk_image_dir()
    if not folder.is_dir():
        _check_writable(folder)
    sweep_orphans(folder)
    nbytes = geometry.nbytes
    check_free_space(folder, nbytes, what)
    name = geometry.filename(f"ndi-{os.getpid()}-{secrets.token_hex(8)}")
    path = folder / name
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        denied = (errno.EACCES, errno.EPERM, errno.EROFS)
        cls = PermissionError if exc.errno in denied else OSError
        raise cls(
            exc.errno,
            f"cannot create a disk image in {str(folder)!r}: {exc.strerror}; "
            "choose a writable disk-image directory (set_disk_image_dir)",
            str(path),
        ) from exc
    scratch = ScratchFile(path, fd, nbytes)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        scratch.release()
        raise OSError(
            exc.errno,
            f"cannot reserve {format_bytes(nbytes)} for {what} in "
            f"{str(folder)!r}: {exc.strerror}; free some space or choose "
            "another disk-image directory",
            str(path),
        ) from exc
    except BaseException:
        scratch.release()
        raise
    return scratch
