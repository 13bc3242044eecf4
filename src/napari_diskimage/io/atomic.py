"""Writing a file atomically: a temporary name (or none), then a rename.

:func:`atomic_write` runs a writer's steps into a temporary file beside the
target and renames it when complete; a failure, a cancel or a killed
process leaves no partial file and the previous file untouched.  Also the
sweep of temporary files left by killed processes, space reservation and
the error for a disk that fills up part-way.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any

from .._scratch import check_free_space, format_bytes, remove_orphan
from .._steps import Steps

__all__ = [
    "atomic_write",
    "full_error",
    "open_anonymous",
    "partial_match",
    "reserve",
    "sweep_partial",
    "temporary_name",
]


def umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def atomic_write(target: Path, nbytes: int, write: Any) -> Steps:
    """Run ``write(fh)`` steps into a temporary file, then rename it.

    The temporary file sits beside the target (same file system, so the
    rename is atomic) and is removed on any failure or cancellation; an
    existing file at ``target`` is untouched until the final rename.  Where
    the system allows (Linux ``O_TMPFILE``) the file has no name until it is
    complete, so even a process killed with SIGKILL leaves nothing behind.
    """
    check_free_space(target.parent, nbytes, f"saving {target.name}")
    tmp: Path | None = None
    sweep_partial(target)
    try:
        fd = open_anonymous(target.parent)
        if fd is None:
            # A named file: locked while written, so that the next save to
            # the same target removes it if this process is killed.
            tmp = temporary_name(target)
            fd = os.open(
                tmp,
                os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        raise type(exc)(
            exc.errno,
            f"cannot save to {str(target)!r}: {exc.strerror}; choose a folder "
            "you can write to",
            str(target),
        ) from exc
    ok = False
    try:
        try:
            with os.fdopen(fd, "r+b") as fh:
                fh.raw.name = str(tmp or target)  # type: ignore[attr-defined]  # tifffile wants a named file
                yield from write(fh)
                fh.flush()
                if target.exists():
                    mode = stat.S_IMODE(target.stat().st_mode)
                else:
                    mode = 0o666 & ~umask()
                os.fchmod(fh.fileno(), mode)
                if tmp is None:
                    tmp = name_complete_file(fh.fileno(), target)
        except OSError as exc:
            full = full_error(exc, target, nbytes)
            if full is None:
                raise
            raise full from exc
        os.replace(tmp, target)
        ok = True
    finally:
        if not ok and tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return target


def temporary_name(target: Path, what: str = "part") -> Path:
    """A fresh temporary name beside ``target``: ``.NAME.ndi-PID-TOKEN.WHAT``
    (the one naming of partial files and stores; :func:`partial_match`
    recognises it, with the process that made it)."""
    token = secrets.token_hex(6)
    return target.with_name(f".{target.name}.ndi-{os.getpid()}-{token}.{what}")


def partial_match(target: Path, name: str, whats: tuple[str, ...] = ("part",)) -> int:
    """The id of the process that made ``name`` as a :func:`temporary_name`
    of ``target`` (one of ``whats``), or 0 if it is not one."""
    pattern = (
        rf"^\.{re.escape(target.name)}\.ndi-(?P<pid>\d+)-[0-9a-f]{{12}}"
        rf"\.(?:{'|'.join(map(re.escape, whats))})$"
    )
    match = re.match(pattern, name)
    return int(match["pid"]) if match else 0


def sweep_partial(target: Path) -> None:
    """Remove temporary files of saves to ``target`` by killed processes."""
    with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
        for entry in entries:
            pid = partial_match(target, entry.name)
            if pid and pid != os.getpid():
                remove_orphan(entry.path, pid)


def name_complete_file(fd: int, target: Path) -> Path:
    """Link the unnamed file ``fd`` beside ``target``; return its name."""
    for attempt in range(3):
        tmp = temporary_name(target)
        try:
            name_file(fd, tmp)
            return tmp
        except FileExistsError as exc:  # never overwrite what is there
            if attempt == 2:
                raise FileExistsError(
                    exc.errno,
                    f"cannot save to {str(target)!r}: temporary name {tmp.name!r} "
                    "is taken; remove stray '.part' files beside it",
                    str(target),
                ) from exc
    raise AssertionError("unreachable")


def name_file(fd: int, path: Path) -> None:
    """Give the unnamed file ``fd`` the name ``path`` (fails if it exists).

    linkat must follow the /proc link; os.link only calls linkat (rather
    than link, which links the symlink itself) when given a directory fd.
    """
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(
            f"/proc/self/fd/{fd}", path.name, dst_dir_fd=folder, follow_symlinks=True
        )
    finally:
        os.close(folder)


def open_anonymous(folder: Path) -> int | None:
    """An unnamed file in ``folder`` (O_TMPFILE), or None if unsupported."""
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        return None
    flags = os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC
    try:
        fd = os.open(folder, flags, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None  # the file system cannot: use a named file
        raise
    # Some file systems (overlayfs) create the file but cannot name it
    # later (EXDEV): try naming a second one first.
    probe_fd = os.open(folder, flags, 0o600)
    probe = folder / f".ndi-probe-{secrets.token_hex(6)}"
    try:
        name_file(probe_fd, probe)
    except OSError:
        os.close(fd)
        return None
    finally:
        os.close(probe_fd)
    os.unlink(probe)
    return fd


def full_error(exc: OSError, target: Path, nbytes: int) -> OSError | None:
    """A write that failed part-way (disk full, quota, file-size limit) as an
    error naming the file; None for other errors and for those that already
    name a file (a truncated source, a failed reservation)."""
    if exc.filename is not None or exc.errno not in (
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
    ):
        return None
    return OSError(
        exc.errno,
        f"writing {str(target)!r} ({format_bytes(nbytes)}) failed part-way: "
        f"{exc.strerror}. The partial file was removed; free some space or "
        "choose another folder, then try again",
        str(target),
    )


def reserve(fd: int, nbytes: int, target: Path) -> None:
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot reserve {format_bytes(nbytes)} to save {str(target)!r}: "
            f"{exc.strerror}; free some space or save elsewhere",
            str(target),
        ) from exc
