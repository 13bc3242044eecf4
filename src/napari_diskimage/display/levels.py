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

A read whose z is not one plane and that crosses rows (a YZ plane of
rolled dims, a level read whole in 3D) comes from the image's view cache
while one is
valid (:mod:`.cached_views`: chunks, not rows; block means on the levels
whose grid matches one of the cache's), and the 3D overview is then put on
the grid of one of the cache's mean levels.  XY planes always come from
the file.

Whole planes of the strided levels are kept in a small cache
(:mod:`.cache`); contrast limits are sampled from the coarsest level
(:mod:`.sampling`); full-resolution 3D boxes are :mod:`.box`.  How much a
level costs to read is the storage's :meth:`Storage.read_cost`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from .._diskimage import DiskImage
from .._index import as_slice, normalize_key
from .cache import CACHE_PLANE_BYTES, plane_cache, token_of, version_of
from .cached_views import cache_overview, prefetch_xz, read_cached, uncached_yz_read

__all__ = [
    "COARSEST_SIZE",
    "OVERVIEW_BYTES",
    "OVERVIEW_SIDE",
    "OVERVIEW_VOXELS",
    "DisplayLevel",
    "display_axes",
    "display_levels",
    "overview_strides",
    "read_cost",
]


#: The pyramid stops at the first level whose larger side is at most this.
COARSEST_SIZE = 512
#: Most bytes of the file the 3D overview (the coarsest level) reads.
OVERVIEW_BYTES = 128 << 20
#: Most voxels in the 3D overview: napari uploads it as one 3D texture.
OVERVIEW_VOXELS = 1 << 25
#: Longest side of the 3D overview (``GL_MAX_3D_TEXTURE_SIZE`` is often 2048).
OVERVIEW_SIDE = 2048

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
    view_cache : bool
        Read views that are not XY from the image's view cache while it is
        valid (:mod:`.cached_views`); False for labels (a mean of labels is
        no label).

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
        *,
        view_cache: bool = True,
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
        self._view_cache = bool(view_cache)
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
        view._view_cache = parent._view_cache
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
        kept = [n for n, i in enumerate(self._index) if isinstance(i, range)]
        ranges, drop = normalize_key(key, self.shape, negative_steps=True)
        index = list(self._index)
        for axis, r, d in zip(kept, ranges, drop, strict=True):
            current = index[axis]
            assert isinstance(current, range)
            index[axis] = current[r.start if isinstance(d, int) else as_slice(r)]
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
        cached = None
        # a zoomed-out XY plane: block means of the cache (see read_cached)
        coarse_xy = self._factor > 1 and len(zs) == 1 < min(len(rows), len(cols))
        if out.size and self._view_cache and (_wants_cache(self._index) or coarse_xy):
            # YZ planes (rolled dims) and 3D: from the view cache if valid
            (tr, flip_t), (zr, flip_z) = _ascending(t_idx), _ascending(z_idx)
            cached = read_cached(
                self._image, tr, zr, rows, cols,
                tuple(self._channels[s] for s in ss), self._factor, self._zfactor,
                coarse_xy,
            )  # fmt: skip
            if cached is not None:
                out = cached[:: -1 if flip_t else 1, :: -1 if flip_z else 1]
            elif len(cols) == 1:  # a YZ plane, from the file
                uncached_yz_read(self._image)
        if out.size and cached is None:
            if len(rows) == 1 and len(zs) > 1:
                prefetch_xz(
                    self._image, ts, [self._channels[s] for s in ss], zs,
                    rows.start, cols,
                )  # fmt: skip
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
            token = token_of(image)
        if token is None:

            def read_part(t: int, z: int) -> np.ndarray:
                return image.read_region(
                    t, c, z, rows.start, len(rows), rows.step,
                    cols.start, len(cols), cols.step,
                )  # fmt: skip

            return read_part
        # A strided level: read whole planes through the cache, then crop.
        version = version_of(image)
        crop = tuple(_level_slice(r, f) for r in (rows, cols))

        def read_cached(t: int, z: int) -> np.ndarray:
            key = (token, c, f, t, z)
            plane = plane_cache.get(key, version)
            finer = f // 2
            while plane is None and finer >= 2:
                # napari reads the view's level, then the coarsest level for
                # the thumbnail: derive it from the finer plane, no I/O.
                cached = plane_cache.get((token, c, finer, t, z), version)
                if cached is not None:
                    step = f // finer
                    plane = np.ascontiguousarray(cached[::step, ::step])
                    plane_cache.put(key, version, plane)
                finer //= 2
            if plane is None:
                plane = image.read_region(t, c, z, 0, len(full_y), f, 0, len(full_x), f)
                plane_cache.put(key, version, plane)
            return plane[crop]

        return read_cached


def _wants_cache(index: tuple[_Index, ...]) -> bool:
    """Whether a view (t, z, y, x, colour) is read from the view cache: z is
    not one plane and x is one column (a YZ plane) or y more than one row
    (3D).
    An XZ plane (y fixed) is one row of each plane: the file's rows are read
    as they lie, which no chunked copy beats (measured: docs/benchmarks.md).
    """
    # napari asks for a one-element range where it will show one index
    z, y, x = (isinstance(i, int) or len(i) == 1 for i in index[1:4])
    return not z and (x or not y)


def _level_slice(r: range, factor: int) -> slice:
    """Full-resolution indices ``r`` as a slice of a level strided by ``factor``."""
    step = max(1, r.step // factor)  # a single index may carry step 1
    start = r.start // factor
    return slice(start, start + len(r) * step, step)


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
    view_cache: bool = True,
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

    With ``view_cache`` (labels: False) and a valid view cache, the 3D
    overview is on the grid of one of the cache's mean levels and views
    that are not XY read the cache (see :class:`DisplayLevel`).

    Sizes strictly decrease, as napari requires.  ``channel`` is as for
    :class:`DisplayLevel` (a tuple for a colour axis).
    """
    stored = list(getattr(image, "display_levels", None) or [image])
    opts = {"view_cache": view_cache}
    levels = [DisplayLevel(stored[0], channel, 1, **opts)]
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
            levels.append(DisplayLevel(level_image, channel, 1, **opts))
    coarsest = levels[-1].image
    y, x = coarsest.shape[3], coarsest.shape[4]
    factor = 1
    while max(-(-y // factor), -(-x // factor)) > COARSEST_SIZE:
        factor *= 2
        levels.append(DisplayLevel(coarsest, channel, factor, **opts))
    strides = overview_strides(
        coarsest,
        factor,
        OVERVIEW_BYTES if overview_bytes is None else overview_bytes,
        OVERVIEW_VOXELS if overview_voxels is None else overview_voxels,
        colours=len(channel) if isinstance(channel, tuple) else 1,
    )
    if strides is not None and view_cache:
        # with a view cache: an overview on the grid of one of its mean levels
        strides = cache_overview(
            coarsest, factor, overview_voxels or OVERVIEW_VOXELS, OVERVIEW_SIDE,
            len(channel) if isinstance(channel, tuple) else 1,
        ) or strides  # fmt: skip
    if strides is not None:
        zfactor, factor = strides
        levels.append(DisplayLevel(coarsest, channel, factor, zfactor, **opts))
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
        cost = nz * read_cost(image, ny, f, nx, f) * colours
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


def read_cost(image: Any, ny: int, sy: int, nx: int, sx: int) -> int:
    """Bytes ``image.read_region`` reads for ``ny`` rows and ``nx`` columns:
    its storage's :meth:`~napari_diskimage.storage.Storage.read_cost`, or
    the span of the rows for an image-like without a storage."""
    storage = getattr(image, "storage", None)
    if storage is not None:
        return int(storage.read_cost(ny, sy, nx, sx))
    itemsize = np.dtype(image.dtype).itemsize
    return max(1, ny) * ((nx - 1) * sx * itemsize + itemsize)
