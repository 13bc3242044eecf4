"""A folder of 2D TIFF slices opened as one volume (Fiji's virtual stack).

Micro-CT reconstructions, FIB-SEM runs and light-sheet acquisitions often
arrive as one 2D TIFF per slice (``rec_00000.tif`` ... ``rec_04095.tif``).
:class:`SequenceStorage` stacks them along z (or t) without loading them:

- opening parses the **first** slice's header only; the others are
  ``stat``-ed (name, size), so a folder of 10,000 slices opens in
  milliseconds;
- each slice's header is parsed when the slice is first read, and again
  whenever its size or modification time changes: a slice of another shape
  or type raises an error naming that file, its shape and the expected
  one, while the other slices stay readable;
- slices stored uncompressed are read with ``pread`` from their own file
  (the rows asked for, as for one mapped file) and copied by the kernel
  (:meth:`byte_runs`); compressed or tiled slices are decoded a plane at a
  time, with a small cache of decoded planes.

Read-only: copy the image (:func:`napari_diskimage.copy`) into one
single-file scratch disk image to edit it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .._cache import LRUCache
from .._errors import CorruptFileError, closed_error
from .._meta import ImageMeta
from .._tiff_meta import WIDEN, compression_name, is_parse_error, spacing_of
from ._base import Opened, PlaneView, Storage, check_present
from ._pread import read_strided

__all__ = [
    "DECODED_CACHE_BYTES",
    "SequenceStorage",
    "SliceLayout",
    "open_sequence",
]

#: Slices of another file size whose headers are checked at open.
CHECK_AT_OPEN = 16

#: Decoded planes of compressed slices kept in memory, per image.
DECODED_CACHE_BYTES = 64 << 20


@dataclass(frozen=True)
class SliceLayout:
    """What a slice file must hold: ``pages`` planes of (y, x) pixels with
    ``samples`` colour samples (1 for grey), of ``dtype``."""

    pages: int
    y: int
    x: int
    samples: int
    dtype: np.dtype
    planar: bool  # samples stored as separate planes (SYX), not YXS

    def describe(self) -> str:
        shape = f"{self.x} x {self.y}"
        if self.samples > 1:
            shape += f" x {self.samples} samples"
        if self.pages > 1:
            shape += f", {self.pages} pages"
        return f"{shape} {self.dtype}"


@dataclass
class _Slice:
    """A slice file's parsed header, valid while its stat stamp holds."""

    stamp: tuple[int, int, int]
    offsets: list[int] | None  # byte offset of each page's pixels, if mapped
    storage: str  # "uncompressed" or how it is compressed


def layout_of(tif: tifffile.TiffFile, path: Path) -> tuple[SliceLayout, list[Any]]:
    """The layout of a slice file and its pages (first series)."""
    if not tif.series or not tif.series[0].pages:
        raise CorruptFileError(
            f"slice {str(path)!r} holds no image (a corrupt or truncated TIFF); "
            "replace it. The other slices can still be viewed",
            path,
        )
    series = tif.series[0]
    pages = list(series.pages)
    key = series.keyframe
    axes = key.axes.upper()
    if axes not in ("YX", "YXS", "SYX"):
        raise ValueError(
            f"{str(path)!r} holds pages laid out as {axes!r}: a slice must be "
            "a 2D image (YX), RGB (YXS) or planar colour (SYX)"
        )
    samples = 1 if axes == "YX" else key.shape[axes.index("S")]
    y, x = key.shape[axes.index("Y")], key.shape[axes.index("X")]
    dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
    layout = SliceLayout(len(pages), y, x, samples, dtype, axes == "SYX")
    return layout, pages


class SequenceStorage(Storage):
    """The slices ``files`` of ``folder`` as one (t, c, z, y, x) volume.

    ``axis`` is ``"z"`` (each file one or more z planes, stacked) or ``"t"``
    (each file one time point; its pages are z planes).  ``layout`` is the
    first file's (:func:`layout_of`); every other file must match it.
    """

    def __init__(
        self,
        folder: Path,
        files: Sequence[Path],
        layout: SliceLayout,
        *,
        axis: str = "z",
        first: _Slice | None = None,
    ) -> None:
        self.path = Path(folder)
        self._files = [Path(f) for f in files]
        self.layout = layout
        self.axis = axis
        n, k = len(self._files), layout.pages
        self.shape = (
            (1, layout.samples, n * k, layout.y, layout.x)
            if axis == "z"
            else (n, layout.samples, k, layout.y, layout.x)
        )
        self.file_dtype = WIDEN.get(
            layout.dtype.newbyteorder("="), layout.dtype
        ).newbyteorder(layout.dtype.byteorder)
        self._slices: dict[int, _Slice] = {} if first is None else {0: first}
        self._lock = threading.Lock()
        self._decoded = LRUCache(DECODED_CACHE_BYTES, keep_last=True)
        self.bytes_read = 0
        self.headers_parsed = 0 if first is None else 1
        self._closed = False

    # --- the contract ----------------------------------------------------
    @property
    def files(self) -> list[Path]:
        return list(self._files)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def array(self) -> PlaneView:
        if self._closed:
            raise closed_error(self.path)
        return PlaneView(self)

    def describe(self) -> str:
        first = self._slices.get(0)
        how = "" if first is None else f", {first.storage}"
        n, pages = len(self._files), self.layout.pages
        if n == 1:
            what = "one TIFF file" + (f" of {pages} pages" if pages > 1 else "")
        elif pages > 1:
            what = f"{n} TIFF files of {pages} pages each"
        else:
            what = f"{n} TIFF slices"
        return f"a folder of {what}{how}"

    def close(self) -> None:
        self._closed = True
        self._decoded.clear()

    def state(self) -> tuple:
        """(folder, slice files, axis, layout): each slice is opened when read."""
        lay = astuple(self.layout)
        return (
            str(self.path), [str(f) for f in self._files], self.axis,
            (*lay[:4], np.dtype(lay[4]).str, lay[5]),
        )  # fmt: skip

    @classmethod
    def from_state(cls, state: tuple) -> SequenceStorage:
        folder, files, axis, (pages, y, x, samples, dtype, planar) = state
        check_present(folder)  # a stat: nothing is opened before the first read
        layout = SliceLayout(pages, y, x, samples, np.dtype(dtype), planar)
        return cls(Path(folder), [Path(f) for f in files], layout, axis=axis)

    def byte_runs(
        self, order: tuple[int, ...], dtype: np.dtype
    ) -> list[tuple[Path, int, int]] | None:
        """One run per page of every slice, if every slice is uncompressed
        and grey (parses each slice's header: it is checked anyway)."""
        lay = self.layout
        if order != (0, 1, 2, 3, 4) or lay.samples != 1 or lay.dtype != dtype:
            return None
        plane = lay.y * lay.x * lay.dtype.itemsize
        runs = []
        for i, path in enumerate(self._files):
            info = self.slice_header(i)
            if info.offsets is None:
                return None
            runs += [(path, offset, plane) for offset in info.offsets]
        return runs

    # --- reading ---------------------------------------------------------
    def _where(self, t: int, z: int) -> tuple[int, int]:
        """(file index, page) of plane (t, z)."""
        if self.axis == "z":
            return divmod(z, self.layout.pages)
        return t, z

    def read_region(
        self, t: int, c: int, z: int,
        y0: int, ny: int, sy: int, x0: int, nx: int, sx: int,
    ) -> np.ndarray:  # fmt: skip
        if self._closed:
            raise closed_error(self.path)
        if ny == 0 or nx == 0:
            return np.empty((ny, nx), dtype=self.dtype)
        index, page = self._where(t, z)
        info = self.slice_header(index)
        path = self._files[index]
        lay = self.layout
        if info.offsets is None:
            plane = self._decoded_plane(index, page, info)
            ys = slice(y0, y0 + (ny - 1) * sy + 1, sy)
            xs = slice(x0, x0 + (nx - 1) * sx + 1, sx)
            return np.ascontiguousarray(plane[c, ys, xs], dtype=self.dtype)
        item = lay.dtype.itemsize
        if lay.planar:
            col, row = item, lay.x * item
            base = info.offsets[page] + c * lay.y * row
        else:
            col, row = lay.samples * item, lay.x * lay.samples * item
            base = info.offsets[page] + c * item
        first = base + y0 * row + x0 * col
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _slice_error(path, exc) from exc
        try:
            out, nbytes = read_strided(
                fd, path, first, ny, sy * row, nx, sx * col, lay.dtype
            )
        finally:
            os.close(fd)
        with self._lock:
            self.bytes_read += nbytes
        return out

    def slice_header(self, index: int) -> _Slice:
        """The parsed header of slice ``index``, checked against the layout;
        parsed again if the file changed since."""
        path = self._files[index]
        try:
            st = os.stat(path)
        except OSError as exc:
            raise _slice_error(path, exc) from exc
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            info = self._slices.get(index)
        if info is not None and info.stamp == stamp:
            return info
        info = self._parse(path, stamp)
        with self._lock:
            self._slices[index] = info
            self.headers_parsed += 1
        self._decoded.drop(lambda key: key[0] == index)  # type: ignore[index]
        return info

    def _parse(self, path: Path, stamp: tuple[int, int, int]) -> _Slice:
        try:
            with tifffile.TiffFile(path) as tif:
                self.bytes_read += min(stamp[1], 64 << 10)  # about a header
                layout, pages = layout_of(tif, path)
                return slice_info(path, stamp, layout, pages, self.layout, tif)
        except OSError as exc:
            raise _slice_error(path, exc) from exc
        except Exception as exc:  # tifffile's TiffFileError (a ValueError) too
            if not is_parse_error(exc):
                raise
            raise CorruptFileError(
                f"slice {str(path)!r} is not a valid TIFF file "
                f"({type(exc).__name__}: {exc}); replace it or remove it from "
                "the folder. The other slices can still be viewed",
                path,
            ) from exc

    def _decoded_plane(self, index: int, page: int, info: _Slice) -> np.ndarray:
        """Page ``page`` of a compressed slice as (samples, y, x), cached."""
        key = (index, page, info.stamp)
        plane = self._decoded.get(key)
        if plane is not None:
            return plane
        path = self._files[index]
        try:
            with tifffile.TiffFile(path) as tif:
                data = tif.series[0].pages[page].asarray()
        except OSError as exc:
            raise _slice_error(path, exc) from exc
        except Exception as exc:
            if not is_parse_error(exc):
                raise
            raise CorruptFileError(
                f"slice {str(path)!r} cannot be decoded ({type(exc).__name__}: "
                f"{exc}): it is truncated or corrupt; replace it. The other "
                "slices can still be viewed",
                path,
            ) from exc
        lay = self.layout
        data = np.asarray(data, dtype=self.dtype)
        if lay.samples == 1:
            data = data.reshape(1, lay.y, lay.x)
        elif not lay.planar:
            data = np.moveaxis(data.reshape(lay.y, lay.x, lay.samples), -1, 0)
        data.flags.writeable = False
        with self._lock:
            self.bytes_read += info.stamp[1] // max(1, lay.pages)
        self._decoded.put(key, data, data.nbytes)
        return data


def slice_info(
    path: Path,
    stamp: tuple[int, int, int],
    layout: SliceLayout,
    pages: list[Any],
    expected: SliceLayout | None,
    tif: tifffile.TiffFile,
) -> _Slice:
    """Check a parsed slice against ``expected``; where its pixels are."""
    if expected is not None and layout != expected:
        raise ValueError(
            f"slice {str(path)!r} is {layout.describe()}, but the first slice "
            f"of the folder is {expected.describe()}: every slice must have "
            "the same size and pixel type. Replace or remove that file"
        )
    offsets: list[int] | None = []
    plane = layout.y * layout.x * layout.samples * layout.dtype.itemsize
    for page in pages:
        contiguous = page.is_contiguous  # a bool, or (offset, bytes) before 2023
        if (
            not contiguous
            or not getattr(page, "is_memmappable", False)
            or np.dtype(layout.dtype).newbyteorder("=") in WIDEN
        ):
            offsets = None
            break
        start = int(
            contiguous[0] if isinstance(contiguous, tuple) else page.dataoffsets[0]
        )
        if start + plane > stamp[1]:
            raise CorruptFileError(
                f"slice {str(path)!r} is truncated: its pixels reach byte "
                f"{start + plane} but the file has {stamp[1]} bytes; replace "
                "it. The other slices can still be viewed",
                path,
            )
        assert offsets is not None
        offsets.append(start)
    storage = "uncompressed" if offsets is not None else compression_name(tif.series[0])
    if offsets is None:
        # a compressed slice: check its strips or tiles are all in the file
        for page in pages[:1] + pages[-1:]:
            ends = [
                o + n
                for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)
                if o and n
            ]
            if ends and max(ends) > stamp[1]:
                raise CorruptFileError(
                    f"slice {str(path)!r} is truncated: its pixels reach byte "
                    f"{max(ends)} but the file has {stamp[1]} bytes; replace it. "
                    "The other slices can still be viewed",
                    path,
                )
    return _Slice(stamp, offsets, storage)


def _slice_error(path: Path, exc: OSError) -> OSError:
    """An OSError naming the slice and what to do."""
    what = exc.strerror or str(exc)
    return type(exc)(
        exc.errno,
        f"cannot read slice {str(path)!r}: {what}. It was removed, renamed or "
        "made unreadable since the folder was opened; restore it (the other "
        "slices can still be viewed)",
        str(path),
    )


def open_sequence(folder: Path, files: Sequence[Path], *, axis: str = "z") -> Opened:
    """The slice ``files`` (in this order) of ``folder`` as one volume.

    Parses the first slice's header; ``stat``s the others (empty or
    unreadable slices fail here) and checks the headers of a few whose size
    differs from the first (another shape or type fails here; a truncated
    or corrupt slice only when read, so the others stay viewable).
    """
    files = list(files)
    sizes = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError as exc:
            raise type(exc)(
                exc.errno, f"cannot open slice {str(f)!r}: {exc.strerror}", str(f)
            ) from exc
        if st.st_size == 0:
            raise ValueError(
                f"slice {str(f)!r} is empty (0 bytes): replace or remove it"
            )
        if not os.access(f, os.R_OK):
            raise PermissionError(
                errno.EACCES,
                f"cannot read slice {str(f)!r}: permission denied; check its "
                "permissions",
                str(f),
            )
        sizes.append((st.st_mtime_ns, st.st_size, st.st_ino))
    first_path = files[0]
    try:
        with tifffile.TiffFile(first_path) as tif:
            layout, pages = layout_of(tif, first_path)
            first = slice_info(first_path, sizes[0], layout, pages, None, tif)
            spacing, unit = spacing_of(tif, 0, tif.series[0])
    except Exception as exc:  # tifffile's own errors name no file: wrap them
        if isinstance(exc, OSError) or not is_parse_error(exc):
            raise
        raise CorruptFileError(
            f"slice {str(first_path)!r} is not a valid TIFF file "
            f"({type(exc).__name__}: {exc}); replace it or remove it from the "
            "folder",
            first_path,
        ) from exc
    storage = SequenceStorage(folder, files, layout, axis=axis, first=first)
    if first.offsets is not None:
        # uncompressed slices of one layout have one size: check the odd ones
        odd = [i for i, s in enumerate(sizes) if s[1] != sizes[0][1]]
        for i in odd[:CHECK_AT_OPEN]:
            with contextlib.suppress(CorruptFileError):
                storage.slice_header(i)
    meta = ImageMeta(
        spacing=spacing,
        unit=unit,
        rgb=layout.samples in (3, 4) and layout.dtype.itemsize <= 2,
        kind="tiff sequence",
    )
    return Opened(storage, meta, ())
