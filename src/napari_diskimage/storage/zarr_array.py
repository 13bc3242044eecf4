"""The pixels of a Zarr store's arrays (:class:`ZarrStorage`); opened by
:mod:`napari_diskimage.storage.zarr`.

The pixels are chunks, each compressed on its own.  A read decodes only
the chunks it touches, and decoded chunks are kept in a bounded LRU cache
shared by all levels of one store (:data:`CACHE_BYTES`).  Opening reads the
metadata only (``zarr.json`` / ``.zattrs`` / ``.zarray``).

An OME-Zarr's resolution levels (``multiscales[0].datasets``) are opened
as read-only storages of their own: the display pyramid.  With
``mode="r+"`` the finest level is writable: a written pixel is stored in
its chunk, and each coarser level's pixel that covers it is recomputed from
the level above with the store's own method (``"mean"``, ``"mode"``,
``"nearest"``; ``"gaussian"`` and unknown methods are updated as means).

Missing chunk files read as the array's fill value, as the Zarr
specification says (writers leave out chunks that hold only it).
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._cache import LRUCache
from .._errors import CorruptFileError, closed_error
from ._base import PlaneView, Storage
from ._prefetch import RowPrefetch, prefetch_next_row
from ._zarr_pixels import _AXES, block_value, in_array_order

__all__ = [
    "CACHE_BYTES",
    "ZarrHandle",
    "ZarrStorage",
    "corrupt",
    "is_zarr_store",
    "open_node",
    "zarr_problem",
]

#: Decoded chunks kept in memory per open store (all levels).
CACHE_BYTES = 128 << 20
#: Largest box of chunks decoded by one zarr call (zarr decodes them in
#: parallel).
READ_BYTES = 64 << 20

#: Attributes (beside "ome") of a multiscale image whose every chunk was
#: written (napari-diskimage's stores): a missing chunk file is damage.
EVERY_CHUNK = {"napari_diskimage": {"every_chunk_written": True}}


def is_zarr_store(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a folder holding Zarr metadata (v2 or v3)."""
    p = Path(path)
    return p.is_dir() and any(
        (p / name).is_file() for name in ("zarr.json", ".zgroup", ".zarray", ".zattrs")
    )


def corrupt(path: Path, what: str) -> CorruptFileError:
    return CorruptFileError(f"{str(path)!r} is not a readable Zarr store: {what}", path)


def open_node(path: Path, mode: Literal["r", "r+"] = "r") -> Any:
    """``zarr.open`` of ``path`` with errors that name the store."""
    import zarr

    try:
        return zarr.open(str(path), mode=mode)
    except FileNotFoundError:
        raise corrupt(
            path,
            "no Zarr metadata (zarr.json, .zgroup or .zarray) in it; "
            "open a folder written as Zarr",
        ) from None
    except Exception as exc:  # zarr raises many types on bad metadata/codecs
        raise corrupt(path, zarr_problem(exc)) from exc


def zarr_problem(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "codec" in lowered or "compressor" in lowered:
        return (
            f"it uses a codec that is not available here ({text}); install "
            "the codec's package (numcodecs, imagecodecs) or convert the store"
        )
    return f"its metadata cannot be read ({text}); check it with another program"


class ZarrHandle:
    """The open arrays of one store, shared by its levels (lazily opened)."""

    def __init__(self, path: Path, mode: str = "r", cache_bytes: int | None = None):
        self.path = path
        self.mode = mode
        self.cache = LRUCache(CACHE_BYTES if cache_bytes is None else cache_bytes)
        self._arrays: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.closed = False
        self.decoded_bytes = 0
        #: The store says every chunk was written (ours: :data:`EVERY_CHUNK`),
        #: so a missing chunk file is damage, not the fill value.
        self.every_chunk = False
        self.prefetch = RowPrefetch()  # the next chunk row along z, for browsing

    def array(self, name: str) -> Any:
        """The zarr array at ``name`` ("" for a store that is one array)."""
        if self.closed:
            raise closed_error(self.path)
        with self._lock:
            arr = self._arrays.get(name)
            if arr is None:
                import zarr

                node = open_node(self.path, "r+" if self.mode == "r+" else "r")
                if name:
                    if not isinstance(node, zarr.Group) or name not in node:
                        raise corrupt(self.path, f"its level {name!r} is missing")
                    node = node[name]
                if not isinstance(node, zarr.Array):
                    raise corrupt(self.path, f"{name or 'its root'!r} is not an array")
                if self.mode == "r+":  # a chunk of zeros stays: never a gap
                    node = node.with_config({"write_empty_chunks": True})  # type: ignore[call-overload]
                arr = self._arrays[name] = node
            return arr

    def close(self) -> None:
        self.closed = True
        self.prefetch.close()
        self._arrays.clear()
        self.cache.clear()


def _codec_names(arr: Any) -> list[str]:
    names = []
    for codec in itertools.chain(
        getattr(arr, "filters", ()) or (), getattr(arr, "compressors", ()) or ()
    ):
        name = getattr(codec, "codec_id", None) or type(codec).__name__
        cname = getattr(codec, "cname", None)
        cname = getattr(cname, "value", cname)
        names.append(f"{name} {cname}" if cname else str(name))
    return names


class ZarrStorage(Storage):
    """One array (one resolution level) of a Zarr store, decoded on demand.

    ``axes`` names the array's axes in (t, c, z, y, x) letters (e.g.
    ``"czyx"``); missing axes have size 1.  Reads go through the store's
    chunk cache; :meth:`write` (``mode="r+"``, finest level only) updates
    the coarser ``pyramid`` levels that cover the pixel.
    """

    def __init__(
        self,
        handle: ZarrHandle,
        name: str,
        axes: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        *,
        level: int = 0,
        writable: bool = False,
        pyramid: Sequence[str] = (),
        method: str = "mean",
        owns_handle: bool = True,
    ) -> None:
        self.handle = handle
        self.path = handle.path
        self.name = name
        self.axes = axes
        self.array_shape = tuple(int(n) for n in shape)
        self.shape = tuple(  # type: ignore[assignment]
            self.array_shape[axes.index(a)] if a in axes else 1 for a in _AXES
        )
        self.file_dtype = np.dtype(dtype)
        self.level = level
        self._writable = writable
        self.pyramid = tuple(pyramid)  # the coarser levels' array names
        self.method = method
        self.owns_handle = owns_handle
        self._closed = False
        self._write_lock = threading.Lock()

    # --- the contract --------------------------------------------------------
    @property
    def bytes_read(self) -> int:
        """Bytes of chunks decoded so far (all levels of the store)."""
        return self.handle.decoded_bytes

    @bytes_read.setter
    def bytes_read(self, value: int) -> None:
        self.handle.decoded_bytes = value

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def closed(self) -> bool:
        return self._closed or self.handle.closed

    @property
    def array(self) -> PlaneView:
        if self.closed:
            raise closed_error(self.path)
        return PlaneView(self)

    @property
    def zarr_array(self) -> Any:
        """The zarr array itself (opened on first use)."""
        if self.closed:
            raise closed_error(self.path)
        return self.handle.array(self.name)

    def describe(self) -> str:
        arr = self.zarr_array
        codecs = ", ".join(_codec_names(arr)) or "uncompressed"
        chunks = " x ".join(str(c) for c in arr.chunks)
        return f"in Zarr v{arr.metadata.zarr_format} chunks of {chunks} ({codecs})"

    def summary(self) -> str:
        return f"{self.describe()}, decoded lazily"

    def close(self) -> None:
        self._closed = True
        if self.owns_handle:
            self.handle.close()

    def state(self) -> tuple:
        """Plain values that reopen this level read-only (:meth:`from_state`)."""
        return (
            str(self.path),
            self.name,
            self.axes,
            self.array_shape,
            self.file_dtype.str,
            self.level,
            self.handle.cache.max_bytes,
            self.handle.every_chunk,
        )

    @classmethod
    def from_state(cls, state: tuple) -> ZarrStorage:
        """Reopen read-only; nothing is opened until the first read."""
        path, name, axes, shape, dtype, level, *rest = state
        handle = ZarrHandle(Path(path), cache_bytes=rest[0] if rest else None)
        handle.every_chunk = bool(rest[1]) if len(rest) > 1 else False
        return cls(handle, name, axes, tuple(shape), np.dtype(dtype), level=level)

    def moved(self, path: Path) -> None:
        """The store was renamed to ``path`` (by this process): read there."""
        self.handle.path = self.path = Path(path)
        self.handle._arrays.clear()

    def uncached(self) -> None:
        """Decode every read afresh, here and where this storage is
        unpickled: for a store that other threads or processes write while
        it is read (a run's output, read back by its next pass)."""
        self.handle.cache = LRUCache(0)

    # --- reading -------------------------------------------------------------
    def _index(self, t: int, c: int, z: int) -> dict[str, int]:
        return {"t": t, "c": c, "z": z}

    def _chunk(self, key: tuple[int, ...]) -> np.ndarray:
        """The decoded chunk at chunk-grid ``key`` (the array's axes)."""
        cache_key = (self.name, key)
        hit = self.handle.cache.get(cache_key)
        if hit is not None:
            return hit
        arr = self.zarr_array
        self._check_written(arr, [key])
        box = tuple(
            slice(k * c, min((k + 1) * c, n))
            for k, c, n in zip(key, arr.chunks, self.array_shape, strict=True)
        )
        chunk = self._decode(arr, box, key)
        self.handle.cache.put(cache_key, chunk, chunk.nbytes)
        return chunk

    def _check_written(self, arr: Any, keys: Sequence[tuple[int, ...]]) -> None:
        """In a store whose every chunk was written, raise for a chunk file
        that is missing (Zarr would read it as the fill value)."""
        if not self.handle.every_chunk:
            return
        folder = self.path / self.name if self.name else self.path
        for key in keys:
            name = arr.metadata.encode_chunk_key(key)
            if not (folder / name).is_file():
                raise OSError(
                    errno.EIO,
                    f"chunk {name!r} of array {self.name or '/'!r} of Zarr store "
                    f"{str(self.path)!r} is missing: the store was written with "
                    "every chunk, so it is damaged or was copied incompletely; "
                    "copy or save it again",
                    str(self.path),
                )

    def _decode(
        self, arr: Any, box: tuple[slice, ...], key: tuple[int, ...] | None = None
    ) -> np.ndarray:
        try:
            data = np.asarray(arr[box])
        except Exception as exc:
            where = box if key is None else repr(arr.metadata.encode_chunk_key(key))
            raise OSError(
                errno.EIO,
                f"cannot decode chunk {where} of {str(self.path)!r} "
                f"(array {self.name or '/'!r}): {exc}. The store may be damaged "
                "or truncated; check it with another program",
                str(self.path),
            ) from exc
        self.handle.decoded_bytes += data.nbytes
        return data

    def _read(self, ranges: dict[str, range]) -> np.ndarray:
        """Pixels at ``ranges`` (one range per letter of tczyx, positive
        steps), shaped (t, c, z, y, x), through the chunk cache."""
        arr = self.zarr_array
        chunks = arr.chunks
        out = np.empty([len(ranges[a]) for a in _AXES], dtype=self.dtype)
        if out.size == 0:
            return out
        # per array axis: the chunks touched, and for each the output slice
        # and the slice inside the chunk
        per_axis: list[list[tuple[int, slice, slice]]] = []
        for a, c in zip(self.axes, chunks, strict=True):
            r = ranges[a]
            parts = []
            first, last = r[0] // c, r[-1] // c
            for k in range(first, last + 1):
                lo, hi = k * c, (k + 1) * c
                j0 = max(0, -(-(lo - r.start) // r.step))
                j1 = min(len(r), -(-(hi - r.start) // r.step))
                if j0 >= j1:
                    continue
                start = r.start + j0 * r.step - lo
                parts.append(
                    (
                        k,
                        slice(j0, j1),
                        slice(start, start + (j1 - j0 - 1) * r.step + 1, r.step),
                    )
                )
            per_axis.append(parts)
        view = in_array_order(out, self.axes)
        combos = list(itertools.product(*per_axis))
        keys = [tuple(k for k, _, _ in combo) for combo in combos]
        self.handle.prefetch.wait_for((self.name, k) for k in keys)
        if len(combos) > 1:
            self._decode_missing(keys)
        for key, combo in zip(keys, combos, strict=True):
            chunk = self._chunk(key)
            view[tuple(o for _, o, _ in combo)] = chunk[tuple(i for _, _, i in combo)]
        return out

    def _decode_missing(self, keys: list[tuple[int, ...]]) -> None:
        """Decode the chunks of ``keys`` not in the cache with one zarr read
        of the box around them (zarr decodes its chunks in parallel), when
        that box is at most :data:`READ_BYTES` and fits in the cache."""
        cache = self.handle.cache
        missing = [k for k in keys if (self.name, k) not in cache]
        if len(missing) < 2:
            return
        arr = self.zarr_array
        lo = [min(k[i] for k in missing) for i in range(len(arr.chunks))]
        hi = [max(k[i] for k in missing) + 1 for i in range(len(arr.chunks))]
        box = tuple(
            slice(a * c, min(b * c, n))
            for a, b, c, n in zip(lo, hi, arr.chunks, self.array_shape, strict=True)
        )
        nbytes = math.prod(s.stop - s.start for s in box) * self.dtype.itemsize
        if nbytes > min(READ_BYTES, cache.max_bytes // 2):
            return  # chunk by chunk instead, memory bounded
        self._check_written(arr, missing)
        try:
            data = self._decode(arr, box)
        except OSError:
            return  # chunk by chunk: the error names the damaged chunk

        for key in missing:
            part = tuple(
                slice(k * c - s.start, min((k + 1) * c, n) - s.start)
                for k, c, n, s in zip(
                    key, arr.chunks, self.array_shape, box, strict=True
                )
            )
            chunk = np.ascontiguousarray(data[part])
            cache.put((self.name, key), chunk, chunk.nbytes)

    def read_region(
        self, t: int, c: int, z: int,
        y0: int, ny: int, sy: int, x0: int, nx: int, sx: int,
    ) -> np.ndarray:  # fmt: skip
        """Decodes only the chunks that hold the pixels (cached)."""
        if ny == 0 or nx == 0:
            return np.empty((ny, nx), dtype=self.dtype)
        ranges = {
            "t": range(t, t + 1),
            "c": range(c, c + 1),
            "z": range(z, z + 1),
            "y": range(y0, y0 + (ny - 1) * sy + 1, sy),
            "x": range(x0, x0 + (nx - 1) * sx + 1, sx),
        }
        plane = self._read(ranges)[0, 0, 0]
        prefetch_next_row(self, ranges)
        return plane

    def read_box(self, ranges: Sequence[range]) -> np.ndarray:
        """Pixels of 5 ranges (t, c, z, y, x), positive steps.

        A box larger than the cache is decoded by zarr directly (each chunk
        once, in parallel) instead of chunk by chunk through the cache.
        """
        if self.closed:
            raise closed_error(self.path)
        named = dict(zip(_AXES, ranges, strict=True))
        nbytes = math.prod(len(r) for r in ranges) * self.dtype.itemsize
        if nbytes <= self.handle.cache.max_bytes // 4:
            out = self._read(named)
            if len(named["z"]) == 1:  # a plane (e.g. a view cache's mean level)
                prefetch_next_row(self, named)
            return out
        arr = self.zarr_array
        box = tuple(
            slice(named[a].start, named[a].stop, named[a].step) for a in self.axes
        )
        data = self._decode(arr, box)
        out = np.empty([len(r) for r in ranges], dtype=self.dtype)
        in_array_order(out, self.axes)[...] = data
        return out

    def read_cost(self, ny: int, sy: int, nx: int, sx: int) -> int:
        """Bytes decoded to read ``ny`` rows and ``nx`` columns of a plane:
        every chunk touched, whole (all its planes)."""
        arr_chunks = dict(zip(self.axes, self.zarr_array.chunks, strict=True))
        cy, cx = arr_chunks.get("y", 1), arr_chunks.get("x", 1)
        rows = min(ny, -(-((ny - 1) * sy + 1) // cy)) if ny else 0
        cols = min(nx, -(-((nx - 1) * sx + 1) // cx)) if nx else 0
        chunk_bytes = math.prod(self.zarr_array.chunks) * self.dtype.itemsize
        return rows * cols * chunk_bytes

    # --- writing -------------------------------------------------------------
    def write(self, t: int, c: int, z: int, y: int, x: int, value: np.generic) -> None:
        """Store one value, then recompute the coarser levels covering it."""
        if not self._writable:
            raise self.write_refused()
        point = {"t": t, "c": c, "z": z, "y": y, "x": x}
        with self._write_lock:
            arr = self.zarr_array
            index = tuple(point[a] for a in self.axes)
            try:
                arr[index] = value
            except Exception as exc:
                raise OSError(
                    errno.EIO,
                    f"cannot write pixel {index} of {str(self.path)!r}: {exc}",
                    str(self.path),
                ) from exc
            self._forget(self.name, index, arr.chunks)
            finer, finer_index = arr, index
            for name in self.pyramid:
                coarse = self.handle.array(name)
                factors = [
                    max(1, round(nf / nc))
                    for nf, nc in zip(finer.shape, coarse.shape, strict=True)
                ]
                cindex = tuple(
                    i // f for i, f in zip(finer_index, factors, strict=True)
                )
                box = tuple(
                    slice(i * f, min((i + 1) * f, n))
                    for i, f, n in zip(cindex, factors, finer.shape, strict=True)
                )
                block = np.asarray(finer[box])
                coarse[cindex] = block_value(block, self.method)
                self._forget(name, cindex, coarse.chunks)
                finer, finer_index = coarse, cindex

    def _forget(
        self, name: str, index: tuple[int, ...], chunks: tuple[int, ...]
    ) -> None:
        key = (name, tuple(i // c for i, c in zip(index, chunks, strict=True)))
        self.handle.cache.drop(lambda k: k == key)

    def flush(self) -> None:
        """Chunks are written when :meth:`write` returns: nothing to do."""


# --- opening ----------------------------------------------------------------
