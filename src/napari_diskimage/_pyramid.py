"""The display pyramid: lazy strided views that napari pulls planes from.

A napari multiscale layer is a list of arrays, finest first.  Here each
level is a :class:`DisplayLevel` over one channel of a :class:`DiskImage`:
level ``k`` takes every ``2**k``-th row and column (the IPSDK ``loadPlan``
stride), and keeps t and z whole, so every plane shown in 2D is an exact
plane of the file.  Nothing is read until napari asks for the pixels of a
view (``np.asarray``), and then only the rows and columns of that view,
through :meth:`DiskImage.read_region` (``pread``: no SIGBUS if the file
shrinks, and ``bytes_read`` counts what was read).

napari reads the same coarse planes several times in a row (the view and
the thumbnail, and each re-slice while a layer is added), so whole planes
of the strided levels are kept in a small cache (:data:`CACHE_BYTES` for
all images).  An entry is used only while the image's ``write_count`` and
the file's modification time and size are unchanged, and is dropped when
unused for :data:`CACHE_SECONDS`: a pixel written with
:meth:`DiskImage.write_pixel` shows at every level on the next
``layer.refresh()``.  After writing through ``DiskImage.array`` (which
the file's modification time may not show at once), call
:func:`clear_cache`.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

from ._diskimage import DiskImage

__all__ = [
    "CACHE_BYTES",
    "CACHE_SECONDS",
    "COARSEST_SIZE",
    "SAMPLE_BYTES",
    "DisplayLevel",
    "clear_cache",
    "display_axes",
    "display_levels",
    "sample_contrast_limits",
]

#: The pyramid stops at the first level whose larger side is at most this.
COARSEST_SIZE = 512
#: Most bytes read from the file to estimate contrast limits.
SAMPLE_BYTES = 16 << 20
#: Memory for cached planes of the strided levels, all images together.
CACHE_BYTES = 96 << 20
#: Largest plane that is cached; bigger ones are read in parts, as shown.
CACHE_PLANE_BYTES = 4 << 20
#: A cached plane unused for this many seconds is read again.
CACHE_SECONDS = 60.0

_Index = int | range


def display_axes(image: DiskImage) -> str:
    """The axes a layer of ``image`` has: ``"yx"``, ``"zyx"``, ``"tzyx"``...

    t and z are kept only when they have more than one element; c is never
    an axis of a layer (one layer per channel).
    """
    t, _, z, _, _ = image.shape
    return ("t" if t > 1 else "") + ("z" if z > 1 else "") + "yx"


class DisplayLevel:
    """A lazy view of one channel of a disk image, strided in y and x.

    ``shape`` is that of the axes in :func:`display_axes` (t and z only if
    longer than 1).  Indexing with integers, slices (any step, negative
    too) and ``Ellipsis`` returns another lazy view and reads nothing;
    ``np.asarray(view)`` reads the rows and columns of the view, plane by
    plane, through ``image.read_region`` (at strided levels, whole planes
    of at most :data:`CACHE_PLANE_BYTES`, kept in the plane cache).

    Parameters
    ----------
    image : DiskImage
        The image; only ``shape``, ``dtype`` and ``read_region`` are used,
        so other image classes with the same surface work too.
    channel : int
        The channel (c) shown.
    factor : int
        Stride in y and x: ``2**k`` for pyramid level ``k``.

    Examples
    --------
    >>> import napari_diskimage as ndi
    >>> img = ndi.copy(np.arange(64, dtype=np.uint8).reshape(8, 8))
    >>> level = DisplayLevel(img, 0, 2)
    >>> level.shape
    (4, 4)
    >>> np.asarray(level[1])
    array([16, 18, 20, 22], dtype=uint8)
    """

    def __init__(self, image: DiskImage, channel: int = 0, factor: int = 1) -> None:
        t, c, z, y, x = image.shape
        if not 0 <= channel < c:
            raise IndexError(f"channel {channel} is outside 0..{c - 1}")
        if factor < 1:
            raise ValueError(f"factor must be at least 1, got {factor}")
        self._image = image
        self._channel = int(channel)
        self._factor = int(factor)
        # One entry per image axis t, z, y, x: an int (axis dropped) or a
        # range of full-resolution indices (axis kept).
        self._index: tuple[_Index, ...] = (
            range(t) if t > 1 else 0,
            range(z) if z > 1 else 0,
            range(0, y, factor),
            range(0, x, factor),
        )

    @classmethod
    def _view(cls, parent: DisplayLevel, index: tuple[_Index, ...]) -> DisplayLevel:
        view = cls.__new__(cls)
        view._image = parent._image
        view._channel = parent._channel
        view._factor = parent._factor
        view._index = index
        return view

    # --- array-like surface --------------------------------------------
    @property
    def image(self) -> DiskImage:
        """The disk image this level reads from."""
        return self._image

    @property
    def channel(self) -> int:
        return self._channel

    @property
    def factor(self) -> int:
        """Stride in y and x relative to the full image."""
        return self._factor

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._image.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(i) for i in self._index if isinstance(i, range))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d view")
        return self.shape[0]

    def __repr__(self) -> str:
        return (
            f"<DisplayLevel {self.shape} {self.dtype} channel {self._channel} "
            f"stride {self._factor} of {str(self._image.path)!r}>"
        )

    def __getitem__(self, key: Any) -> DisplayLevel:
        """A lazy view; integers, slices and ``...`` are supported."""
        if not isinstance(key, tuple):
            key = (key,)
        kept = [n for n, i in enumerate(self._index) if isinstance(i, range)]
        n_ellipsis = sum(k is Ellipsis for k in key)
        if n_ellipsis > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        if n_ellipsis:
            pos = next(n for n, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (len(kept) - len(key) + 1)
            key = key[:pos] + fill + key[pos + 1 :]
        if len(key) > len(kept):
            raise IndexError(
                f"too many indices: the view has {len(kept)} axes {self.shape}, "
                f"got {len(key)}"
            )
        index = list(self._index)
        for axis, k in zip(kept, key, strict=False):
            current = index[axis]
            assert isinstance(current, range)
            if isinstance(k, slice):
                index[axis] = current[k]
            elif isinstance(k, (numbers.Integral, np.integer)) and not isinstance(
                k, (bool, np.bool_)
            ):
                try:
                    index[axis] = current[int(k)]
                except IndexError:
                    raise IndexError(
                        f"index {int(k)} is out of bounds for an axis of size "
                        f"{len(current)}"
                    ) from None
            else:
                raise TypeError(
                    f"a display level takes integers, slices and '...' as "
                    f"indices, got {k!r}; use np.asarray(level) first for "
                    "other indexing"
                )
        return self._view(self, tuple(index))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("reading a display level always makes a copy")
        out = self.read()
        return out if dtype is None else out.astype(dtype, copy=False)

    # --- reading -------------------------------------------------------
    def read(self) -> np.ndarray:
        """Read the pixels of this view into memory."""
        t_idx, z_idx, y_idx, x_idx = self._index
        ts = t_idx if isinstance(t_idx, range) else (t_idx,)
        zs = z_idx if isinstance(z_idx, range) else (z_idx,)
        rows, flip_y = _ascending(y_idx)
        cols, flip_x = _ascending(x_idx)
        out = np.empty((len(ts), len(zs), len(rows), len(cols)), self.dtype)
        if out.size:
            read_plane = self._plane_reader(rows, cols)
            for (i, t), (j, z) in itertools.product(enumerate(ts), enumerate(zs)):
                out[i, j] = read_plane(t, z)
        if flip_y:
            out = out[:, :, ::-1]
        if flip_x:
            out = out[:, :, :, ::-1]
        # Drop the axes that were indexed with an integer.
        drop: list[Any] = [slice(None)] * 4
        for n, idx in enumerate(self._index):
            if not isinstance(idx, range):
                drop[n] = 0
        return np.ascontiguousarray(out[tuple(drop)])

    def _plane_reader(self, rows: range, cols: range) -> Any:
        """A function (t, z) -> the ``rows`` x ``cols`` part of a plane."""
        image, c, f = self._image, self._channel, self._factor
        full_y = range(0, image.shape[3], f)
        full_x = range(0, image.shape[4], f)
        plane_bytes = len(full_y) * len(full_x) * self.dtype.itemsize
        token = None
        if f > 1 and plane_bytes <= CACHE_PLANE_BYTES:
            token = _token_of(image)
        if token is None:

            def read_part(t: int, z: int) -> np.ndarray:
                return image.read_region(
                    t, c, z, rows.start, len(rows), rows.step,
                    cols.start, len(cols), cols.step,
                )  # fmt: skip

            return read_part
        # A strided level: read whole planes through the cache, then crop.
        version = _version(image)
        crop = tuple(_level_slice(r, f) for r in (rows, cols))

        def read_cached(t: int, z: int) -> np.ndarray:
            key = (token, c, f, t, z)
            plane = _cache.get(key, version)
            finer = f // 2
            while plane is None and finer >= 2:
                # napari reads the view's level, then the coarsest level for
                # the thumbnail: derive it from the finer plane, no I/O.
                cached = _cache.get((token, c, finer, t, z), version)
                if cached is not None:
                    step = f // finer
                    plane = np.ascontiguousarray(cached[::step, ::step])
                    _cache.put(key, version, plane)
                finer //= 2
            if plane is None:
                plane = image.read_region(t, c, z, 0, len(full_y), f, 0, len(full_x), f)
                _cache.put(key, version, plane)
            return plane[crop]

        return read_cached


def _level_slice(r: range, factor: int) -> slice:
    """Full-resolution indices ``r`` as a slice of a level strided by ``factor``."""
    step = max(1, r.step // factor)  # a single index may carry step 1
    start = r.start // factor
    return slice(start, start + len(r) * step, step)


class _PlaneCache:
    """Whole planes of strided levels, least recently used dropped first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._planes: OrderedDict[Any, tuple[Any, float, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, version: Any) -> np.ndarray | None:
        with self._lock:
            entry = self._planes.get(key)
            if entry is None:
                return None
            stored_version, used_at, plane = entry
            now = time.monotonic()
            if stored_version != version or now - used_at > CACHE_SECONDS:
                del self._planes[key]
                self.nbytes -= plane.nbytes
                return None
            self._planes[key] = (stored_version, now, plane)
            self._planes.move_to_end(key)
            return plane

    def put(self, key: Any, version: Any, plane: np.ndarray) -> None:
        plane.flags.writeable = False  # shared by every reader of the level
        with self._lock:
            old = self._planes.pop(key, None)
            if old is not None:
                self.nbytes -= old[2].nbytes
            self._planes[key] = (version, time.monotonic(), plane)
            self.nbytes += plane.nbytes
            while self.nbytes > self.max_bytes and self._planes:
                _, (_, _, dropped) = self._planes.popitem(last=False)
                self.nbytes -= dropped.nbytes

    def drop(self, token: int) -> None:
        """Forget the planes whose key starts with ``token``."""
        with self._lock:
            for key in [k for k in self._planes if k[0] == token]:
                self.nbytes -= self._planes.pop(key)[2].nbytes


# One cache for all images; each image gets a token (weak keys: the cache
# never keeps an image, or its scratch file, alive) and its planes are
# dropped when it is.
_cache = _PlaneCache(CACHE_BYTES)
_tokens: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_next_token = itertools.count()
_tokens_lock = threading.Lock()


def _token_of(image: Any) -> int | None:
    """The cache token of ``image``; None if it cannot be weakly referenced."""
    with _tokens_lock:
        try:
            token = _tokens.get(image)
            if token is None:
                token = _tokens[image] = next(_next_token)
                weakref.finalize(image, _cache.drop, token)
        except TypeError:  # unhashable or not weakly referenceable
            return None
        return token


def clear_cache(image: Any) -> None:
    """Forget the cached planes of ``image`` (after writing to it directly)."""
    with _tokens_lock:
        token = _tokens.get(image)
    if token is not None:
        _cache.drop(token)


def _version(image: Any) -> tuple[Any, ...]:
    """What must not change for a cached plane of ``image`` to stay valid."""
    try:
        st = os.stat(image.path)
        stamp: tuple[Any, ...] = (st.st_mtime_ns, st.st_size, st.st_ino)
    except (OSError, TypeError, AttributeError):
        stamp = ()
    return (getattr(image, "write_count", None), *stamp)


def _ascending(r: _Index) -> tuple[range, bool]:
    """``r`` as an increasing range (step >= 1), and whether it was reversed."""
    if not isinstance(r, range):
        return range(r, r + 1), False
    if len(r) == 0:
        return range(0), False
    if r.step > 0:
        return r, False
    return r[::-1], True


def display_levels(image: DiskImage, channel: int = 0) -> list[DisplayLevel]:
    """The display pyramid of one channel of ``image``, finest first.

    Level ``k`` is strided by ``2**k`` in y and x; levels are added until
    the larger side of the last one is at most :data:`COARSEST_SIZE` pixels.
    """
    y, x = image.shape[3], image.shape[4]
    levels = [DisplayLevel(image, channel, 1)]
    factor = 1
    while max(-(-y // factor), -(-x // factor)) > COARSEST_SIZE:
        factor *= 2
        levels.append(DisplayLevel(image, channel, factor))
    return levels


def sample_contrast_limits(
    image: DiskImage, channel: int = 0, budget: int = SAMPLE_BYTES
) -> tuple[float, float]:
    """Contrast limits (min, max) of a strided sample of one channel.

    Reads at most ``budget`` bytes: the whole channel if it fits, else 16
    planes spread through t and z, and in each of them rows spread evenly
    through the plane.  The limits
    span the values found, so a uint16 image whose values are 0..1255
    shows with limits near 0..1255, not 0..65535.  NaN and infinities are
    ignored; a constant image gets ``(v, v + 1)``.
    """
    t_size, _, z_size, y_size, x_size = image.shape
    itemsize = np.dtype(image.dtype).itemsize
    row_bytes = _row_bytes(image, itemsize)
    planes = t_size * z_size
    rows_total = budget // row_bytes
    if rows_total == 0:
        # A row longer than the budget: read the start of the middle row.
        nx = max(1, budget // max(1, row_bytes // x_size))
        samples = [
            image.read_region(0, channel, z_size // 2, y_size // 2, 1, 1, 0, nx, 1)
        ]
    else:
        # 16 planes, or every plane if all of them fit in the budget
        n_planes = min(planes, rows_total, max(16, rows_total // y_size))
        rows = min(y_size, rows_total // n_planes)
        step_y = y_size // rows
        if step_y <= 2:
            # read_region reads the whole block for close rows: take
            # contiguous rows from the middle instead.
            step_y = 1
        y0 = (y_size - 1 - (rows - 1) * step_y) // 2
        flat = np.linspace(0, planes - 1, n_planes).round().astype(int)
        samples = []
        for p in np.unique(flat):
            t, z = divmod(int(p), z_size)
            samples.append(
                image.read_region(t, channel, z, y0, rows, step_y, 0, x_size, 1)
            )
    return _limits(samples)


def _row_bytes(image: DiskImage, itemsize: int) -> int:
    """Bytes read_region reads for one full row."""
    x_size = image.shape[4]
    array = getattr(image, "array", None)
    stride = itemsize
    if isinstance(array, np.ndarray):
        stride = max(itemsize, abs(int(array.strides[4])))
    return (x_size - 1) * stride + itemsize


def _limits(samples: list[np.ndarray]) -> tuple[float, float]:
    """(min, max) of the finite values of ``samples``; (v, v + 1) if constant."""
    lows, highs = [], []
    for values in samples:
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size:
            lows.append(float(values.min()))
            highs.append(float(values.max()))
    if not lows:
        return (0.0, 1.0)
    lo, hi = min(lows), max(highs)
    if hi <= lo:
        hi = lo + 1.0
    return (lo, hi)
