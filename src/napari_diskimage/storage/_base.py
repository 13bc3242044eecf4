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
class: :meth:`read_region` for the display and every read of the core,
``array`` for array-like access, :meth:`reference` for pickling by
reference (cluster workers reopen the file), :meth:`byte_runs` if the
pixels lie in files uncompressed (the kernel copies them).
"""

from __future__ import annotations

import abc
import errno
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._errors import closed_error

if TYPE_CHECKING:
    from .._diskimage import DiskImage

__all__ = ["FileLayout", "PlaneView", "Storage"]


@dataclass(frozen=True)
class FileLayout:
    """The pixels are one uncompressed run in one file."""

    path: Path
    #: Byte offset of pixel (0, 0, 0, 0, 0).
    offset: int
    #: As stored (the file's byte order).
    dtype: np.dtype
    #: Bytes per step of t, c, z, y, x.
    strides: tuple[int, int, int, int, int]


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
        """5 ranges (t, c, z, y, x), positive steps; an array of their
        lengths, native byte order.  Default: one :meth:`read_region` per
        plane."""
        rt, rc, rz, ry, rx = ranges
        out = np.empty([len(r) for r in ranges], dtype=self.dtype)
        if out.size:
            for i, t in enumerate(rt):
                for j, c in enumerate(rc):
                    for k, z in enumerate(rz):
                        out[i, j, k] = self.read_region(
                            t, c, z, ry.start, len(ry), ry.step,
                            rx.start, len(rx), rx.step,
                        )  # fmt: skip
        return out

    def file_layout(self) -> FileLayout | None:
        """Where the pixels lie when they are one uncompressed run of one
        file (blocks can be written there, rows copied by the kernel);
        None otherwise."""
        return None

    @abc.abstractmethod
    def reference(self, image: DiskImage) -> tuple[Callable[..., Any], tuple]:
        """``(function, args)`` that reopen ``image`` in another process,
        read-only and never deleting anything (``DiskImage.__reduce__``)."""

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


class PlaneView:
    """An array-like (t, c, z, y, x) over :meth:`Storage.read_region`.

    Integers and slices (positive steps) per axis; a read is one
    ``read_region`` per plane.  For storage kinds with no array of their
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
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            pos = key.index(Ellipsis)
            key = key[:pos] + (slice(None),) * (6 - len(key)) + key[pos + 1 :]
        if len(key) > 5:
            raise IndexError(f"too many indices for a 5D image: {len(key)}")
        key = key + (slice(None),) * (5 - len(key))
        ranges: list[range] = []
        drop: list[Any] = []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, slice):
                r = range(*k.indices(n))
                if r.step < 0:
                    raise IndexError("negative steps are not supported here")
                ranges.append(r)
                drop.append(slice(None))
            elif isinstance(k, (numbers.Integral, np.integer)) and not isinstance(
                k, (bool, np.bool_)
            ):
                i = int(k) + (n if int(k) < 0 else 0)
                if not 0 <= i < n:
                    raise IndexError(f"index {int(k)} is out of bounds for size {n}")
                ranges.append(range(i, i + 1))
                drop.append(0)
            else:
                raise TypeError(f"unsupported index {k!r}: integers and slices")
        rt, rc, rz, ry, rx = ranges
        out = np.empty([len(r) for r in ranges], dtype=self.dtype)
        if out.size:
            for i, t in enumerate(rt):
                for j, c in enumerate(rc):
                    for k, z in enumerate(rz):
                        out[i, j, k] = self._storage.read_region(
                            t, c, z, ry.start, len(ry), ry.step,
                            rx.start, len(rx), rx.step,
                        )  # fmt: skip
        return out[tuple(drop)]
