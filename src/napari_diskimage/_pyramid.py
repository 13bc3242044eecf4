"""The display pyramid: lazy strided views that napari pulls planes from.

A napari multiscale layer is a list of arrays, finest first.  Here each
level is a :class:`DisplayLevel` over one channel of a :class:`DiskImage`:
level ``k`` takes every ``2**k``-th row and column (the IPSDK ``loadPlan``
stride), and keeps t and z whole, so every plane shown in 2D is an exact
plane of the file.  Nothing is read until napari asks for the pixels of a
view (``np.asarray``), and then only the rows and columns of that view,
through :meth:`DiskImage.read_region` (``pread``: no SIGBUS if the file
shrinks, and ``bytes_read`` counts what was read).

When the coarsest of those levels would make napari's 3D view read more
than a budget (:data:`OVERVIEW_BYTES`), one more level is added, the 3D
overview, strided in z as well (:func:`overview_strides`): the 3D view of
a volume of any size reads a bounded part of the file.

A pyramidal TIFF stores its own coarser levels (``image.display_levels``):
those are shown as they are, each read through its own ``read_region``,
and striding starts only below the coarsest stored level.  An RGB(A) image
(``image.rgb``) gives levels with a trailing colour axis, so napari shows
one colour layer.

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
    "OVERVIEW_BYTES",
    "OVERVIEW_SIDE",
    "OVERVIEW_VOXELS",
    "SAMPLE_BYTES",
    "DisplayLevel",
    "clear_cache",
    "display_axes",
    "display_levels",
    "overview_strides",
    "sample_contrast_limits",
    "sample_values",
]

#: The pyramid stops at the first level whose larger side is at most this.
COARSEST_SIZE = 512
#: Most bytes of the file the 3D overview (the coarsest level) reads.
OVERVIEW_BYTES = 128 << 20
#: Most voxels in the 3D overview: napari uploads it as one 3D texture.
OVERVIEW_VOXELS = 1 << 25
#: Longest side of the 3D overview (``GL_MAX_3D_TEXTURE_SIZE`` is often 2048).
OVERVIEW_SIDE = 2048
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
    """A lazy view of one channel of a disk image, strided in y and x
    (and in z for the 3D overview, ``zfactor``).

    ``shape`` is that of the axes in :func:`display_axes` (t and z only if
    longer than 1), followed by a colour axis when ``channel`` is a tuple
    of channels (RGB(A): napari's ``rgb=True`` layout).  Indexing with
    integers, slices (any step, negative too) and ``Ellipsis`` returns
    another lazy view and reads nothing; ``np.asarray(view)`` reads the
    rows and columns of the view, plane by plane, through
    ``image.read_region`` (at strided levels, whole planes of at most
    :data:`CACHE_PLANE_BYTES`, kept in the plane cache).

    Parameters
    ----------
    image : DiskImage
        The image; only ``shape``, ``dtype`` and ``read_region`` are used,
        so other image classes with the same surface work too.
    channel : int or tuple of int
        The channel (c) shown; a tuple (e.g. ``(0, 1, 2)`` for RGB) makes
        the last axis of the level the colour axis, each colour read from
        its channel.
    factor : int
        Stride in y and x over ``image``: ``2**k`` for pyramid level ``k``
        of a file without stored levels.
    zfactor : int
        Stride in z over ``image`` (the 3D overview); 1 keeps every plane.

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

    def __init__(
        self,
        image: DiskImage,
        channel: int | tuple[int, ...] = 0,
        factor: int = 1,
        zfactor: int = 1,
    ) -> None:
        t, c, z, y, x = image.shape
        channels = channel if isinstance(channel, tuple) else (channel,)
        for ch in channels:
            if not 0 <= ch < c:
                raise IndexError(f"channel {ch} is outside 0..{c - 1}")
        if not channels:
            raise ValueError("a display level needs at least one channel")
        if factor < 1 or zfactor < 1:
            raise ValueError(
                f"factor and zfactor must be at least 1, got {factor} and {zfactor}"
            )
        self._image = image
        self._channel: int | tuple[int, ...] = (
            tuple(int(ch) for ch in channel) if isinstance(channel, tuple)
            else int(channel)
        )  # fmt: skip
        self._channels = tuple(int(ch) for ch in channels)
        self._factor = int(factor)
        self._zfactor = int(zfactor)
        # One entry per axis t, z, y, x, colour: an int (axis dropped) or a
        # range of indices (axis kept): full-resolution indices of the image
        # for y and x, positions in ``_channels`` for the colour axis.
        self._index: tuple[_Index, ...] = (
            range(t) if t > 1 else 0,
            range(0, z, zfactor) if z > 1 else 0,
            range(0, y, factor),
            range(0, x, factor),
            range(len(channels)) if isinstance(channel, tuple) else 0,
        )

    @classmethod
    def _view(cls, parent: DisplayLevel, index: tuple[_Index, ...]) -> DisplayLevel:
        view = cls.__new__(cls)
        view._image = parent._image
        view._channel = parent._channel
        view._channels = parent._channels
        view._factor = parent._factor
        view._zfactor = parent._zfactor
        view._index = index
        return view

    # --- array-like surface --------------------------------------------
    @property
    def image(self) -> DiskImage:
        """The disk image this level reads from."""
        return self._image

    @property
    def channel(self) -> int | tuple[int, ...]:
        """The channel shown, or the channels of the colour axis (a tuple)."""
        return self._channel

    @property
    def factor(self) -> int:
        """Stride in y and x over :attr:`image` (a stored level is its own
        image, read with stride 1)."""
        return self._factor

    @property
    def zfactor(self) -> int:
        """Stride in z over :attr:`image`: 1 except for the 3D overview."""
        return self._zfactor

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
            f"stride {self._factor} (z {self._zfactor}) of "
            f"{str(self._image.path)!r}>"
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
        t_idx, z_idx, y_idx, x_idx, s_idx = self._index
        ts = t_idx if isinstance(t_idx, range) else (t_idx,)
        zs = z_idx if isinstance(z_idx, range) else (z_idx,)
        ss = s_idx if isinstance(s_idx, range) else (s_idx,)
        rows, flip_y = _ascending(y_idx)
        cols, flip_x = _ascending(x_idx)
        out = np.empty((len(ts), len(zs), len(rows), len(cols), len(ss)), self.dtype)
        if out.size:
            for k, s in enumerate(ss):
                read_plane = self._plane_reader(self._channels[s], rows, cols)
                for (i, t), (j, z) in itertools.product(enumerate(ts), enumerate(zs)):
                    out[i, j, :, :, k] = read_plane(t, z)
        if flip_y:
            out = out[:, :, ::-1]
        if flip_x:
            out = out[:, :, :, ::-1]
        # Drop the axes that were indexed with an integer.
        drop: list[Any] = [slice(None)] * 5
        for n, idx in enumerate(self._index):
            if not isinstance(idx, range):
                drop[n] = 0
        return np.ascontiguousarray(out[tuple(drop)])

    def _plane_reader(self, c: int, rows: range, cols: range) -> Any:
        """A function (t, z) -> the ``rows`` x ``cols`` part of a plane of ``c``."""
        image, f = self._image, self._factor
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


def display_levels(
    image: DiskImage,
    channel: int | tuple[int, ...] = 0,
    *,
    overview_bytes: int | None = None,
    overview_voxels: int | None = None,
) -> list[DisplayLevel]:
    """The display pyramid of one channel of ``image``, finest first.

    The levels stored in the file (``image.display_levels``: a pyramidal
    TIFF) come first, each read through its own ``read_region``; then
    levels strided by 2, 4, 8 ... over the coarsest stored one (the image
    itself for most files), until the larger side of the last level is at
    most :data:`COARSEST_SIZE` pixels.  These levels keep every z plane, so
    a 2D view shows exact planes of the file at every zoom.

    napari renders 3D from the coarsest level.  When that level would read
    more than ``overview_bytes`` of the file (default
    :data:`OVERVIEW_BYTES`) or hold more than ``overview_voxels`` voxels
    (default :data:`OVERVIEW_VOXELS`, and no side longer than
    :data:`OVERVIEW_SIDE`), one more level is added, the **3D overview**:
    strided in z too, and in y and x twice as much as the coarsest 2D
    level at least (see :func:`overview_strides`), so that napari's 2D
    level choice never picks it over an exact level unless the canvas is
    smaller than 256 pixels.  Its cost is bounded whatever the size of the
    volume.

    Sizes strictly decrease, as napari requires.  ``channel`` is as for
    :class:`DisplayLevel` (a tuple for a colour axis).
    """
    stored = list(getattr(image, "display_levels", None) or [image])
    levels = [DisplayLevel(stored[0], channel, 1)]
    for level_image in stored[1:]:
        previous = levels[-1].image.shape
        shape = level_image.shape
        # z may shrink too (an OME-Zarr's averaged levels: napari scales each
        # axis by the ratio of the shapes), but not to one plane from several
        z_kept = shape[2] <= previous[2] and (shape[2] > 1 or previous[2] == 1)
        if (
            shape[:2] == previous[:2]
            and z_kept
            and shape[3:] != previous[3:]
            and (shape[3] <= previous[3] and shape[4] <= previous[4])
        ):
            levels.append(DisplayLevel(level_image, channel, 1))
    coarsest = levels[-1].image
    y, x = coarsest.shape[3], coarsest.shape[4]
    factor = 1
    while max(-(-y // factor), -(-x // factor)) > COARSEST_SIZE:
        factor *= 2
        levels.append(DisplayLevel(coarsest, channel, factor))
    strides = overview_strides(
        coarsest,
        factor,
        OVERVIEW_BYTES if overview_bytes is None else overview_bytes,
        OVERVIEW_VOXELS if overview_voxels is None else overview_voxels,
        colours=len(channel) if isinstance(channel, tuple) else 1,
    )
    if strides is not None:
        zfactor, factor = strides
        levels.append(DisplayLevel(coarsest, channel, factor, zfactor))
    return levels


def overview_strides(
    image: DiskImage,
    factor: int,
    max_bytes: int,
    max_voxels: int,
    *,
    colours: int = 1,
) -> tuple[int, int] | None:
    """Strides ``(z, yx)`` of the 3D overview of ``image``, or None if needless.

    ``factor`` is the y/x stride of the coarsest 2D level.  None when that
    level already fits the budget (napari's 3D view then shows it: every z
    plane) or when the image has a single z plane (no 3D view).  Otherwise
    the y/x stride starts at ``2 * factor`` (1 if ``factor`` is 1) and the
    z stride at 1; a side longer than :data:`OVERVIEW_SIDE` gets a larger
    stride, and otherwise the finer of the two strides (in voxels) is
    doubled, until the overview reads at
    most ``max_bytes`` of the file (counted as :meth:`read_region` reads:
    a row of a row-major file costs its whole span, whatever the x stride)
    and holds at most ``max_voxels`` voxels with no side longer than
    :data:`OVERVIEW_SIDE`.
    """
    _, _, z, y, x = image.shape
    if z <= 1:
        return None

    def fits(fz: int, f: int) -> bool:
        nz, ny, nx = -(-z // fz), -(-y // f), -(-x // f)
        voxels = nz * ny * nx * colours
        cost = nz * _read_cost(image, ny, f, nx, f) * colours
        return (
            cost <= max_bytes
            and voxels <= max_voxels
            and max(nz, ny, nx) <= OVERVIEW_SIDE
        )

    if fits(1, factor):
        return None
    # Strictly coarser in y/x than the coarsest 2D level (if that one is
    # strided): napari's 2D level choice then keeps the exact levels.
    fz, f = 1, 1 if factor == 1 else 2 * factor
    while not fits(fz, f):
        nz, ny, nx = -(-z // fz), -(-y // f), -(-x // f)
        can_z, can_yx = nz > 1, max(ny, nx) > 1
        if not (can_z or can_yx):
            break  # a single voxel: the least there is to read
        if nz > OVERVIEW_SIDE:
            fz *= 2
        elif max(ny, nx) > OVERVIEW_SIDE:
            f *= 2
        elif can_z and (fz < f or not can_yx):
            fz *= 2  # the finer axis first: voxels as near cubes as can be
        else:
            f *= 2
    return min(fz, z), f


def sample_contrast_limits(
    image: DiskImage,
    channel: int | tuple[int, ...] = 0,
    budget: int = SAMPLE_BYTES,
) -> tuple[float, float]:
    """Contrast limits (min, max) of a sample of the coarsest display level.

    The sample is taken from the rows and columns of the coarsest level of
    :func:`display_levels` (a stored level of a pyramidal TIFF, or every
    ``2**k``-th row and column): the pixels napari reads first anyway, so
    from a cold cache the sample costs the first view no extra disk reads,
    and a compressed file decodes only chunks the view needs.  At most
    ``budget`` bytes are read: the whole level if it fits, else 16 planes
    spread through t and z, and in each of them rows of the level spread
    evenly through the plane.  The limits span the values found, so a
    uint16 image whose values are 0..1255 shows with limits near 0..1255,
    not 0..65535.  NaN and infinities are ignored; a constant image gets
    ``(v, v + 1)``.  A tuple of channels (RGB) samples each of them.
    """
    channels = channel if isinstance(channel, tuple) else (channel,)
    coarsest = _coarsest_2d(image, channels[0])
    samples: list[np.ndarray] = []
    for c in channels:
        samples += _sample_level(
            coarsest.image, c, coarsest.factor, budget // len(channels)
        )
    return _limits(samples)


def sample_values(
    image: DiskImage, channel: int = 0, budget: int = SAMPLE_BYTES
) -> np.ndarray:
    """A bounded sample of the pixel values of one channel (1-D, finite).

    The same rows as :func:`sample_contrast_limits` reads (at most
    ``budget`` bytes, spread through the image): enough for a histogram
    such as Otsu's threshold, prefilled in a widget before any full pass.
    """
    coarsest = _coarsest_2d(image, channel)
    parts = _sample_level(coarsest.image, channel, coarsest.factor, budget)
    values = np.concatenate([p.ravel() for p in parts]) if parts else np.empty(0)
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    return values


def _coarsest_2d(image: DiskImage, channel: int) -> DisplayLevel:
    """The coarsest level of the pyramid that keeps every z plane."""
    return [lv for lv in display_levels(image, channel) if lv.zfactor == 1][-1]


def _sample_level(
    image: DiskImage, channel: int, factor: int, budget: int
) -> list[np.ndarray]:
    """Rows of ``image`` strided by ``factor`` (a display level), within budget."""
    t_size, _, z_size, y_size, x_size = image.shape
    ny, nx = -(-y_size // factor), -(-x_size // factor)
    row_cost = _read_cost(image, 1, factor, nx, factor)
    planes = t_size * z_size
    rows_total = budget // row_cost
    if rows_total == 0:

        def _fits(n: int) -> bool:
            return _read_cost(image, 1, 1, n, 1) <= budget

        # A row longer than the budget: the start of the middle row of the
        # level, every pixel (contiguous: the cheapest read).
        n, too_many = 1, x_size + 1  # the most pixels within budget
        while too_many - n > 1:
            mid = (n + too_many) // 2
            n, too_many = (mid, too_many) if _fits(mid) else (n, mid)
        y = (ny // 2) * factor
        return [image.read_region(0, channel, z_size // 2, y, 1, 1, 0, n, 1)]
    # 16 planes, or every plane if all of them fit in the budget
    n_planes = min(planes, rows_total, max(16, rows_total // ny))
    per_plane = budget // n_planes
    rows = max(1, min(ny, per_plane // row_cost))
    step = max(1, ny // rows)
    # read_region reads close rows as one block: spread them out more
    while rows > 1 and _read_cost(image, rows, step * factor, nx, factor) > per_plane:
        rows -= max(1, rows // 8)
        step = max(1, ny // rows)
    y0 = (ny - 1 - (rows - 1) * step) // 2 * factor
    flat = np.linspace(0, planes - 1, n_planes).round().astype(int)
    samples = []
    for p in np.unique(flat):
        t, z = divmod(int(p), z_size)
        samples.append(
            image.read_region(t, channel, z, y0, rows, step * factor, 0, nx, factor)
        )
    return samples


def _read_cost(image: DiskImage, ny: int, sy: int, nx: int, sx: int) -> int:
    """Bytes ``image.read_region`` reads for ``ny`` rows and ``nx`` columns.

    Mirrors :meth:`DiskImage.read_region` for a mapped image (rows close
    together are read as one block); for a lazily decoded image, the bytes
    of the whole strips or tiles decoded (``array.chunk_rows`` high); for
    other images, the pixels' bytes.
    """
    itemsize = np.dtype(image.dtype).itemsize
    array = getattr(image, "array", None)
    mapped = isinstance(array, np.ndarray) and getattr(image, "is_mapped", True)
    chunk_rows = 1 if mapped else min(getattr(array, "chunk_rows", 1), image.shape[3])
    if chunk_rows > 1:
        # every chunk across the rows is decoded: count whole chunk rows
        touched = 1 if ny <= 1 else min(ny, (ny - 1) * sy // chunk_rows + 2)
        return touched * chunk_rows * image.shape[4] * itemsize
    if mapped and array is not None:
        s3, s4 = abs(int(array.strides[3])), abs(int(array.strides[4]))
    else:
        s3, s4 = image.shape[4] * itemsize, itemsize
    row_span = (nx - 1) * sx * s4 + itemsize
    if ny <= 1:
        return row_span
    step = sy * s3
    block = (ny - 1) * step + row_span
    if mapped and step <= 2 * row_span and block <= (256 << 20):
        return block
    return ny * row_span


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
