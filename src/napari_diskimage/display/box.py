"""Full-resolution 3D boxes: a part of a volume shown in 3D at full resolution.

napari renders 3D from the coarsest level of a layer, which for a large
volume is the bounded 3D overview (:func:`.levels.display_levels`):
strided in z, y and x.  To look at a region in detail, :func:`fit_box`
turns "the region in view and some planes around the current slice" into a
:class:`Box` within a voxel budget, and :func:`iter_read_box` reads exactly
that box (from the view cache when it is valid, else from the file
through the storage's ``read_box``: the box's rows, not the rows around
it), a slab of planes at a time, with progress and cancellation like every long
operation of the core.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from .._diskimage import DiskImage
from .._errors import closed_error
from .._steps import run_steps
from .levels import OVERVIEW_SIDE

__all__ = ["BOX_VOXELS", "Box", "fit_box", "iter_read_box", "read_box"]

#: Most voxels of a full-resolution 3D box (512^3: 256 MiB of uint16).
BOX_VOXELS = 512**3


@dataclass(frozen=True)
class Box:
    """A box of one channel at one time point: half-open (start, stop) ranges
    of full-resolution voxels in z, y and x."""

    t: int
    c: int
    z: tuple[int, int]
    y: tuple[int, int]
    x: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(nz, ny, nx): the shape of the array :func:`read_box` returns."""
        return tuple(b - a for a, b in (self.z, self.y, self.x))  # type: ignore[return-value]

    @property
    def voxels(self) -> int:
        return math.prod(self.shape)

    @property
    def offset(self) -> tuple[int, int, int]:
        """The box's first voxel (z, y, x) in the volume."""
        return (self.z[0], self.y[0], self.x[0])

    def __str__(self) -> str:
        nz, ny, nx = self.shape
        return (
            f"{nx} x {ny} x {nz} voxels at x {self.x[0]}..{self.x[1] - 1}, "
            f"y {self.y[0]}..{self.y[1] - 1}, z {self.z[0]}..{self.z[1] - 1}"
        )


def _clip(lo: float, hi: float, size: int) -> tuple[int, int]:
    return max(0, math.floor(lo)), min(size, math.ceil(hi))


def _shrink(lo: int, hi: int, n: int) -> tuple[int, int]:
    """``n`` indices centred in ``lo..hi``."""
    start = lo + (hi - lo - n) // 2
    return start, start + n


def fit_box(
    image: DiskImage,
    *,
    y: tuple[float, float],
    x: tuple[float, float],
    z: int | tuple[int, int],
    t: int = 0,
    c: int = 0,
    max_voxels: int = BOX_VOXELS,
    max_side: int = OVERVIEW_SIDE,
) -> tuple[Box, list[str]]:
    """The box of ``image`` to show in 3D, and what was changed to fit it.

    ``y`` and ``x`` are the region in view (full-resolution pixel
    coordinates, may reach outside the image); ``z`` is either the current
    slice, around which as many planes as the budget allows are taken, or
    an explicit ``(first, last)`` range (inclusive).  The box is clipped to
    the volume, each side to ``max_side`` and the whole to ``max_voxels``
    voxels: first fewer planes (around the centre of the range), then a
    smaller region (around the centre of the view), keeping at least 16
    planes or all there are.  Each change is described in the returned
    messages.

    Raises
    ------
    ValueError
        The volume has a single z plane (3D makes no sense), the region is
        outside the volume, or ``t``/``c`` are out of range.
    """
    sizes = dict(zip("tczyx", image.shape, strict=True))
    where = str(image.path)
    if sizes["z"] < 2:
        raise ValueError(
            f"{where!r} has a single z plane ({sizes['x']} x {sizes['y']}): "
            "there is no volume to show in 3D; browse it in 2D instead"
        )
    for name, value in (("t", t), ("c", c)):
        if not 0 <= value < sizes[name]:
            raise ValueError(
                f"{name} = {value} is outside 0..{sizes[name] - 1} in {where!r}"
            )
    messages: list[str] = []
    yr, xr = _clip(*y, sizes["y"]), _clip(*x, sizes["x"])
    if isinstance(z, tuple):
        zr = (max(0, int(z[0])), min(sizes["z"], int(z[1]) + 1))
        explicit_z = True
    else:
        zc = min(max(int(z), 0), sizes["z"] - 1)
        zr = (zc, zc + 1)
        explicit_z = False
    if yr[1] <= yr[0] or xr[1] <= xr[0] or zr[1] <= zr[0]:
        raise ValueError(
            f"the region x {x[0]:.0f}..{x[1]:.0f}, y {y[0]:.0f}..{y[1]:.0f}, "
            f"z {zr[0]}..{zr[1] - 1} is outside the volume of {where!r} "
            f"({sizes['x']} x {sizes['y']} x {sizes['z']}); pan the view onto "
            "the image"
        )
    for axis, name in ((0, "y"), (1, "x")):
        r = (yr, xr)[axis]
        if r[1] - r[0] > max_side:
            messages.append(
                f"the view is {r[1] - r[0]} pixels in {name}, more than the 3D "
                f"texture limit of {max_side}: the box keeps its middle "
                f"{max_side}"
            )
            if axis == 0:
                yr = _shrink(*yr, max_side)
            else:
                xr = _shrink(*xr, max_side)
    area = (yr[1] - yr[0]) * (xr[1] - xr[0])
    min_planes = min(16, sizes["z"])
    if area * min_planes > max_voxels:
        scale = math.sqrt(max_voxels / (area * min_planes))
        ny = max(1, int((yr[1] - yr[0]) * scale))
        nx = max(1, int((xr[1] - xr[0]) * scale))
        messages.append(
            f"the view ({xr[1] - xr[0]} x {yr[1] - yr[0]} pixels) is too large "
            f"for a box of {max_voxels:,} voxels: the box keeps its middle "
            f"{nx} x {ny}; zoom in to choose a smaller region"
        )
        yr, xr = _shrink(*yr, ny), _shrink(*xr, nx)
        area = ny * nx
    planes = max(1, min(sizes["z"], max_voxels // area, max_side))
    if not explicit_z:
        lo = max(0, min(zr[0] - planes // 2, sizes["z"] - planes))
        zr = (lo, lo + planes)
    elif zr[1] - zr[0] > planes:
        messages.append(
            f"z {zr[0]}..{zr[1] - 1} holds {zr[1] - zr[0]} planes of this "
            f"region, more than the budget of {max_voxels:,} voxels allows: "
            f"the box keeps the middle {planes}"
        )
        zr = _shrink(*zr, planes)
    return Box(t=int(t), c=int(c), z=zr, y=yr, x=xr), messages


#: Most bytes of one read of a box (a slab of planes) from the file.
SLAB_BYTES = 32 << 20


def iter_read_box(
    image: DiskImage, box: Box
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Read ``box`` a slab of planes at a time; yields ``(bytes done, bytes
    total)``.

    Returns the (nz, ny, nx) array.  While the image has a valid view cache
    (:func:`~napari_diskimage.view_cache`) the box comes from it, in slabs
    as deep as its chunks (a few chunks, not a row per plane); otherwise
    from the file through the storage's ``read_box`` (a mapped file: the
    box's rows only, with ``preadv``), slabs of at most
    :data:`SLAB_BYTES`.
    """
    from .cached_views import cache_levels

    nz, ny, nx = box.shape
    itemsize = np.dtype(image.dtype).itemsize
    out = np.empty(box.shape, dtype=image.dtype)
    plane_bytes = ny * nx * itemsize
    total = nz * plane_bytes
    yield (0, total)
    if image.closed:
        raise closed_error(image.path)
    levels = cache_levels(image)
    if levels:
        from ..storage.zarr_array import ZarrStorage

        storage = levels[0][0].storage
        assert isinstance(storage, ZarrStorage)  # a view cache is OME-Zarr
        depth = int(storage.zarr_array.chunks[-3])  # its chunks' depth
    else:
        storage = image.storage
        depth = max(1, SLAB_BYTES // max(1, plane_bytes))
    z = box.z[0]
    while z < box.z[1]:
        stop = min(box.z[1], (z // depth + 1) * depth)  # chunk-aligned slabs
        part = storage.read_box(
            [range(box.t, box.t + 1), range(box.c, box.c + 1), range(z, stop),
             range(*box.y), range(*box.x)]
        )  # fmt: skip
        out[z - box.z[0] : stop - box.z[0]] = part[0, 0]
        z = stop
        yield ((z - box.z[0]) * plane_bytes, total)
    return out


def read_box(image: DiskImage, box: Box) -> np.ndarray:
    """The pixels of ``box`` (see :func:`iter_read_box`)."""
    return run_steps(iter_read_box(image, box), None)
