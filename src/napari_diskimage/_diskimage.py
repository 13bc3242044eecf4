"""DiskImage: an image whose pixels stay in a file (the facade).

A disk image is a :class:`~napari_diskimage.storage.Storage` (the pixels)
with an :class:`~napari_diskimage._meta.ImageMeta` (spacing, unit, colour,
format): checks, geometry, pickling and the long operations live here, the
reading in the storage kinds, which never build a disk image.
"""

from __future__ import annotations

import dataclasses
import errno
import numbers
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import closed_error
from ._geometry import AXES, Geometry, check_value
from ._meta import ImageMeta
from ._operations import _OPERATIONS, LongOperations, register_operations
from ._scratch import ScratchFile, create_scratch
from .storage._base import Storage
from .storage.mapped import open_scratch

__all__ = ["DiskImage", "is_disk_image", "new_disk_image", "register_operations"]


def _check_index(value: Any, axis: str, size: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Integral, np.integer)
    ):
        raise TypeError(f"{axis} must be an integer, got {value!r}")
    value = int(value)
    if not 0 <= value < size:
        raise IndexError(
            f"{axis} = {value} is outside the image: size_{axis} is {size}, so "
            f"{axis} must be in 0..{size - 1}"
        )
    return value


class DiskImage(LongOperations):
    """An image whose pixels stay in a file (IPSDK disk image).

    Nothing is read when a disk image is opened; pixels are read when they
    are asked for.  Make one with :func:`open_tiff`, :func:`open_raw`,
    :func:`open_tiff_sequence`, :func:`copy` or :func:`new_disk_image`,
    not with this constructor.

    The pixels are kept by a storage kind (``storage``, see
    :mod:`napari_diskimage.storage`): one memory-mapped file
    (``is_mapped``: RAW, uncompressed TIFF, scratch files), one TIFF decoded
    a strip or tile at a time, or a folder of TIFF slices.  ``array`` is
    indexed ``(t, c, z, y, x)`` with x fastest (a numpy view on the mapped
    file, or an array-like that reads what is sliced); a disk image is also
    array-like (``shape``, ``dtype``, ``__getitem__``, ``__array__``), so
    ``np.asarray(image)`` loads it all into memory: use :meth:`load_plane`
    for parts.

    A *scratch* image (``is_scratch``) lives in a file this library created
    in the disk-image directory; the file is deleted on :meth:`close`, at
    the end of a ``with`` block, when the last reference is dropped, or at
    exit.  Save it with :meth:`save_tiff` or :meth:`save_raw` to keep it.
    Files the user opened are never deleted.

    Examples
    --------
    >>> import napari_diskimage as ndi
    >>> out = ndi.copy(np.zeros((4, 5), np.uint8))
    >>> ndi.is_disk_image(out), out.shape
    (True, (1, 1, 1, 4, 5))
    >>> out.write_pixel(255, 0, 0)
    >>> int(out.array[0, 0, 0, 0, 0])
    255
    >>> out = None    # the scratch file is deleted
    """

    def __init__(
        self,
        storage: Storage,
        meta: ImageMeta | None = None,
        *,
        mode: str = "r",
        levels: tuple[Storage, ...] = (),
    ) -> None:
        if mode == "r+" and not storage.writable:
            raise ValueError(f"{storage.describe()} pixels cannot be opened 'r+'")
        meta = ImageMeta() if meta is None else meta
        self._path = Path(storage.path)
        self._storage = storage
        self._geometry = Geometry.from_shape(storage.shape, storage.dtype)
        self._mode = mode
        self._meta = meta
        # each stored level is an image of its own, its spacing scaled
        _, _, z, y, x = storage.shape
        self._levels = tuple(
            DiskImage(
                level,
                dataclasses.replace(
                    meta.binned(
                        (z / level.shape[2], y / level.shape[3], x / level.shape[4])
                    ),
                    shown_series=(0,),
                ),
            )
            for level in levels
        )
        self._closed = False
        self._count_lock = threading.Lock()
        #: Pixels written with write_pixel: display caches compare it.
        self.write_count = 0

    # --- metadata --------------------------------------------------------
    @property
    def meta(self) -> ImageMeta:
        """Spacing, unit, colour and format (frozen: replace it whole)."""
        return self._meta

    @meta.setter
    def meta(self, value: ImageMeta) -> None:
        if not isinstance(value, ImageMeta):
            raise TypeError(f"meta must be an ImageMeta, got {value!r}")
        self._meta = value

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Physical size of a pixel along (z, y, x), in :attr:`unit`."""
        return self._meta.spacing

    @spacing.setter
    def spacing(self, value: tuple[float, ...]) -> None:
        # a new ImageMeta (it is frozen): copies made before keep theirs
        self._meta = dataclasses.replace(self._meta, spacing=tuple(value))  # type: ignore[arg-type]

    @property
    def unit(self) -> str | None:
        """The unit of :attr:`spacing` (e.g. ``"um"``), or None if unknown."""
        return self._meta.unit

    @unit.setter
    def unit(self, value: str | None) -> None:
        self._meta = dataclasses.replace(self._meta, unit=value)

    @property
    def rgb(self) -> bool:
        """True when the c axis holds the red, green, blue (and alpha)
        samples of an RGB(A) uint8/uint16 image: show it in colour."""
        return self._meta.rgb

    # --- storage ---------------------------------------------------------
    @property
    def storage(self) -> Storage:
        """The storage kind that keeps the pixels (``storage.describe()``
        says how they are stored)."""
        return self._storage

    @property
    def is_mapped(self) -> bool:
        """True when the pixels are memory-mapped (stored uncompressed and
        contiguous in one file)."""
        return self._storage.is_mapped

    @property
    def files(self) -> list[Path]:
        """The files holding the pixels (one, or the slices of a folder)."""
        return self._storage.files

    @property
    def bytes_read(self) -> int:
        """Bytes read from the file(s) so far."""
        return self._storage.bytes_read

    @bytes_read.setter
    def bytes_read(self, value: int) -> None:
        self._storage.bytes_read = value

    @property
    def display_levels(self) -> list[DiskImage]:
        """Resolution levels stored in the file, finest (this image) first.

        A pyramidal TIFF (SubIFDs, OME or SVS levels) lists each stored
        level as a read-only image with the same t, c, z and smaller y, x;
        show those instead of striding.  Otherwise ``[self]``.
        """
        return [self, *self._levels]

    @property
    def shown_series(self) -> tuple[int, ...]:
        """Indices of the image series of the file (TIFF) a viewer shows as
        layers: not pyramid levels or thumbnails."""
        return self._meta.shown_series

    # --- array-like surface --------------------------------------------
    @property
    def array(self) -> Any:
        """The pixels, indexed ``(t, c, z, y, x)``: a numpy view on the
        mapped file, or an array-like that reads what is sliced."""
        if self.closed:
            raise closed_error(self._path)
        return self._storage.array

    @property
    def geometry(self) -> Geometry:
        """Pixel type and sizes x, y, z, c, t."""
        return self._geometry

    @property
    def dtype(self) -> np.dtype:
        """Pixel type (native byte order; see ``byte_order`` for the file)."""
        return self._geometry.dtype

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(t, c, z, y, x)``."""
        return self._geometry.shape

    @property
    def axes(self) -> str:
        """``"TCZYX"``: the axis order of ``shape`` and ``array``."""
        return AXES

    ndim = 5

    @property
    def size(self) -> int:
        return self._geometry.size

    @property
    def nbytes(self) -> int:
        return self._geometry.nbytes

    @property
    def byte_order(self) -> str:
        """``"<"`` or ``">"``: the byte order of the pixels in the file."""
        bo = self._storage.file_dtype.byteorder
        if bo in "=|":
            return "<" if np.little_endian else ">"
        return bo

    @property
    def path(self) -> Path:
        """The file that holds the pixels (the folder, for a slice folder)."""
        return self._path

    @property
    def mode(self) -> str:
        """``"r"`` (read-only) or ``"r+"`` (pixels can be written)."""
        return self._mode

    @property
    def writable(self) -> bool:
        return self._mode == "r+"

    @property
    def is_scratch(self) -> bool:
        """True if the file was made by this library and will be deleted."""
        return getattr(self._storage, "scratch", None) is not None

    @property
    def kind(self) -> str:
        """``"tiff"``, ``"raw"`` or ``"tiff sequence"``: the format."""
        return self._meta.kind

    @property
    def closed(self) -> bool:
        return self._closed or self._storage.closed

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.array[key]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a disk image cannot be converted without a copy")
        return np.array(self.array, dtype=dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle as a reference to the file(s), never the pixels.

        The storage's state (:meth:`Storage.state`), the metadata and the
        stored levels' states are pickled.  An unpickled copy (e.g. in a
        ``dask.distributed`` worker) opens the same file again, read-only,
        at its first read (unpickling opens nothing), and never deletes it,
        even when the original is a scratch image.  The file must be visible
        at the same path where it is unpickled.
        """
        if self.closed:
            raise closed_error(self._path)
        levels = [(type(lv.storage), lv.storage.state()) for lv in self._levels]
        state = (type(self._storage), self._storage.state(), self._meta, levels)
        return (_reopen, state)

    def __repr__(self) -> str:
        state = "closed" if self.closed else self._mode
        what = "scratch" if self.is_scratch else self.kind
        how = "" if self.is_mapped else f" {self._storage.summary()},"
        return f"<DiskImage {self._geometry} {what}{how} {state} {str(self._path)!r}>"

    # --- lifecycle -----------------------------------------------------
    def close(self) -> None:
        """Release the file; a scratch file is deleted.  Idempotent.

        Numpy views taken from ``array`` before closing stay valid (the
        mapping lives as long as they do), but the disk image refuses
        further use.  Stored resolution levels are closed with it.
        """
        self._closed = True
        self._storage.close()
        for level in self._levels:
            level.close()

    def __enter__(self) -> DiskImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- pixels --------------------------------------------------------
    def write_pixel(
        self, value: Any, x: int, y: int, z: int = 0, c: int = 0, t: int = 0
    ) -> None:
        """Write one value into the file at (x, y, z, c, t) (IPSDK writePixel).

        The value is in the file when the call returns: other programs that
        read the file see it.  Call :meth:`flush` to make it durable.

        Raises
        ------
        IndexError
            A coordinate is outside the image (negative ones included); the
            message names the axis and its size.
        ValueError
            The value cannot be held exactly by the pixel type (300 or -1 in
            uint8, 1.5 or NaN in an integer type), or the image is closed.
        PermissionError
            The image is read-only: copy it first (:func:`copy`) or open it
            with ``mode="r+"``; or its pixels are compressed (copy it).
        """
        if self.closed:
            raise closed_error(self._path)
        coords = {"x": x, "y": y, "z": z, "c": c, "t": t}
        sizes = dict(zip("xyzct", self._geometry.sizes, strict=True))
        idx = {a: _check_index(v, a, sizes[a]) for a, v in coords.items()}
        if not self.writable and not self.is_mapped:
            raise self._storage.write_refused()
        if not self.writable:
            raise PermissionError(
                errno.EACCES,
                f"{str(self._path)!r} is open read-only: copy it first "
                "(napari_diskimage.copy) to get a writable disk image, or "
                "open it with mode='r+' to edit the file in place",
                str(self._path),
            )
        scalar = check_value(value, self.dtype)
        self._storage.write(idx["t"], idx["c"], idx["z"], idx["y"], idx["x"], scalar)
        with self._count_lock:  # no lost counts: display caches key on it
            self.write_count += 1
        written = _OPERATIONS.get("pixel_written")  # the view cache's hook
        if written is not None:
            written(self)

    def flush(self) -> None:
        """Make written pixels durable (fsync)."""
        if not self.closed:
            self._storage.flush()

    def load_plane(
        self,
        z: int = 0,
        c: int = 0,
        t: int = 0,
        size_x: int | None = None,
        size_y: int | None = None,
        offset_x: int = 0,
        offset_y: int = 0,
        stride_x: int = 1,
        stride_y: int = 1,
    ) -> np.ndarray:
        """Read a strided part of one plane into memory (IPSDK loadPlan).

        Returns an in-memory ``(size_y, size_x)`` array in native byte order
        whose element ``[j, i]`` is pixel ``(offset_x + i * stride_x,
        offset_y + j * stride_y)`` of plane (z, c, t).  ``None`` sizes take
        as many pixels as fit.  Only the rows needed are read.

        Raises
        ------
        IndexError
            z, c, t or an offset is outside the image, or the request reaches
            beyond its edge.
        ValueError
            A size or stride is smaller than 1.
        """
        X, Y = self._geometry.size_x, self._geometry.size_y
        z = _check_index(z, "z", self._geometry.size_z)
        c = _check_index(c, "c", self._geometry.size_c)
        t = _check_index(t, "t", self._geometry.size_t)
        ox = _check_index(offset_x, "offset_x", X)
        oy = _check_index(offset_y, "offset_y", Y)
        for name, value in (("stride_x", stride_x), ("stride_y", stride_y)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an integer, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        sx, sy = int(stride_x), int(stride_y)
        nx = -(-(X - ox) // sx) if size_x is None else size_x
        ny = -(-(Y - oy) // sy) if size_y is None else size_y
        for axis, n, o, s, full in (("x", nx, ox, sx, X), ("y", ny, oy, sy, Y)):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
                raise TypeError(f"size_{axis} must be an integer, got {n!r}")
            if n < 1:
                raise ValueError(f"size_{axis} must be at least 1, got {n}")
            last = o + (n - 1) * s
            if last >= full:
                raise IndexError(
                    f"the plane request reaches {axis} = {last} "
                    f"(offset_{axis} {o} + (size_{axis} {n} - 1) * stride_{axis} "
                    f"{s}) but the image has size_{axis} = {full}; use "
                    f"size_{axis} <= {(full - 1 - o) // s + 1}"
                )
        return self.read_region(t, c, z, oy, int(ny), sy, ox, int(nx), sx)

    def read_region(
        self, t: int, c: int, z: int,
        y0: int, ny: int, sy: int, x0: int, nx: int, sx: int,
    ) -> np.ndarray:  # fmt: skip
        """Read rows ``y0 + j*sy`` (j < ny), columns ``x0 + i*sx`` (i < nx).

        Unchecked fast path for :meth:`load_plane`, the display pyramid and
        processing: indices must already be inside the image.
        """
        if self.closed:
            raise closed_error(self._path)
        return self._storage.read_region(t, c, z, y0, ny, sy, x0, nx, sx)


def is_disk_image(obj: Any) -> bool:
    """True for a :class:`DiskImage`, False otherwise (IPSDK isDiskImage)."""
    return isinstance(obj, DiskImage)


def _reopen(
    kind: type[Storage],
    state: tuple,
    meta: ImageMeta,
    levels: list[tuple[type[Storage], tuple]],
) -> DiskImage:
    """A pickled disk image, reopened read-only and lazily (see
    :meth:`DiskImage.__reduce__`)."""
    stored = tuple(level_kind.from_state(s) for level_kind, s in levels)
    return DiskImage(kind.from_state(state), meta, levels=stored)


def new_disk_image(
    geometry: Geometry,
    *,
    what: str = "a new disk image",
    meta: ImageMeta | None = None,
) -> DiskImage:
    """A new scratch disk image of ``geometry``, all pixels zero.

    The file is created in the disk-image directory, its space reserved,
    and it is deleted when the image is dropped.  ``meta`` (default: none
    known, kind ``"raw"``) is its metadata.
    """
    scratch = create_scratch(geometry, what)
    try:
        return map_scratch(scratch, geometry, meta)
    except BaseException:
        scratch.release()
        raise


def map_scratch(
    scratch: ScratchFile, geometry: Geometry, meta: ImageMeta | None = None
) -> DiskImage:
    """A writable disk image over a freshly created scratch file."""
    opened = open_scratch(scratch, geometry)
    return DiskImage(opened.storage, meta or opened.meta, mode="r+")
