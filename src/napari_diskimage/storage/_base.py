"""The contract every storage kind fulfils, and what they share.

A :class:`~napari_diskimage.DiskImage` is the surface everything above
uses (geometry, checks, copy and save, pickling, the display pyramid); its
pixels live in a :class:`Storage`:

========================  =============================================
``storage.mapped``        one uncompressed file, memory-mapped (RAW,
                          contiguous TIFF, scratch files); writable
``storage.lazy_tiff``     one TIFF decoded a strip or tile at a time
                          (compressed, tiled, scattered strips)
``storage.sequence``      a folder of 2D TIFF slices, one plane each
========================  =============================================

A fourth kind (a Zarr store, HDF5) is one new module implementing this
class and its opener (returning :class:`Opened`), plus one entry in
``napari_diskimage._open.KINDS``: :meth:`Storage.read_region` and
:meth:`Storage.read_box` for every read, ``array`` for array-like access,
:meth:`Storage.state` / :meth:`Storage.from_state` for pickling (a worker
reopens the file lazily), :meth:`Storage.read_cost` for the display's level
choice, and the capabilities :meth:`Storage.file_layout` and
:meth:`Storage.byte_runs` when the pixels lie in files uncompressed (the
kernel copies them).  Storage kinds never build a ``DiskImage``.
"""

from __future__ import annotations

import abc
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from .._errors import closed_error
from .._index import normalize_key

if TYPE_CHECKING:
    from .._meta import ImageMeta

__all__ = ["FileLayout", "Opened", "PlaneView", "Storage", "check_present"]


def check_present(path: str | Path) -> None:
    """FileNotFoundError, saying what to do, unless ``path`` exists here.

    For :meth:`Storage.from_state`: a ``stat``, no file descriptor.  Every
    process that works on a disk image must see its file at the same path.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot open disk image {str(path)!r} here (pid {os.getpid()}): no "
            "such file. Every process that works on a disk image must see its "
            "file at the same path: put the disk-image directory on a file "
            "system shared by all workers (set_disk_image_dir)",
            str(path),
        )


@dataclass(frozen=True)
class FileLayout:
    """The pixels are one uncompressed run in one file.

    ``offset`` is the byte offset of pixel (0, 0, 0, 0, 0); ``dtype`` the
    pixel type as stored (the file's byte order); ``strides`` the bytes per
    step of t, c, z, y, x (non-negative).
    """

    path: Path
    offset: int
    dtype: np.dtype
    strides: tuple[int, int, int, int, int]

    def offset_of(self, t: int, c: int, z: int, y: int, x: int) -> int:
        """File offset of pixel (t, c, z, y, x)."""
        st = self.strides
        return self.offset + t * st[0] + c * st[1] + z * st[2] + y * st[3] + x * st[4]


class Storage(abc.ABC):
    """How the pixels of one disk image are kept and read.

    ``shape`` is (t, c, z, y, x); ``dtype`` the pixel type in native byte
    order; ``file_dtype`` the type as stored (its byte order is the
    file's).  ``bytes_read`` counts bytes read from the file(s).
    """

    #: True when the pixels are one memory-mapped run of a file.
    is_mapped: ClassVar[bool] = False

    path: Path
    shape: tuple[int, int, int, int, int]
    file_dtype: np.dtype
    #: Bytes read from the file(s) so far (an attribute or a property).
    bytes_read: int

    @property
    def dtype(self) -> np.dtype:
        return self.file_dtype.newbyteorder("=")

    @property
    def files(self) -> list[Path]:
        """The files holding the pixels."""
        return [self.path]

    @property
    def writable(self) -> bool:
        return False

    @property
    @abc.abstractmethod
    def closed(self) -> bool: ...

    @property
    @abc.abstractmethod
    def array(self) -> Any:
        """An array-like indexed (t, c, z, y, x); slicing reads what is sliced."""

    @abc.abstractmethod
    def describe(self) -> str:
        """How the pixels are stored, e.g. ``"compressed (LZW) and tiled"``."""

    def summary(self) -> str:
        """A few words for ``repr``: how the pixels are stored and read."""
        return self.describe()

    @abc.abstractmethod
    def read_region(
        self, t: int, c: int, z: int,
        y0: int, ny: int, sy: int, x0: int, nx: int, sx: int,
    ) -> np.ndarray:  # fmt: skip
        """Rows ``y0 + j*sy`` (j < ny), columns ``x0 + i*sx`` (i < nx) of a
        plane, in native byte order.  Unchecked: indices are in range."""

    def read_box(self, ranges: Sequence[range]) -> np.ndarray:
        """The pixels of 5 ranges (t, c, z, y, x; positive steps), as an array
        of their lengths in native byte order.

        The default reads one :meth:`read_region` per plane; kinds with a
        faster way (a mapped file: ``preadv`` of whole row blocks) override
        it.  Unchecked: the ranges are inside the image.
        """
        rt, rc, rz, ry, rx = ranges
        out = np.empty([len(r) for r in ranges], dtype=self.dtype)
        if out.size == 0:
            return out
        for i, t in enumerate(rt):
            for j, c in enumerate(rc):
                for k, z in enumerate(rz):
                    out[i, j, k] = self.read_region(
                        t, c, z, ry.start, len(ry), ry.step,
                        rx.start, len(rx), rx.step,
                    )  # fmt: skip
        return out

    def read_cost(self, ny: int, sy: int, nx: int, sx: int) -> int:
        """Bytes :meth:`read_region` touches for ``ny`` rows (step ``sy``) and
        ``nx`` columns (step ``sx``) of a plane.

        The display pyramid chooses its levels and samples with this only.
        The default counts the span of each row read (first to last pixel);
        kinds that decode whole chunk rows, or read rows close together as
        one block, override it.
        """
        itemsize = self.dtype.itemsize
        return max(1, ny) * ((nx - 1) * sx * itemsize + itemsize)

    def file_layout(self) -> FileLayout | None:
        """Where the pixels lie, if they are one uncompressed run of one file
        (the engine writes into it and crop copies from it in the kernel);
        None otherwise."""
        return None

    def advise_random(self) -> None:  # noqa: B027 - nothing to do by default
        """Read pages of :attr:`array` without read-ahead (views of parts of
        long rows); a no-op for kinds without a memory map."""

    def prefetch_rows(  # noqa: B027 - nothing to do by default
        self, t: int, c: int, z: int, y0: int, y1: int,
        x0: int = 0, x1: int | None = None,
    ) -> None:  # fmt: skip
        """Ask the file system to start reading rows ``y0 .. y1-1`` (columns
        ``x0 .. x1-1``, all by default) of plane (t, c, z); a no-op for kinds
        that do not read through the page cache."""

    @abc.abstractmethod
    def state(self) -> tuple:
        """What :meth:`from_state` needs to reopen these pixels in another
        process: picklable plain values (paths as ``str``)."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls, state: tuple) -> Storage:
        """Reopen pickled pixels (:meth:`state`), read-only.

        Never deletes anything (not even a scratch file), and opens the
        file(s) lazily, at the first read: a dask scheduler that unpickles
        a task never holds a file descriptor.
        """

    def write(self, t: int, c: int, z: int, y: int, x: int, value: np.generic) -> None:
        """Write one (checked) value; read-only kinds raise PermissionError."""
        raise self.write_refused()

    def write_refused(self) -> PermissionError:
        """The error for a write to pixels this kind cannot write."""
        return PermissionError(
            errno.EACCES,
            f"{str(self.path)!r} is stored {self.describe()}: its pixels cannot "
            "be written in place. Copy it first (napari_diskimage.copy(image)) "
            "to get a writable disk image, then save that copy",
            str(self.path),
        )

    def flush(self) -> None:  # noqa: B027 - read-only kinds have nothing to do
        """Make written pixels durable (nothing to do for read-only kinds)."""

    def byte_runs(
        self, order: tuple[int, ...], dtype: np.dtype
    ) -> list[tuple[Path, int, int]] | None:
        """The pixels in ``order`` (axes of (t, c, z, y, x)) as ``dtype``, as
        runs ``(file, offset, nbytes)`` the kernel can copy; None if they are
        not stored so (compressed, other byte order, other layout)."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release the file(s).  Idempotent."""


class Opened(NamedTuple):
    """What a storage kind's opener returns: the pixels, the metadata and the
    coarser resolution levels stored in the file (finest excluded,
    read-only; empty for most files)."""

    storage: Storage
    meta: ImageMeta
    levels: tuple[Storage, ...] = ()


class PlaneView:
    """An array-like (t, c, z, y, x) over :meth:`Storage.read_region`.

    Integers and slices (positive steps) per axis; a read is one
    :meth:`Storage.read_box`.  For storage kinds with no array of their
    own (a folder of slices).
    """

    ndim = 5

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return self._storage.shape

    @property
    def dtype(self) -> np.dtype:
        return self._storage.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<PlaneView {self.shape} {self.dtype} of {str(self._storage.path)!r}>"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._storage.closed:
            raise closed_error(self._storage.path)
        ranges, drop = normalize_key(key, self.shape)
        return self._storage.read_box(ranges)[drop]
