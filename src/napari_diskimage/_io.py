"""Long operations: copy into a scratch disk image, save to TIFF or RAW.

Each operation is a generator of ``(done_bytes, total_bytes)`` steps
(``iter_copy``, ``iter_save_tiff``, ``iter_save_raw``) whose return value is
the result; ``copy``/``save_tiff``/``save_raw`` drive them with an optional
``progress(done, total)`` callback.  The same generators drive a terminal
bar, napari's progress bar and a cancel button (closing the generator
cancels).  Memory is bounded by one block (``BLOCK_BYTES``) whatever the
image size.  On any failure or cancellation the partial file is removed.

Pixels that are already contiguous in a file in the right byte order are
copied by the kernel (``os.copy_file_range``, what ``cp`` uses): no pixel
passes through this process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ._diskimage import (
    DiskImage,
    ProgressCallback,
    Steps,
    map_scratch,
    run_steps,
)
from ._errors import closed_error
from ._geometry import Geometry
from ._scratch import check_free_space, create_scratch, format_bytes, remove_orphan
from .storage.mapped import bytes_of

__all__ = [
    "copy",
    "iter_copy",
    "iter_save",
    "iter_save_raw",
    "iter_save_tiff",
    "save_raw",
    "save_tiff",
]

#: Largest block of pixels held in memory by a streaming operation.
BLOCK_BYTES = 32 << 20
#: Bytes handed to the kernel per copy_file_range call (one progress step).
KERNEL_CHUNK = 128 << 20

_IMAGEJ_DTYPES = {np.dtype("uint8"), np.dtype("uint16"), np.dtype("float32")}


class _Source:
    """A 5D (t, c, z, y, x) read-only view of what is being copied or saved."""

    def __init__(self, image: Any, order: tuple[int, ...] = (0, 1, 2, 3, 4)):
        if isinstance(image, DiskImage):
            if image.closed:
                raise closed_error(image.path)
            self.disk_image: DiskImage | None = image
            self.data: Any = image.array
            self.name = str(image.path)
        else:
            self.disk_image = None
            data = image
            if not (hasattr(data, "shape") and hasattr(data, "dtype")):
                data = np.asarray(data)
            if not 1 <= len(data.shape) <= 5:
                raise ValueError(
                    f"cannot make a disk image of an array with shape "
                    f"{tuple(data.shape)}: 1 to 5 axes (t, c, z, y, x) expected"
                )
            pad = 5 - len(data.shape)
            self.data = data if pad == 0 else _Padded(data, pad)
            self.name = f"an in-memory {type(image).__name__}"
        self.geometry = Geometry.from_shape(self.data.shape, self.data.dtype)
        self.order = tuple(order)
        self.shape = tuple(self.geometry.shape[i] for i in self.order)

    def byte_runs(self, dtype: np.dtype) -> list[tuple[Path, int, int]] | None:
        """(file, offset, nbytes) runs holding the pixels in order as ``dtype``
        (the kernel copies them), or None (in memory, compressed ...)."""
        img = self.disk_image
        if img is None:
            return None
        return img.storage.byte_runs(self.order, dtype)

    def block(self, key: tuple[Any, ...]) -> np.ndarray:
        """Pixels at ``key`` (in this source's axis order), loaded."""
        if self.order == (0, 1, 2, 3, 4):
            return self._load(key)
        # key is in transposed order: undo it, read, transpose the result.
        src_key: list[Any] = [slice(None)] * 5
        for pos, axis in enumerate(self.order):
            src_key[axis] = key[pos] if pos < len(key) else slice(None)
        block = self._load(tuple(src_key))
        kept = [a for a in self.order if not isinstance(src_key[a], (int, np.integer))]
        original = sorted(kept)
        return block.transpose([original.index(a) for a in kept])

    def _load(self, key: tuple[Any, ...]) -> np.ndarray:
        if self.disk_image is not None:
            return _read_box(self.disk_image, key)
        return np.asarray(self.data[key])


def _read_box(image: DiskImage, key: tuple[Any, ...]) -> np.ndarray:
    """Pixels of ``image`` at ``key`` (integers and unit-step slices over
    (t, c, z, y, x)), read with pread, not through the memory map: a file
    that another program truncated meanwhile raises OSError instead of
    killing the process with SIGBUS.
    """
    full = tuple(key) + (slice(None),) * (5 - len(key))
    ranges = []
    for k, n in zip(full, image.shape, strict=True):
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step != 1:  # pragma: no cover - _blocks makes unit steps
                raise AssertionError(f"unexpected step in {key}")
            ranges.append(range(start, max(start, stop)))
        else:
            ranges.append(range(int(k), int(k) + 1))
    rt, rc, rz, ry, rx = ranges
    out = np.empty([len(r) for r in ranges], dtype=image.dtype)
    for i, t in enumerate(rt):
        for j, c in enumerate(rc):
            for k, z in enumerate(rz):
                out[i, j, k] = image.read_region(
                    t, c, z, ry.start, len(ry), 1, rx.start, len(rx), 1
                )
    return out[tuple(slice(None) if isinstance(k, slice) else 0 for k in full)]


class _Padded:
    """An array-like with ``pad`` leading axes of size 1."""

    def __init__(self, data: Any, pad: int):
        self._data, self._pad = data, pad
        self.shape = (1,) * pad + tuple(data.shape)
        self.dtype = data.dtype

    def __getitem__(self, key: tuple[Any, ...]) -> Any:
        # numpy semantics: the padded axes stay in the result unless indexed
        # by an integer (transposing a block relies on it).
        key = tuple(key) + (slice(None),) * (len(self.shape) - len(key))
        block = np.asarray(self._data[key[self._pad :]])
        kept = sum(not isinstance(k, (int, np.integer)) for k in key[: self._pad])
        return block.reshape((1,) * kept + block.shape)


def _blocks(shape: tuple[int, ...], itemsize: int) -> Generator[tuple[Any, ...]]:
    """Keys that cover ``shape`` in C order, each at most ~BLOCK_BYTES."""
    inner = itemsize
    axis = len(shape)
    while axis > 0 and inner * shape[axis - 1] <= BLOCK_BYTES:
        inner *= shape[axis - 1]
        axis -= 1
    if axis == 0:
        yield ()
        return
    step = max(1, BLOCK_BYTES // inner)
    n = shape[axis - 1]
    for outer in np.ndindex(*shape[: axis - 1]):
        for start in range(0, n, step):
            yield (*outer, slice(start, min(start + step, n)))


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


def _read_ahead(path: Path, offset: int, nbytes: int) -> None:
    """Ask the kernel to start reading ``nbytes`` of ``path`` (the next
    slice of a folder) while the current one is copied."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.posix_fadvise(fd, offset, nbytes, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)


def _kernel_copy(
    src: Path, src_offset: int, fd: int, offset: int, nbytes: int
) -> Generator[int]:
    """Copy bytes file to file in the kernel; yields bytes done."""
    in_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(in_fd, src_offset, nbytes, os.POSIX_FADV_SEQUENTIAL)
        done = 0
        use_kernel = hasattr(os, "copy_file_range")
        while done < nbytes:
            n = min(KERNEL_CHUNK, nbytes - done)
            got = 0
            if use_kernel:
                try:
                    got = os.copy_file_range(
                        in_fd, fd, n, src_offset + done, offset + done
                    )
                except OSError as exc:
                    if exc.errno not in (
                        errno.EXDEV,
                        errno.ENOSYS,
                        errno.EOPNOTSUPP,
                        errno.EINVAL,
                    ):
                        raise
                    use_kernel = False  # e.g. across file systems: read/write
            if not use_kernel:
                buf = os.pread(in_fd, min(n, BLOCK_BYTES), src_offset + done)
                if buf:
                    _pwrite_all(fd, memoryview(buf), offset + done)
                got = len(buf)
            if got == 0:
                raise OSError(
                    errno.EIO,
                    f"{str(src)!r} ended early: it was truncated or changed by "
                    "another program while being copied",
                    str(src),
                )
            done += got
            yield done
    finally:
        os.close(in_fd)


def _write_pixels(source: _Source, fd: int, offset: int, dtype: np.dtype) -> Steps:
    """Write all of ``source`` to ``fd`` at ``offset`` as C-ordered ``dtype``."""
    total = source.geometry.nbytes
    yield 0, total
    runs = source.byte_runs(dtype)
    if runs is not None and sum(n for _, _, n in runs) == total:
        done = 0
        for i, (path, src_offset, nbytes) in enumerate(runs):
            if i + 1 < len(runs):  # many small files: read the next one ahead
                _read_ahead(*runs[i + 1])
            for part in _kernel_copy(path, src_offset, fd, offset + done, nbytes):
                yield done + part, total
            done += nbytes
        return
    done = 0
    for key in _blocks(source.shape, dtype.itemsize):
        block = np.ascontiguousarray(source.block(key), dtype=dtype)
        _pwrite_all(fd, bytes_of(block), offset + done)
        done += block.nbytes
        yield done, total
    if done != total:  # pragma: no cover - a bug in _blocks
        raise AssertionError(f"wrote {done} of {total} bytes")


# --- copy ------------------------------------------------------------------
def iter_copy(image: Any) -> Steps:
    """Steps of :func:`copy`; returns the new :class:`DiskImage`."""
    source = _Source(image)
    geometry = source.geometry
    scratch = create_scratch(
        geometry, f"a copy of {source.name} ({format_bytes(geometry.nbytes)})"
    )
    ok = False
    try:
        try:
            yield from _write_pixels(
                source, scratch.fd, 0, geometry.dtype.newbyteorder("<")
            )
        except OSError as exc:
            full = _full_error(exc, scratch.path, geometry.nbytes)
            if full is None:
                raise
            raise full from exc
        result = map_scratch(scratch, geometry)
        if source.disk_image is not None:
            result.spacing = source.disk_image.spacing
            result.unit = source.disk_image.unit
            result.rgb = source.disk_image.rgb
        ok = True
        return result
    finally:
        if not ok:
            scratch.release()


def copy(image: Any, *, progress: ProgressCallback | None = None) -> DiskImage:
    """Copy an image into a new scratch disk image (IPSDK util.copyImg).

    The new file is created in the disk-image directory
    (:func:`get_disk_image_dir`) with the same geometry and pixels, stored
    little-endian in (t, c, z, y, x) order; it is deleted when the result is
    dropped.  Memory use is bounded whatever the image size; pixels already
    contiguous in a file are copied by the kernel at the speed of ``cp``.

    Parameters
    ----------
    image : DiskImage or array-like
        What to copy: a disk image or any numpy-compatible array of 1 to 5
        axes (right-aligned to (t, c, z, y, x)), numpy, dask or zarr.
    progress : callable, optional
        ``progress(done_bytes, total_bytes)`` after each block; raise from
        it to cancel.

    Raises
    ------
    OSError
        ENOSPC, before anything is written, when the disk-image directory
        lacks space (the message gives needed and free bytes), or on a write
        error.  The partial file is always removed.
    ValueError
        Unsupported pixel type or number of axes.
    """
    return run_steps(iter_copy(image), progress)


# --- save ------------------------------------------------------------------
def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _target(path: str | os.PathLike[str], source: _Source) -> Path:
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, f"cannot save to {str(target)!r}: it is a folder", str(target)
        )
    if not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot save to {str(target)!r}: folder {str(target.parent)!r} "
            "does not exist",
            str(target),
        )
    img = source.disk_image
    if img is not None and target.exists() and os.path.samefile(target, img.path):
        raise ValueError(
            f"cannot save {str(img.path)!r} onto itself: save to another name"
        )
    return target


def _atomic_write(target: Path, nbytes: int, write: Any) -> Steps:
    """Run ``write(fh)`` steps into a temporary file, then rename it.

    The temporary file sits beside the target (same file system, so the
    rename is atomic) and is removed on any failure or cancellation; an
    existing file at ``target`` is untouched until the final rename.  Where
    the system allows (Linux ``O_TMPFILE``) the file has no name until it is
    complete, so even a process killed with SIGKILL leaves nothing behind.
    """
    check_free_space(target.parent, nbytes, f"saving {target.name}")
    tmp: Path | None = None
    _sweep_partial(target)
    try:
        fd = _open_anonymous(target.parent)
        if fd is None:
            # A named file: locked while written, so that the next save to
            # the same target removes it if this process is killed.
            tmp = _temporary_name(target)
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
                    mode = 0o666 & ~_umask()
                os.fchmod(fh.fileno(), mode)
                if tmp is None:
                    tmp = _name_complete_file(fh.fileno(), target)
        except OSError as exc:
            full = _full_error(exc, target, nbytes)
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


def _temporary_name(target: Path) -> Path:
    token = secrets.token_hex(6)
    return target.with_name(f".{target.name}.ndi-{os.getpid()}-{token}.part")


def _sweep_partial(target: Path) -> None:
    """Remove temporary files of saves to ``target`` by killed processes."""
    pattern = re.compile(
        rf"^\.{re.escape(target.name)}\.ndi-(?P<pid>\d+)-[0-9a-f]{{12}}\.part$"
    )
    with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
        for entry in entries:
            match = pattern.match(entry.name)
            if match and int(match["pid"]) != os.getpid():
                remove_orphan(entry.path, int(match["pid"]))


def _name_complete_file(fd: int, target: Path) -> Path:
    """Link the unnamed file ``fd`` beside ``target``; return its name."""
    for attempt in range(3):
        tmp = _temporary_name(target)
        try:
            _name_file(fd, tmp)
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


def _name_file(fd: int, path: Path) -> None:
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


def _open_anonymous(folder: Path) -> int | None:
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
        _name_file(probe_fd, probe)
    except OSError:
        os.close(fd)
        return None
    finally:
        os.close(probe_fd)
    os.unlink(probe)
    return fd


def _full_error(exc: OSError, target: Path, nbytes: int) -> OSError | None:
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


def _reserve(fd: int, nbytes: int, target: Path) -> None:
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot reserve {format_bytes(nbytes)} to save {str(target)!r}: "
            f"{exc.strerror}; free some space or save elsewhere",
            str(target),
        ) from exc


def tiff_layout(geometry: Geometry) -> tuple[tuple[int, ...], dict[str, Any]]:
    """Axis order and tifffile arguments used to save ``geometry``.

    ImageJ hyperstacks (TZCYX, readable by Fiji) for the types ImageJ knows
    (uint8, uint16, float32), else tifffile's shaped TIFF with an axes
    string.  Axes of size 1 other than y and x are left out.
    """
    if geometry.dtype in _IMAGEJ_DTYPES:
        order = (0, 2, 1, 3, 4)  # T Z C Y X
        kwargs: dict[str, Any] = {"imagej": True}
    else:
        order = (0, 1, 2, 3, 4)
        kwargs = {"bigtiff": geometry.nbytes > 2**32 - 2**25}
    shape = geometry.shape
    kept = [a for a in order if shape[a] > 1 or a >= 3]
    axes = "".join("TCZYX"[a] for a in kept)
    kwargs["metadata"] = {"axes": axes}
    kwargs["photometric"] = "minisblack"  # never guess RGB from a size of 3
    kwargs["shape"] = tuple(shape[a] for a in kept)
    return order, kwargs


def iter_save_tiff(image: Any, path: str | os.PathLike[str]) -> Steps:
    """Steps of :func:`save_tiff`; returns the saved path."""
    geometry = Geometry.from_shape(*_shape_dtype(image))
    order, kwargs = tiff_layout(geometry)
    source = _Source(image, order)
    target = _target(path, source)
    img = source.disk_image
    if img is not None and (img.spacing != (1.0, 1.0, 1.0) or img.unit):
        z, y, x = img.spacing
        kwargs["resolution"] = (1.0 / x, 1.0 / y)
        # ImageJ and tifffile's shaped metadata both keep z spacing and unit
        kwargs["metadata"].update(spacing=z, unit=img.unit or "pixel")
    dtype = geometry.dtype.newbyteorder("<")

    def write(fh: Any) -> Steps:
        with warnings.catch_warnings():
            # ImageJ hyperstacks past 4 GiB keep one IFD and the image count
            # (ImageJ's own layout); tifffile warns, open_tiff reads them.
            warnings.filterwarnings("ignore", ".*truncating ImageJ file", UserWarning)
            result = tifffile.imwrite(
                fh, shape=kwargs.pop("shape"), dtype=dtype, returnoffset=True, **kwargs
            )
        if result is None:  # pragma: no cover - tifffile contract
            raise OSError(f"tifffile did not write contiguous data to {target}")
        offset = result[0]
        fh.flush()
        end = max(os.fstat(fh.fileno()).st_size, offset + geometry.nbytes)
        _reserve(fh.fileno(), end, target)
        return (yield from _write_pixels(source, fh.fileno(), offset, dtype))

    return (yield from _atomic_write(target, geometry.nbytes + (1 << 20), write))


def iter_save_raw(
    image: Any, path: str | os.PathLike[str], byte_order: str = "<"
) -> Steps:
    """Steps of :func:`save_raw`; returns the saved path."""
    from ._files import check_byte_order

    byte_order = check_byte_order(byte_order)
    source = _Source(image)
    target = _target(path, source)
    dtype = source.geometry.dtype.newbyteorder(byte_order)  # type: ignore[arg-type]
    nbytes = source.geometry.nbytes

    def write(fh: Any) -> Steps:
        _reserve(fh.fileno(), nbytes, target)
        return (yield from _write_pixels(source, fh.fileno(), 0, dtype))

    return (yield from _atomic_write(target, nbytes, write))


def _shape_dtype(image: Any) -> tuple[tuple[int, ...], Any]:
    if isinstance(image, DiskImage):
        return image.shape, image.dtype
    if not (hasattr(image, "shape") and hasattr(image, "dtype")):
        image = np.asarray(image)
    return tuple(image.shape), image.dtype


def iter_save(image: Any, path: str | os.PathLike[str], byte_order: str = "<") -> Steps:
    """Steps of saving ``image`` as TIFF or RAW, chosen by ``path``'s suffix.

    Raises ValueError (before any work) for another suffix.
    """
    from ._files import format_of

    if format_of(path) == "tiff":
        return iter_save_tiff(image, path)
    return iter_save_raw(image, path, byte_order)


def save_tiff(
    image: Any,
    path: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
) -> Path:
    """Save an image to an uncompressed TIFF, streaming with bounded memory.

    Types ImageJ knows (uint8, uint16, float32) are written as ImageJ
    hyperstacks, others as tifffile "shaped" TIFFs (BigTIFF past 4 GiB);
    both record the axes, and the physical pixel size when known, and reopen
    with :func:`open_tiff` and ``tifffile`` to the same pixels and axes.
    The file is written under a temporary name beside ``path`` and renamed
    when complete: a failed or cancelled save leaves no partial file and any
    previous file at ``path`` unchanged.

    Raises
    ------
    OSError
        Not enough space (checked first, with the numbers), or a write error.
    FileNotFoundError
        The target folder does not exist.
    ValueError
        ``path`` is the file the image is read from.
    """
    return run_steps(iter_save_tiff(image, path), progress)


def save_raw(
    image: Any,
    path: str | os.PathLike[str],
    byte_order: str = "<",
    *,
    progress: ProgressCallback | None = None,
) -> Path:
    """Save the pixels to a RAW file: no header, (t, c, z, y, x), x fastest.

    Name the file after its geometry (``Geometry.filename``) so that
    :func:`open_raw` can reopen it by name.  Atomic and streaming as
    :func:`save_tiff`.
    """
    return run_steps(iter_save_raw(image, path, byte_order), progress)
