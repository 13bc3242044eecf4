"""The view cache: a chunked, averaged multiscale copy of a disk image.

On a row-major file a YZ or XZ plane touches every row of the file; a 3D
overview strided in y and x loses what is smaller than the stride.  The
view cache is the image saved once as OME-Zarr
(:func:`~napari_diskimage.io.ome_zarr.iter_save_ome_zarr`): near-cubic
chunks (:data:`CHUNKS`, whatever the plane size), compressed, every level
the **mean** of the blocks of the level above.  Any plane of it reads a
few chunks.

* **Where**: in the disk-image directory, as ``ndi-view-<key>.ome.zarr``;
  the key is a hash of what names the file (its resolved path, device and
  inode; the series shown), so the same file finds its cache in every
  session.
* **Valid**: the store holds :data:`IDENTITY_FILE` (JSON), written after
  the store is complete, with the file's path, size, ``mtime_ns`` and inode
  (each slice's for a folder of slices), the series and the shape, and the
  store's layout (:func:`_layout`: chunk shape, means, format version).  A
  store whose identity file is missing (a killed build) or differs from the
  file now (the file changed) or from the layout built now (a cache of an
  older version, e.g. with 2 x 64 x 64 chunks for large planes, slow to read
  as YZ planes) is never returned; it is rebuilt when asked.
* **Atomic**: the store is written under a ``.part`` name and renamed when
  complete; a killed build leaves only the ``.part`` folder, which is
  never opened and is removed by the next build or
  :func:`clear_view_caches`.
* **Our own writes**: :meth:`DiskImage.write_pixel` on an image whose
  cache exists, and a labels edit in napari (the layer's ``paint``
  event), invalidate it (the identity file is removed): the next
  :func:`view_cache` rebuilds it.  Invalidating is one ``unlink`` per
  write while a cache exists and is correct whatever the file system's
  timestamp resolution.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import weakref
from pathlib import Path
from typing import Any

from .._diskimage import DiskImage, register_operations
from .._scratch import (
    _check_writable,
    _pid_running,
    check_free_space,
    get_disk_image_dir,
)
from .._steps import ProgressCallback, Steps, run_steps
from ..io.atomic import partial_match, temporary_name
from ..io.downsample import pyramid_factors

__all__ = [
    "CHUNKS",
    "IDENTITY_FILE",
    "SLAB_BUDGET",
    "clear_view_caches",
    "invalidate_view_cache",
    "iter_view_cache",
    "view_cache",
    "view_cache_path",
    "view_cache_size",
]

#: Chunk shape (z, y, x) of every level, whatever the plane size:
#: near-cubic, so that XY, XZ and YZ planes each read about as many bytes.
#: When 64 planes exceed :data:`SLAB_BUDGET` the cache is built in blocks of
#: whole chunks (:mod:`napari_diskimage.io.ome_zarr_blocks`), so memory
#: follows the block, not the plane.  Shallower chunks (2 x 64 x 64 at
#: 16 GiB, as an earlier build chose) made one YZ plane decode ~170 MB from
#: 10,000 chunk files: first view 179 s, x-steps p95 15.7 s.
CHUNKS = (64, 64, 64)

#: Version of the store's layout, in its identity: raise it when what a
#: build writes changes in a way the chunk shape does not show.
LAYOUT_VERSION = 2

#: The build holds one z-chunk row of planes (about 4/3 of it with the
#: coarser levels' rows): when 64 planes exceed this, it holds a block of
#: whole chunks of about this size instead (chunks stay 64^3).
SLAB_BUDGET = 128 << 20

#: The file inside a complete, valid store that names its source.
IDENTITY_FILE = "ndi-view-cache.json"

#: Bytes a compressed chunk may take beyond its raw bytes (Blosc's header),
#: and the store's metadata files.
_CHUNK_OVERHEAD = 64
_METADATA_BYTES = 64 << 10
#: An edge chunk is stored whole, padded with zeros.  Padding in z or y
#: (whole planes, whole rows of the chunk) compresses well: lz4 keeps about
#: 1/200 of it (6 planes of noise in a 64^3 chunk: 51,602 bytes for 49,152
#: of pixels), counted as 1/100.  Padding in x (a short run of zeros in
#: every row) barely does (22 columns of noise: 335 kB for 180 kB of
#: pixels), counted whole.
_PADDING_KEPT = 100

_PREFIX = "ndi-view-"
_SUFFIX = ".ome.zarr"
_CACHE = re.compile(r"^ndi-view-[0-9a-f]{24}\.ome\.zarr$")


def _part_pid(folder: Path, name: str) -> int:
    """The process that made ``name``, a partial store of a view cache
    (:func:`~napari_diskimage.io.atomic.temporary_name`), or 0."""
    if not name.startswith(f".{_PREFIX}"):
        return 0
    target = name[1:].split(".ndi-", 1)[0]
    if not _CACHE.match(target):
        return 0
    return partial_match(folder / target, name, ("part", "old"))


# --- identity ----------------------------------------------------------------
def _source_path(image: DiskImage) -> Path:
    return Path(image.path).resolve()


def _key(image: DiskImage) -> str:
    """What names the file (not what changes when it is written)."""
    path = _source_path(image)
    st = os.stat(path)
    text = json.dumps(
        [str(path), st.st_dev, st.st_ino, list(image.shown_series)],
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


#: The codec of the chunks: Blosc lz4 with bit shuffle.  On the 2 GiB
#: porous sample (noisy uint16) a 64^3 chunk encodes at ~1.8 GB/s and
#: decodes at ~2.4 GB/s on one core, against 0.23-0.34 and 0.6 GB/s for
#: zstd level 1, for chunks 7% larger (store 1468 MiB against 1336 MiB).
CODEC = "lz4-bitshuffle"


def _layout() -> dict[str, Any]:
    """How this version builds a cache: a store built otherwise is not
    valid (rebuilt when asked)."""
    return {
        "chunks": list(CHUNKS),
        "downsample": "mean",
        "codec": CODEC,
        "version": LAYOUT_VERSION,
    }


def _identity(image: DiskImage) -> dict[str, Any]:
    """What the cache was built from (every file's path, size, mtime, inode)
    and how (:func:`_layout`)."""
    files = []
    for f in image.files:
        st = os.stat(f)
        files.append(
            {
                "path": str(Path(f).resolve()),
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "inode": st.st_ino,
                "device": st.st_dev,
            }
        )
    return {
        "source": str(_source_path(image)),
        "files": files,
        "series": list(image.shown_series),
        "shape": list(image.shape),
        "dtype": image.dtype.str,
        "layout": _layout(),
    }


def view_cache_path(image: DiskImage) -> Path:
    """The store that holds (or will hold) the view cache of ``image``."""
    return get_disk_image_dir() / f"{_PREFIX}{_key(image)}{_SUFFIX}"


def _read_identity(store: Path) -> dict[str, Any] | None:
    try:
        with open(store / IDENTITY_FILE, encoding="utf-8") as fh:
            value = json.load(fh)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _valid(image: DiskImage, store: Path) -> bool:
    stored = _read_identity(store)
    return stored is not None and stored == _identity(image)


def _write_identity(store: Path, identity: dict[str, Any]) -> None:
    """Write the identity file atomically (the store is valid from now)."""
    tmp = temporary_name(store / IDENTITY_FILE, "tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(identity, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, store / IDENTITY_FILE)


#: The key of each open image written to (its file's identity does not
#: change while it is open): one unlink per write, not a hash.
_written_keys: weakref.WeakKeyDictionary[DiskImage, str] = weakref.WeakKeyDictionary()


def invalidate_view_cache(image: DiskImage) -> None:
    """After our own write (a pixel, a labels edit in napari): the view cache
    of ``image``, if any, is no longer valid (rebuilt when next asked)."""
    key = _written_keys.get(image)
    if key is None:
        try:
            key = _written_keys[image] = _key(image)
        except OSError:
            return
    store = get_disk_image_dir() / f"{_PREFIX}{key}{_SUFFIX}"
    with contextlib.suppress(OSError):
        os.unlink(store / IDENTITY_FILE)


register_operations(pixel_written=invalidate_view_cache)


# --- size --------------------------------------------------------------------
def view_cache_size(image: DiskImage) -> int:
    """Bytes the view cache of ``image`` takes at most (uncompressed).

    The finest level plus its mean levels (about 1/8 or 1/4 of the level
    above each); compression usually makes the store smaller.  This is the
    free space checked before a build.
    """
    geo = image.geometry
    zyx = (geo.size_z, geo.size_y, geo.size_x)
    factors = pyramid_factors(zyx, image.spacing, None)
    planes = geo.size_t * geo.size_c
    total = 0
    for f in [(1, 1, 1), *factors]:
        zyx = (-(-zyx[0] // f[0]), -(-zyx[1] // f[1]), -(-zyx[2] // f[2]))
        chunks = 1
        for n, c in zip(zyx, CHUNKS, strict=True):
            chunks *= -(-n // c)
        voxels = zyx[0] * zyx[1] * zyx[2]
        padded_x = zyx[0] * zyx[1] * -(-zyx[2] // CHUNKS[2]) * CHUNKS[2]
        whole = chunks * CHUNKS[0] * CHUNKS[1] * CHUNKS[2]
        padding = padded_x - voxels + (whole - padded_x) // _PADDING_KEPT
        # Each chunk: at most its raw bytes, what is kept of its padding
        # and the codec's header.
        total += planes * (
            (voxels + padding) * geo.dtype.itemsize + chunks * _CHUNK_OVERHEAD
        )
    return total + _METADATA_BYTES


# --- build -------------------------------------------------------------------
def _check_image(image: Any) -> DiskImage:
    if not isinstance(image, DiskImage):
        raise TypeError(
            f"a view cache is made of a disk image, not {type(image).__name__}: "
            "open the file with napari_diskimage.open_any first"
        )
    return image


def iter_view_cache(image: DiskImage) -> Steps:
    """Steps ``(done_bytes, total_bytes)`` of :func:`view_cache` with
    ``build=True``; returns the cache opened (a :class:`DiskImage`).

    No step when a valid cache exists.  Closing the generator cancels the
    build and removes the partial store.
    """
    from .._open import open_zarr
    from ..io.ome_zarr import iter_save_ome_zarr

    image = _check_image(image)
    store = view_cache_path(image)
    if _valid(image, store):
        return open_zarr(store)
    folder = store.parent
    _check_writable(folder)
    _sweep(folder)
    needed = view_cache_size(image)
    check_free_space(folder, needed, f"the view cache of {image.path.name}")
    identity = _identity(image)
    writes = image.write_count
    if store.exists():  # stale: never valid again, replaced when complete
        with contextlib.suppress(FileNotFoundError):
            os.unlink(store / IDENTITY_FILE)
    layout = identity["layout"]
    try:
        yield from iter_save_ome_zarr(
            image, store, chunks=tuple(layout["chunks"]),
            downsample=layout["downsample"], compressor=layout["codec"],
            slab_bytes=SLAB_BUDGET,
        )  # fmt: skip
    except Exception:
        # One chunk write failed (a full disk): zarr's other writes of the
        # same call are still running and may create files after the
        # writer removed its partial store.  Wait for them, remove it again.
        _drain_zarr_writes()
        _remove_own_parts(store)
        raise
    if image.write_count != writes or _identity(image) != identity:
        raise RuntimeError(
            f"{str(image.path)!r} changed while its view cache was built; "
            "the cache was not kept: build it again"
        )
    _write_identity(store, identity)
    return open_zarr(store)


def _drain_zarr_writes(timeout: float = 30.0) -> None:
    """Wait for zarr's tasks still running (``asyncio.gather`` lets the
    others run on when one fails)."""
    import asyncio

    from zarr.core.sync import sync

    async def others() -> None:
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    with contextlib.suppress(Exception):
        sync(others())


def _remove_own_parts(store: Path) -> None:
    with contextlib.suppress(OSError), os.scandir(store.parent) as entries:
        for entry in entries:
            pid = partial_match(store, entry.name, ("part", "old"))
            if pid == os.getpid() and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)


def view_cache(
    image: DiskImage,
    *,
    build: bool = True,
    progress: ProgressCallback | None = None,
) -> DiskImage | None:
    """The view cache of ``image``, built first when ``build`` and missing.

    Parameters
    ----------
    image : DiskImage
        An image opened from a file (TIFF, RAW, a folder of slices, ...).
    build : bool
        Build the cache when none is valid (reads the file once, bounded
        memory); when False, return None instead.
    progress : callable, optional
        ``progress(done_bytes, total_bytes)`` during a build; raise from it
        to cancel (the partial store is removed).

    Returns
    -------
    DiskImage or None
        The cache opened read-only (OME-Zarr; its levels are the means of
        blocks), or None when there is none and ``build`` is False.

    Raises
    ------
    OSError
        ENOSPC with the numbers when the disk-image directory lacks the
        space (:func:`view_cache_size`); PermissionError when it cannot be
        written; a disk that fills part-way leaves no store.
    """
    from .._open import open_zarr

    image = _check_image(image)
    store = view_cache_path(image)
    if _valid(image, store):
        return open_zarr(store)
    if not build:
        return None
    result: DiskImage = run_steps(iter_view_cache(image), progress)
    return result


# --- clear -------------------------------------------------------------------
def _size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _sweep(folder: Path) -> None:
    """Remove partial stores of builds whose process is gone."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            pid = _part_pid(folder, entry.name)
            if (
                pid
                and pid != os.getpid()
                and entry.is_dir(follow_symlinks=False)
                and not _pid_running(pid)
            ):
                shutil.rmtree(entry.path, ignore_errors=True)


def clear_view_caches(folder: str | os.PathLike[str] | None = None) -> int:
    """Remove every view cache (and partial build of a killed process) from
    the disk-image directory; returns the bytes freed.

    Only folders named as view caches are removed: nothing else in the
    folder, and no symlink, is touched.
    """
    where = get_disk_image_dir() if folder is None else Path(folder)
    freed = 0
    try:
        entries = list(os.scandir(where))
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise type(exc)(
            exc.errno or errno.EIO,
            f"cannot list {str(where)!r} to clear view caches: {exc.strerror}",
            str(where),
        ) from exc
    for entry in entries:
        pid = _part_pid(where, entry.name)
        if not (_CACHE.match(entry.name) or pid):
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        if pid and (pid == os.getpid() or _pid_running(pid)):
            continue  # a build running now
        size = _size(entry.path)
        shutil.rmtree(entry.path)
        freed += size
    return freed
