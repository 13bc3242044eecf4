"""Save a disk image as OME-Zarr (NGFF): chunked, compressed, multiscale.

:func:`save_ome_zarr` writes an image (and optionally label images) as an
OME-Zarr store that BigDataViewer, Neuroglancer, napari-ome-zarr, Fiji's
N5 tools, ome-zarr-py and ngff-zarr read:

* NGFF 0.5 (Zarr v3) by default, NGFF 0.4 (Zarr v2) on request;
* axes ``t`` and ``c`` when larger than 1, then ``z``, ``y``, ``x``, with the
  image's spacing as each level's scale and its unit (when NGFF knows it);
* a pyramid down to about 256 pixels: each level is the **mean** of 2 x 2
  blocks of the level above, and of 2 x 2 x 2 blocks while z stays no
  coarser than y and x (physical spacing), so thin structures fade instead
  of flickering; ``downsample="gaussian"`` smooths each plane in y and x
  first (sigma 2/3 pixel, as ``skimage.transform.pyramid_reduce``),
  ``"nearest"`` keeps the first voxel of each block; label images always
  take the block's **mode** (ties go to the smallest label);
* integer means are rounded half up; a block at an odd edge is the mean of
  the voxels it has (level sizes are rounded up).

Out of core: the finest level is read once, in slabs of whole chunk rows in
z, and each slab is reduced into the coarser levels as it streams; no
level is built by reading the input again.  Memory holds one slab and one
chunk row in z of each coarser level: about ``4/3 x`` a slab (at most
:data:`SLAB_BYTES`).  When one z-chunk of planes is larger, levels are
built in blocks of whole chunks instead (:mod:`.ome_zarr_blocks`).

Atomic: the store is written into a temporary folder beside ``path`` and
renamed when complete; a failure or a cancel removes it.  An existing
Zarr store at ``path`` is replaced only when the new one is complete; any
other file or folder there is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._diskimage import DiskImage
from .._scratch import _pid_running
from .._steps import ProgressCallback, Steps, run_steps
from ..storage.zarr_array import EVERY_CHUNK
from .atomic import full_error, partial_match, temporary_name
from .downsample import (
    DOWNSAMPLE,
    SLAB_BYTES,
    Pyramid,
    pyramid_factors,
    reduce_block,
)
from .ngff import (
    COMPRESSORS,
    check_chunks,
    compressors,
    is_zarr_store,
    multiscale,
    ngff_axes,
    ngff_unit,
    write_attrs,
)
from .ome_zarr_blocks import feed_in_blocks, needs_blocks
from .stream import Source

__all__ = [
    "COMPRESSORS",
    "DOWNSAMPLE",
    "SLAB_BYTES",
    "is_zarr_store",
    "iter_save_ome_zarr",
    "pyramid_factors",
    "reduce_block",
    "save_ome_zarr",
]


# --- the store --------------------------------------------------------------
@dataclass
class _Item:
    """One image of the store: the finest level's source and where it goes."""

    source: Source
    group: Any
    name: str
    method: str
    keep_c: bool
    image_label: dict[str, Any] | None = None


def _sweep_partial(target: Path) -> None:
    """Remove temporary folders of saves to ``target`` by killed processes."""
    with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
        for entry in entries:
            pid = partial_match(target, entry.name, ("part", "old"))
            if (
                pid
                and pid != os.getpid()
                and entry.is_dir(follow_symlinks=False)
                and not _pid_running(pid)
            ):
                shutil.rmtree(entry.path, ignore_errors=True)


def _check_target(path: str | os.PathLike[str], sources: list[Source]) -> Path:
    target = Path(path).expanduser().absolute()
    if not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot save to {str(target)!r}: folder {str(target.parent)!r} "
            "does not exist",
            str(target),
        )
    if target.exists() or target.is_symlink():
        if not is_zarr_store(target) or target.is_symlink():
            raise FileExistsError(
                errno.EEXIST,
                f"cannot save to {str(target)!r}: it exists and is not a Zarr "
                "store, so it is not replaced; choose another name or remove it",
                str(target),
            )
        resolved = target.resolve()
        for source in sources:
            img = source.disk_image
            if img is not None and (
                Path(img.path).resolve() == resolved
                or resolved in Path(img.path).resolve().parents
            ):
                raise ValueError(
                    f"cannot save {str(img.path)!r} onto itself: save to another name"
                )
    return target


def _tc_keys(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(t, c) for t in range(shape[0]) for c in range(shape[1])]


#: Smallest chunk (z, y, x) of a coarser level with ``shrink_chunks``.
MIN_CHUNK = (8, 64, 64)


def create_levels(
    group: Any,
    *,
    name: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    chunks: tuple[int, int, int],
    factors: list[tuple[int, int, int]],
    spacing: tuple[float, float, float],
    unit: str | None,
    method: str,
    version: str,
    compressor: str | None,
    image_label: dict[str, Any] | None = None,
    shrink_chunks: bool = False,
) -> Pyramid:
    """Create the level arrays ``0``, ``1``, ... of one multiscale image in
    ``group`` (empty; every chunk is written, even one of zeros) and its
    ``multiscales`` metadata; return the :class:`Pyramid` that fills them.

    ``shape`` is (t, c, z, y, x); t and c become axes when larger than 1.
    Every level has ``chunks``, or with ``shrink_chunks`` the finest level's
    chunks reduced by the level's factors (down to :data:`MIN_CHUNK`):
    then a block of whole chunks of the finest level reduces to whole
    chunks of the coarser ones, which a processing run's blocks write
    each without a lock (``out=``).
    """
    zarr_format = 3 if version == "0.5" else 2
    codecs = compressors(compressor, zarr_format)
    keep_t, keep_c = shape[0] > 1, shape[1] > 1
    shape_zyx = (shape[2], shape[3], shape[4])
    level_shapes: list[tuple[int, int, int]] = [shape_zyx]
    for f in factors:
        z, y, x = level_shapes[-1]
        level_shapes.append((-(-z // f[0]), -(-y // f[1]), -(-x // f[2])))
    prefix = ([shape[0]] if keep_t else []) + ([shape[1]] if keep_c else [])
    axes = ngff_axes(keep_t, keep_c, unit)
    arrays, chunk_z, scales = [], [], []
    scale = list(spacing)
    step = [1, 1, 1]
    for i, zyx in enumerate(level_shapes):
        if i:
            scale = [s * f for s, f in zip(scale, factors[i - 1], strict=True)]
            step = [s * f for s, f in zip(step, factors[i - 1], strict=True)]
        want: tuple[int, ...] = chunks
        if shrink_chunks:
            want = tuple(
                min(c, max(m, c // s))
                for c, s, m in zip(chunks, step, MIN_CHUNK, strict=True)
            )
        lchunk = tuple(min(c, n) for c, n in zip(want, zyx, strict=True))
        kwargs: dict[str, Any] = {
            "name": str(i),
            "shape": (*prefix, *zyx),
            "chunks": (*([1] * len(prefix)), *lchunk),
            "dtype": dtype,
            "compressors": codecs,
            "fill_value": 0,
            "config": {"write_empty_chunks": True},
        }
        if zarr_format == 3:
            kwargs["dimension_names"] = [a["name"] for a in axes]
        else:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        arrays.append(group.create_array(**kwargs))
        chunk_z.append(lchunk[0])
        scales.append([*([1.0] * len(prefix)), *(float(s) for s in scale)])
    attrs: dict[str, Any] = {
        "multiscales": [multiscale(name, axes, scales, method, version)]
    }
    if image_label is not None:
        label_meta = dict(image_label)
        if version == "0.4":
            label_meta = {"version": "0.4", **label_meta}
        attrs["image-label"] = label_meta
    write_attrs(group, attrs, version)
    group.attrs.update(EVERY_CHUNK)  # a missing chunk is damage (see open_zarr)
    return Pyramid(arrays, factors, chunk_z, method, len(prefix))


def iter_save_ome_zarr(
    image: Any,
    path: str | os.PathLike[str],
    *,
    labels: Mapping[str, Any] | None = None,
    chunks: Any = None,
    levels: int | None = None,
    downsample: str = "mean",
    compressor: str | None = "zstd",
    version: str = "0.5",
    slab_bytes: int = SLAB_BYTES,
) -> Steps:
    """Steps ``(done_bytes, total_bytes)`` of :func:`save_ome_zarr`; returns
    the saved path.  Closing the generator cancels and removes the partial
    store.

    ``slab_bytes``: when one chunk row in z of the finest level's planes is
    larger, the pyramid is built in blocks of whole chunks of at most about
    this many bytes (:mod:`.ome_zarr_blocks`; not for ``"gaussian"``, which
    smooths whole planes): memory follows the block, not the plane.
    """
    import zarr

    if version not in ("0.4", "0.5"):
        raise ValueError(f"unknown NGFF version {version!r}: use '0.5' or '0.4'")
    if downsample not in DOWNSAMPLE:
        raise ValueError(
            f"unknown downsample {downsample!r}: use one of {', '.join(DOWNSAMPLE)}"
        )
    if levels is not None and (
        isinstance(levels, bool)
        or not isinstance(levels, (int, np.integer))
        or levels < 1
    ):
        raise ValueError(f"levels must be a positive integer or None, got {levels!r}")
    zarr_format: Literal[2, 3] = 3 if version == "0.5" else 2
    compressors(compressor, zarr_format)  # a bad name: before any work
    source = Source(image)
    shape = source.geometry.shape
    dtype = source.geometry.dtype
    if dtype.byteorder == ">":  # pragma: no cover - Geometry is native
        dtype = dtype.newbyteorder("=")
    label_sources: dict[str, Source] = {}
    for name, label_image in (labels or {}).items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)) or name in (".", ".."):
            raise ValueError(
                f"label name {name!r}: use letters, digits, '_', '-' and '.'"
            )
        ls = Source(label_image)
        lshape = ls.geometry.shape
        if ls.geometry.dtype.kind not in "iub":
            raise ValueError(
                f"labels {name!r} are {ls.geometry.dtype}: label images hold integers"
            )
        if lshape[1] != 1 or (lshape[0], *lshape[2:]) != (shape[0], *shape[2:]):
            raise ValueError(
                f"labels {name!r} have shape {lshape} (t, c, z, y, x) but the "
                f"image has {shape}: labels need the image's t, z, y, x and one c"
            )
        label_sources[str(name)] = ls
    target = _check_target(path, [source, *label_sources.values()])
    disk = source.disk_image
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    if isinstance(disk, DiskImage):
        spacing = (disk.spacing[0], disk.spacing[1], disk.spacing[2])
    unit = ngff_unit(disk.unit) if isinstance(disk, DiskImage) else None
    shape_zyx = (shape[2], shape[3], shape[4])
    factors = pyramid_factors(shape_zyx, spacing, levels)
    keep_c = shape[1] > 1
    check_chunks(chunks, shape_zyx, dtype.itemsize)  # bad chunks: before work

    _sweep_partial(target)
    tmp = temporary_name(target)
    total = source.geometry.nbytes + sum(
        s.geometry.nbytes for s in label_sources.values()
    )
    ok = False
    try:
        root = zarr.open_group(str(tmp), mode="w-", zarr_format=zarr_format)
        items = [_Item(source, root, target.name, downsample, keep_c)]
        if label_sources:
            label_root = root.create_group("labels")
            write_attrs(label_root, {"labels": list(label_sources)}, version)
            for name, ls in label_sources.items():
                items.append(
                    _Item(
                        ls,
                        label_root.create_group(name),
                        name,
                        "mode",
                        False,
                        {"source": {"image": "../../"}},
                    )
                )
        pyramids = []
        for item in items:
            pyramid = create_levels(
                item.group,
                name=item.name,
                shape=shape if item.keep_c else (shape[0], 1, *shape[2:]),
                dtype=item.source.geometry.dtype,
                chunks=check_chunks(
                    chunks, shape_zyx, item.source.geometry.dtype.itemsize
                ),
                factors=factors,
                spacing=spacing,
                unit=unit,
                method=item.method,
                version=version,
                compressor=compressor,
                image_label=item.image_label,
            )
            pyramids.append((item, pyramid))

        done = 0
        yield done, total
        for item, pyramid in pyramids:
            src = item.source
            cz = pyramid.levels[0].chunk_z
            itemsize = src.geometry.dtype.itemsize
            for t, c in _tc_keys(src.geometry.shape):
                pyramid.start((t, c) if item.keep_c else (t,))
                if item.method != "gaussian" and needs_blocks(
                    pyramid, 0, itemsize, slab_bytes
                ):
                    read = _block_reader(src, t, c)
                    for nbytes in feed_in_blocks(pyramid, read, itemsize, slab_bytes):
                        done += nbytes
                        yield done, total
                    continue
                for z0 in range(0, shape_zyx[0], cz):
                    z1 = min(z0 + cz, shape_zyx[0])
                    slab = np.ascontiguousarray(
                        src.block((t, c, slice(z0, z1))), dtype=src.geometry.dtype
                    )
                    pyramid.feed(0, slab)
                    done += slab.nbytes
                    yield done, total
                pyramid.finish()
        _replace(tmp, target)
        ok = True
        return target
    except OSError as exc:
        full = full_error(exc, target, total)
        if full is None:
            raise
        raise full from exc
    finally:
        if not ok:
            shutil.rmtree(tmp, ignore_errors=True)


def _block_reader(src: Source, t: int, c: int) -> Any:
    def read(z: slice, y: slice, x: slice) -> np.ndarray:
        block = src.block((t, c, z, y, x))
        return np.ascontiguousarray(block, dtype=src.geometry.dtype)

    return read


def _replace(tmp: Path, target: Path) -> None:
    """Move the complete store ``tmp`` to ``target`` (replacing a Zarr store
    there only now that the new one is complete)."""
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
        return
    old = temporary_name(target, "old")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_ome_zarr(
    image: Any,
    path: str | os.PathLike[str],
    *,
    labels: Mapping[str, Any] | None = None,
    chunks: Any = None,
    levels: int | None = None,
    downsample: str = "mean",
    compressor: str | None = "zstd",
    version: str = "0.5",
    progress: ProgressCallback | None = None,
) -> Path:
    """Save an image (and label images) as a multiscale OME-Zarr store.

    Parameters
    ----------
    image : DiskImage or array-like
        What to save: a disk image (its spacing and unit become the axes'
        scale and unit) or an array of 1 to 5 axes (t, c, z, y, x).
    path : str or os.PathLike
        The store to create, conventionally ending in ``.ome.zarr``.  A
        Zarr store already there is replaced once the new one is complete;
        anything else there is refused (FileExistsError).
    labels : mapping of str to DiskImage or array-like, optional
        Label images written under ``labels/<name>`` with ``image-label``
        metadata: integers, same t, z, y, x as ``image`` and one c.  Their
        levels are the mode of each block.
    chunks : int or (z, y, x), optional
        Chunk shape of every level (t and c chunks are 1).  Default: 256 in
        y and x and up to 64 planes in z, as many as keep a chunk row under
        32 MiB.  Memory use grows with ``chunks[0]`` x a plane.
    levels : int, optional
        Number of resolution levels including the finest; default down to
        about 256 pixels in y and x.
    downsample : {"mean", "gaussian", "nearest", "mode"}
        How a level is computed from the one above (see the module doc);
        ``"mode"`` for an image of labels saved as the image itself.
    compressor : {"zstd", "lz4", "lz4-bitshuffle", "gzip", None}
        Blosc zstd or lz4 with byte shuffle (level 1), Blosc lz4 with bit
        shuffle (the fastest to write and decode; the view cache's), gzip
        level 1, or raw.
    version : {"0.5", "0.4"}
        NGFF 0.5 (Zarr v3) or 0.4 (Zarr v2).
    progress : callable, optional
        ``progress(done_bytes, total_bytes)`` after each slab; raise from it
        to cancel (the partial store is removed).

    Returns
    -------
    Path
        The absolute path of the store.

    Raises
    ------
    FileNotFoundError
        The folder of ``path`` does not exist.
    FileExistsError
        ``path`` exists and is not a Zarr store.
    ValueError
        A bad option, labels that do not fit the image, or ``path`` is the
        store ``image`` is read from.
    OSError
        A write error (disk full: the message names the store); nothing is
        left behind.

    Examples
    --------
    >>> import napari_diskimage as ndi
    >>> ndi.save_ome_zarr(np.zeros((4, 512, 512), np.uint8), "x.ome.zarr")
    ... # doctest: +SKIP
    """
    return run_steps(
        iter_save_ome_zarr(
            image, path, labels=labels, chunks=chunks, levels=levels,
            downsample=downsample, compressor=compressor, version=version,
        ),
        progress,
    )  # fmt: skip
