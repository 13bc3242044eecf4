"""An OME-Zarr store written by a processing run (``out="result.ome.zarr"``).

A run writes its result's finest level block by block, from threads or
cluster workers, straight into the chunks of a store created under a
temporary name beside the target (:class:`ZarrOutput`).  Blocks that cover
whole chunks (the engine aligns its blocks with the chunks) are written
with no lock and no shared mapping: each worker opens the store by path
and writes its own chunks.  A block that covers part of a chunk (an
operation whose passes cannot be aligned, e.g. along whole lines) locks
the chunks it touches (``flock`` on a file per chunk in the store, which
works across processes on one machine and on file systems that support
POSIX locks) so that two read-modify-writes of one chunk never interleave.

When the finest level is complete its coarser levels are built from it,
read once in slabs (:class:`~.downsample.Pyramid`, as
:func:`~.ome_zarr.save_ome_zarr` builds them), and the store is renamed to
its name.  A failure or a cancel removes the temporary store: nothing is
left at the target, and a store already there is replaced only by a
complete one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._diskimage import DiskImage
from .._geometry import Geometry
from .._steps import Steps
from ..storage.zarr_array import ZarrStorage
from .atomic import full_error, temporary_name
from .downsample import Pyramid, pyramid_factors, reduce_block
from .ngff import default_chunks, ngff_unit
from .ome_zarr import _check_target, _replace, _sweep_partial, create_levels

__all__ = ["ChunkWriter", "ZarrOutput", "chunk_writer", "stale_level"]

#: Folder (inside the temporary store) of the lock files of partial chunks.
LOCKS = ".ndi-locks"
#: Folder (inside the temporary store) marking levels blocks left stale.
STALE = ".ndi-stale"


class ZarrOutput:
    """The OME-Zarr store a run writes its result into.

    Made when the run is made (the target is checked before any work);
    :meth:`create` makes the temporary store with every level, empty;
    :meth:`finish` builds the coarser levels and renames it; :meth:`discard`
    removes it.

    Parameters
    ----------
    path : str or os.PathLike
        The store to write, ending in ``.zarr`` (conventionally
        ``.ome.zarr``).  A Zarr store there is replaced when the result is
        complete; anything else there is refused.
    method : {"mean", "mode", "gaussian", "nearest"}
        How the coarser levels are computed; "mode" for labels, which are
        also marked as such (``image-label`` metadata on the image).
    inputs : the run's inputs
        Disk images read by the run: ``path`` may not be one of them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        method: str = "mean",
        version: str = "0.5",
        compressor: str | None = "zstd",
        inputs: Iterable[Any] = (),
    ) -> None:
        target = Path(path).expanduser().absolute()
        if not target.name.endswith(".zarr"):
            raise ValueError(
                f"out={str(path)!r}: a result is written as OME-Zarr to a path "
                "ending in '.zarr' (e.g. 'result.ome.zarr'); save other formats "
                "from the returned image"
            )
        self.target = _check_target(target, [])
        for image in inputs:
            if isinstance(image, DiskImage):
                source = Path(image.path).resolve()
                resolved = self.target.resolve()
                if source == resolved or resolved in source.parents:
                    raise ValueError(
                        f"out={str(path)!r} is the store the run reads "
                        f"({str(image.path)!r}): write the result to another name"
                    )
        self.method = method
        self.version = version
        self.compressor = compressor
        self.tmp: Path | None = None
        self.image: DiskImage | None = None
        self._chunks: tuple[int, int, int] | None = None
        self._pyramid: Pyramid | None = None
        self._shape: tuple[int, ...] = ()

    def chunks(self, shape: Sequence[int]) -> tuple[int, int, int, int, int]:
        """The chunks (t, c, z, y, x) of the result's finest level for a
        run over an image of ``shape``: fixed by the first call, so that the
        engine's blocks and the store agree (256 in y and x, up to 64
        planes in z, about 32 MiB a chunk row of 16-bit pixels)."""
        if self._chunks is None:
            zyx = (int(shape[2]), int(shape[3]), int(shape[4]))
            self._chunks = default_chunks(zyx, 2)
        return (1, 1, *self._chunks)

    def create(
        self,
        geometry: Geometry,
        spacing: tuple[float, float, float],
        unit: str | None,
    ) -> Path:
        """Create the temporary store for a result of ``geometry`` (every
        level, empty); returns its path."""
        import zarr

        shape = geometry.shape
        chunks = self.chunks(shape)[2:]
        zyx = (shape[2], shape[3], shape[4])
        _sweep_partial(self.target)
        tmp = temporary_name(self.target)
        self.tmp = tmp
        try:
            root = zarr.open_group(
                str(tmp), mode="w-", zarr_format=3 if self.version == "0.5" else 2
            )
            self._pyramid = create_levels(
                root,
                name=self.target.name,
                shape=shape,
                dtype=geometry.dtype,
                chunks=(
                    min(chunks[0], zyx[0]),
                    min(chunks[1], zyx[1]),
                    min(chunks[2], zyx[2]),
                ),
                factors=pyramid_factors(zyx, spacing),
                spacing=spacing,
                unit=ngff_unit(unit),
                method=self.method,
                version=self.version,
                compressor=self.compressor,
                # labels: napari-ome-zarr and ome-zarr-py show them as labels
                image_label={} if self.method == "mode" else None,
                shrink_chunks=True,  # aligned blocks write whole level chunks
            )
        except BaseException:
            self.discard()
            raise
        self._shape = shape
        return tmp

    def finish(self, done: int, total: int, *, close_image: bool = True) -> Steps:
        """Steps of completing the coarser levels, then the rename; returns
        the target.  The run's blocks wrote each level they could
        (:meth:`ChunkWriter.write`); the levels coarser than the finest
        level some block left stale (:func:`stale_level`) are built from
        it here, read once in slabs of chunk rows (:class:`Pyramid`, as
        :func:`~.ome_zarr.save_ome_zarr` builds them): none for a run whose
        blocks are aligned with the chunks.  Progress goes from ``done`` to
        ``total`` over that reading.  ``close_image=False`` (a viewer shows
        :attr:`image` while it is written): it is not closed but follows the
        rename, so that nothing draws a closed image; its owner closes it."""
        assert self.tmp is not None and self._pyramid is not None
        first = stale_level(self.tmp)
        try:
            if first is not None:
                yield from self._rebuild(first, done, total)
            yield total, total
            shutil.rmtree(self.tmp / LOCKS, ignore_errors=True)
            shutil.rmtree(self.tmp / STALE, ignore_errors=True)
            if self.image is not None and close_image:
                self.image.close()
            _replace(self.tmp, self.target)
            if self.image is not None and not close_image:
                self.image.storage.moved(self.target)  # type: ignore[attr-defined]
                self.image._path = self.target  # its path in the viewer
        except OSError as exc:
            full = full_error(exc, self.target, total)
            if full is None:
                raise
            raise full from exc
        self.tmp = None
        return self.target

    def _rebuild(self, first: int, done: int, total: int) -> Steps:
        """Build the levels coarser than ``first`` from it."""
        assert self._pyramid is not None
        levels = self._pyramid.levels[first:]
        pyramid = Pyramid(
            [lv.array for lv in levels],
            [lv.factors for lv in levels[1:] if lv.factors is not None],
            [lv.chunk_z for lv in levels],
            self._pyramid.method,
            self._pyramid.prefix_axes,
        )
        finest = pyramid.levels[0].array
        pyramid.levels[0].array = None  # written by the run already
        t_n, c_n = self._shape[0], self._shape[1]
        z_n = int(finest.shape[-3])
        cz = pyramid.levels[0].chunk_z
        step = (total - done) / max(1, t_n * c_n * -(-z_n // cz))
        at = float(done)
        prefix = (t_n > 1, c_n > 1)
        for t in range(t_n):
            for c in range(c_n):
                tc = (*((t,) if prefix[0] else ()), *((c,) if prefix[1] else ()))
                pyramid.start(tc)
                for z0 in range(0, z_n, cz):
                    key = (*tc, slice(z0, min(z0 + cz, z_n)))
                    pyramid.feed(0, np.asarray(finest[key]))
                    at += step
                    yield min(total, int(at)), total
                pyramid.finish()

    def discard(self) -> None:
        """Remove the temporary store (a failed or cancelled run)."""
        if self.image is not None:
            self.image.close()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


# --- writing blocks -------------------------------------------------------------
@dataclass(frozen=True)
class _Array:
    """One level of the store as a block writes it, over (t, c, z, y, x)."""

    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    factors: tuple[int, ...]  # from the finer level (1s for the finest)

    def aligned(self, location: Sequence[tuple[int, int]]) -> bool:
        """Whether ``location`` covers whole chunks only."""
        return all(
            a % c == 0 and (b % c == 0 or b == n)
            for (a, b), c, n in zip(location, self.chunks, self.shape, strict=True)
        )


class ChunkWriter:
    """Writes 5D blocks (t, c, z, y, x) into one array of a Zarr store by
    path, and their reductions into its coarser levels: picklable, so a
    cluster worker opens the store and writes its own chunks.  See the
    module for the locks of partial chunks and :meth:`write` for the
    levels."""

    def __init__(
        self,
        store: Path,
        name: str,
        axes: str,
        shape: Sequence[int],
        chunks: Sequence[int],
        *,
        pyramid: Sequence[tuple[str, Sequence[int], Sequence[int]]] = (),
        method: str = "mean",
    ) -> None:
        self.store = Path(store)
        self.name = name
        self.axes = axes
        self.shape = tuple(int(n) for n in shape)  # (t, c, z, y, x)

        def full(values: Sequence[int]) -> tuple[int, ...]:
            return tuple(int(values[axes.index(a)]) if a in axes else 1
                         for a in "tczyx")  # fmt: skip

        #: Chunk shape over (t, c, z, y, x) (1 on the axes the array lacks).
        self.chunks = full(chunks)
        self.levels = [_Array(name, self.shape, self.chunks, (1,) * 5)]
        for lname, lshape, lchunks in pyramid:
            finer = self.levels[-1].shape
            shape5 = full(lshape)
            factors = tuple(
                max(1, round(f / c)) for f, c in zip(finer, shape5, strict=True)
            )
            self.levels.append(_Array(lname, shape5, full(lchunks), factors))
        self.method = method

    def aligned(self, location: Sequence[tuple[int, int]]) -> bool:
        """Whether ``location`` covers whole chunks only."""
        return self.levels[0].aligned(location)

    def _array(self, name: str) -> Any:
        import zarr

        try:
            return zarr.open_array(
                str(self.store / name) if name else str(self.store),
                mode="r+",
                config={"write_empty_chunks": True},
            )
        except (FileNotFoundError, zarr.errors.ArrayNotFoundError) as exc:
            raise FileNotFoundError(
                errno.ENOENT,
                f"cannot write into Zarr store {str(self.store)!r} from process "
                f"{os.getpid()}: it is gone. It was removed (the run was "
                "cancelled), or this worker does not see the folder: put it on "
                "a file system shared by all workers",
                str(self.store),
            ) from exc

    def write(self, location: Sequence[tuple[int, int]], block: np.ndarray) -> bool:
        """Write ``block`` at ``location`` ((start, stop) per axis), then its
        reduction into each coarser level while the block's edges fall on
        the level's block edges (a start that the level's factors divide, an
        end too or at the image's end: the reduction is then exactly that
        level's pixels).  At the first level where they do not, the levels
        from there on are marked stale (a file in ``.ndi-stale``) and
        :meth:`ZarrOutput.finish` rebuilds them from the last complete one.
        Returns whether the block covered whole chunks of the finest level
        (written with no lock)."""
        whole = self._write_level(self.levels[0], location, block)
        data: Any = block.reshape([b - a for a, b in location])
        loc = list(location)
        for index, level in enumerate(self.levels[1:], start=1):
            finer = self.levels[index - 1].shape
            if self.method == "gaussian" or not all(
                a % f == 0 and (b % f == 0 or b == n)
                for (a, b), f, n in zip(loc, level.factors, finer, strict=True)
            ):
                self._stale(index - 1)
                break
            fz, fy, fx = level.factors[2:]
            data = np.stack([
                np.stack([reduce_block(data[t, c], (fz, fy, fx), self.method)
                          for c in range(data.shape[1])])
                for t in range(data.shape[0])
            ])  # fmt: skip
            loc = [
                (a // f, -(-b // f))
                for (a, b), f in zip(loc, level.factors, strict=True)
            ]
            self._write_level(level, loc, data)
        if not any(
            (self.store / m).exists() for m in ("zarr.json", ".zgroup", ".zarray")
        ):
            # removed while this block was written (a cancel that did not
            # wait for it): take away the chunk files this write recreated
            shutil.rmtree(self.store, ignore_errors=True)
        return whole

    def _write_level(
        self, level: _Array, location: Sequence[tuple[int, int]], block: np.ndarray
    ) -> bool:
        arr = self._array(level.name)
        key = tuple(
            slice(int(a), int(b))
            for (a, b), axis in zip(location, "tczyx", strict=True)
            if axis in self.axes
        )
        data = block.reshape(
            [b - a for (a, b), axis in zip(location, "tczyx", strict=True)
             if axis in self.axes]
        )  # fmt: skip
        whole = level.aligned(location)
        if whole:
            arr[key] = data
        else:
            with self._locked(level, location):
                arr[key] = data
        return whole

    def _stale(self, level: int) -> None:
        """Mark the levels coarser than ``level`` as needing a rebuild."""
        folder = self.store / STALE
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        (folder / str(level)).touch()

    @contextlib.contextmanager
    def _locked(self, level: _Array, location: Sequence[tuple[int, int]]) -> Any:
        grids = [
            range(a // c, -(-b // c))
            for (a, b), c in zip(location, level.chunks, strict=True)
        ]
        folder = self.store / LOCKS
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        fds: list[int] = []
        try:
            for index in itertools.product(
                *grids
            ):  # sorted: no deadlock between blocks
                fd = os.open(
                    folder / ".".join((level.name or "-", *map(str, index))),
                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                    0o600,
                )
                fds.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            for fd in fds:
                os.close(fd)  # releases its lock


def stale_level(store: Path) -> int | None:
    """The finest level whose coarser levels some block could not write
    (see :meth:`ChunkWriter.write`), or None when every level is written."""
    try:
        names = os.listdir(store / STALE)
    except FileNotFoundError:
        return None
    levels = [int(n) for n in names if n.isdigit()]
    return min(levels) if levels else None


def chunk_writer(image: DiskImage) -> ChunkWriter | None:
    """A :class:`ChunkWriter` of ``image``'s finest array if it is a
    writable Zarr store, else None."""
    storage = image.storage
    if not (isinstance(storage, ZarrStorage) and storage.writable):
        return None
    handle = storage.handle
    return ChunkWriter(
        storage.path,
        storage.name,
        storage.axes,
        image.shape,
        storage.zarr_array.chunks,
        pyramid=[
            (name, handle.array(name).shape, handle.array(name).chunks)
            for name in storage.pyramid
        ],
        method=storage.method,
    )
