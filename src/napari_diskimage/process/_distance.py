"""Distance maps and local thickness, exact out of core.

The Euclidean distance transform is computed in separable passes (see
``_kernels``): pass 1 reads the mask and writes, for every voxel, the
squared distance to the nearest zero along x (and along y too when whole
(y, x) planes fit in a block) into the float32 output; the next passes
read tiles of whole lines along y, then z, from the output, take the lower
envelope of parabolas along that axis and write the tile back in place
(tiles are disjoint); the last pass writes the square root.  No pass needs
a halo or a neighbouring block, so the result is exact at any block size
and memory holds a few tiles whatever the size of the volume.

Local thickness needs, for every radius r, the voxels within r of a voxel
whose distance is at least r: a halo of the largest radius in the distance
map, which is known once the distance map is written.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from .._diskimage import DiskImage
from .._geometry import Geometry
from .._steps import Steps
from ._blocks import block_grid, trim, user_blocks
from ._checks import check_image, check_mask, mask_values, name_of, shape_of
from ._engine import Cancelled, Run
from ._registry import _Block, operation
from ._tasks import BlockWriter, BoxReader, new_output

#: float32 bytes of a tile of whole lines in the distance passes.
DISTANCE_BLOCK_BYTES = 8 << 20
#: float32 bytes of a local-thickness block with its halo.
THICKNESS_BLOCK_BYTES = 8 << 20
#: Columns of a tile of the y and z passes (as the engine's TILE_X).
_TILE_X = 1024
#: Side of the cells of :class:`CellMaxima` (a block's halo is found from them).
CELL = 16

Box = tuple[tuple[int, int], ...]


# --- parameters ----------------------------------------------------------------
def _spacing(mask: Any, spacing: Any, what: str) -> tuple[float, float, float]:
    """(z, y, x) spacing: the given one (a number, (y, x) or (z, y, x)) or
    the image's own."""
    ndim = 3 if shape_of(mask)[2] > 1 else 2
    if spacing is None:
        values = list(getattr(mask, "spacing", (1.0, 1.0, 1.0)))[-3:]
        values = [1.0] * (3 - len(values)) + values
    elif isinstance(spacing, (numbers.Real, np.number)) and not isinstance(
        spacing, bool
    ):
        values = [spacing] * 3
    elif (
        isinstance(spacing, Sequence)
        and not isinstance(spacing, str)
        and len(spacing) in (2, 3)
        and (len(spacing) == 3 or ndim == 2)
    ):
        values = [1.0] * (3 - len(spacing)) + list(spacing)
    else:
        raise TypeError(
            f"{what}: spacing must be a number or (z, y, x) numbers "
            f"((y, x) for a 2D image), got {spacing!r}"
        )
    out = []
    for axis, v in zip("zyx", values, strict=True):
        if isinstance(v, bool) or not isinstance(v, (numbers.Real, np.number)):
            raise TypeError(f"{what}: spacing along {axis} must be a number, got {v!r}")
        if not math.isfinite(float(v)) or float(v) <= 0:
            raise ValueError(
                f"{what}: spacing along {axis} must be a finite number greater "
                f"than 0, got {v!r}"
            )
        out.append(float(v))
    return out[0], out[1], out[2]


# --- the passes --------------------------------------------------------------
class _Pass:
    """One pass: blocks spanning whole lines along ``axes`` (of z, y, x)."""

    def __init__(self, chunks: tuple[int, ...], axes: str, first: bool, last: bool):
        self.chunks = chunks  # (t, c, z, y, x)
        self.axes = axes  # e.g. "xy": the 1D passes done, in order
        self.first = first  # reads the mask (else the squared distances)
        self.last = last  # writes square roots


def plan_passes(shape: Sequence[int], user: tuple[int, int, int] | None) -> list[_Pass]:
    """The passes over a (t, c, z, y, x) volume and their blocks."""
    _t, _c, nz, ny, nx = (int(n) for n in shape)
    voxels = DISTANCE_BLOCK_BYTES // 4
    passes: list[_Pass] = []
    has_z = nz > 1
    if user is None and ny * nx <= 4 * voxels:  # whole planes: x and y at once
        # (up to 4 x the tile size: a y pass on tiles of partial rows
        # reads them through the memory map, slow under a memory cap)
        cz = max(1, min(nz, voxels // (ny * nx)))
        passes.append(_Pass((1, 1, cz, ny, nx), "xy", True, not has_z))
    else:
        if user is None:
            bz, by, bx = 1, max(1, voxels // nx), max(1, min(_TILE_X, voxels // ny))
        else:
            bz, by, bx = user
        passes.append(_Pass((1, 1, min(bz, nz), min(by, ny), nx), "x", True, False))
        if ny > 1 or not has_z:
            passes.append(
                _Pass((1, 1, min(bz, nz), ny, min(bx, nx)), "y", False, not has_z)
            )
    if has_z:
        if user is None:
            # whole rows: each plane of a tile is one contiguous read (tiles
            # of partial rows are copied from the memory map, whose
            # readahead re-read the file ~30 times under a memory cap)
            bx = nx
            by = max(1, min(ny, voxels // (nz * nx)))
            if nz * nx > voxels:  # a deep stack of long rows: narrower tiles
                bx = max(1, min(nx, voxels // nz))
        else:
            _, by, bx = user
        passes.append(_Pass((1, 1, nz, min(by, ny), min(bx, nx)), "z", False, True))
    return passes


def _pass_block(
    reader: BoxReader,
    writer: BlockWriter,
    box: Box,
    step: _Pass,
    spacing: tuple[float, float, float],
    what: str,
) -> np.ndarray:
    """One block of a pass; after the last pass returns the largest value
    it wrote per cell (:func:`cell_maxima`; empty before)."""
    from . import _kernels

    sz, sy, sx = spacing
    block = reader.read(box)[0, 0]
    if step.first:
        mask = np.ascontiguousarray(mask_values(block, box, reader.name, what))
        values = np.empty(mask.shape, np.float32)
        _kernels.rows_from_mask(
            mask.reshape(-1, mask.shape[-1]), values.reshape(-1, mask.shape[-1]), sx
        )
        del mask
        if "y" in step.axes:
            _along(values, 1, sy, step.last and step.axes[-1] == "y")
    else:
        values = block  # a fresh array from the file: computed in place
        if not (
            values.dtype == np.float32
            and values.flags.writeable
            and values.flags.c_contiguous
        ):
            values = np.array(block, dtype=np.float32, copy=True)
        axis = {"y": 1, "z": 0}[step.axes]
        _along(values, axis, sz if axis == 0 else sy, step.last)
    if step.last and step.first and step.axes == "x":  # a 1D line
        np.sqrt(values, out=values)
    writer.write(box, values[None, None])
    found = cell_maxima(values, box) if step.last else np.zeros(0, np.float32)
    del values, block
    trim()
    return found  # the largest distance per cell (inf: no background)


def cell_maxima(values: np.ndarray, box: Box) -> np.ndarray:
    """The largest value of each :data:`CELL`-sided cube cell of the volume
    that meets ``box`` (whose pixels are ``values``, (z, y, x)): partial
    cells are combined by the caller (``np.maximum``)."""
    out = values
    for axis, (a, b) in enumerate(box[2:]):
        starts = [0, *range((a // CELL + 1) * CELL - a, b - a, CELL)]
        out = np.maximum.reduceat(out, starts, axis=axis)
    return out


class CellMaxima:
    """The largest distance in each cell of :data:`CELL`^3 voxels of a
    (t, c, z, y, x) volume, gathered from the last distance pass: a coarse
    grid (1 / 4096 of the volume) from which each block's halo is taken."""

    def __init__(self, shape: Sequence[int]) -> None:
        t, c, z, y, x = (int(n) for n in shape)
        self.shape = (t, c, z, y, x)
        self.grid = np.zeros((t, c, *(-(-n // CELL) for n in (z, y, x))), np.float32)

    def add(self, box: Box, part: np.ndarray) -> None:
        (t0, _), (c0, _) = box[0], box[1]
        where = tuple(
            slice(a // CELL, a // CELL + n)
            for (a, _), n in zip(box[2:], part.shape, strict=True)
        )
        view = self.grid[t0, c0][where]
        np.maximum(view, part, out=view)

    def reach(self, box: Box, largest: float) -> int:
        """The halo ``box`` needs for local thickness: the largest
        floor(distance) of the cells whose nearest voxel lies closer to the
        box than that distance (a ball of radius r centred in such a cell
        can cover a voxel of the box; no other can).  ``largest``: the
        largest distance (cells farther than it are not looked at)."""
        near, g2 = self._near(box, math.ceil(largest))
        near = np.floor(near)
        hits = near[g2 < near**2]
        return int(hits.max()) if hits.size else 0

    def largest_within(self, box: Box, within: int) -> float:
        """The largest distance (not floored) of the cells whose nearest
        voxel lies closer than ``within`` to ``box``."""
        near, g2 = self._near(box, within)
        hits = near[g2 < within**2]
        return float(hits.max()) if hits.size else 0.0

    def _near(self, box: Box, span: int) -> tuple[np.ndarray, np.ndarray]:
        """The cells within ``span`` voxels of ``box`` (a view of the grid)
        and the squared gap from each to the box, in voxels."""
        (t0, _), (c0, _) = box[0], box[1]
        gaps = []
        window: list[slice] = []
        for (a, b), n, cells in zip(
            box[2:], self.shape[2:], self.grid.shape[2:], strict=True
        ):
            k0 = max(0, (a - span) // CELL)
            k1 = min(cells, (b - 1 + span) // CELL + 1)
            k = np.arange(k0, k1)
            lo, hi = k * CELL, np.minimum(n, (k + 1) * CELL) - 1
            gaps.append(np.maximum(0, np.maximum(lo - (b - 1), a - hi)))
            window.append(slice(k0, k1))
        g2 = (
            gaps[0][:, None, None] ** 2
            + gaps[1][None, :, None] ** 2
            + gaps[2][None, None, :] ** 2
        )
        return self.grid[t0, c0][tuple(window)], g2

    def typical(self) -> int:
        """A halo most blocks need (to size blocks): the 90th percentile
        of the cells' largest floor(distance)."""
        finite = self.grid[np.isfinite(self.grid)]
        return int(np.percentile(np.floor(finite), 90)) if finite.size else 0


def _along(values: np.ndarray, axis: int, spacing: float, root: bool) -> None:
    """The envelope pass along ``axis`` of a 3D float32 block, in place."""
    from . import _kernels

    if values.shape[axis] == 1:
        if root:
            np.sqrt(values, out=values)
        return
    shape = values.shape
    n_a = math.prod(shape[:axis])
    n_b = math.prod(shape[axis + 1 :])
    _kernels.envelope(values.reshape(n_a, shape[axis], n_b), spacing, root)


def distance_passes(
    run: Run,
    mask: Any,
    target: DiskImage,
    spacing: tuple[float, float, float],
    user: tuple[int, int, int] | None,
    what: str,
    cells: CellMaxima | None = None,
) -> Generator[tuple[int, int], None, float]:
    """Steps of writing the distance map of ``mask`` into ``target``;
    returns the largest distance; ``cells`` gathers the largest per cell."""
    import dask

    shape = shape_of(mask)
    passes = plan_passes(shape, user)
    writer = BlockWriter(target, run.token)
    largest = 0.0
    for step in passes:
        reader = BoxReader(mask if step.first else target, run.token)
        task = dask.delayed(_pass_block, pure=False)
        boxes = block_grid(shape, step.chunks)
        tasks = [task(reader, writer, box, step, spacing, what) for box in boxes]
        sizes = [math.prod(b - a for a, b in box) * 4 for box in boxes]
        found = yield from run.execute(tasks, sizes)
        if step.last:
            tops = [float(p.max()) for p in found if p.size]
            largest = max((v for v in tops if math.isfinite(v)), default=0.0)
            if cells is not None:
                for box, part in zip(boxes, found, strict=True):
                    cells.add(box, part)
        if run.cancel_event.is_set():
            raise Cancelled(f"{what} was cancelled")
    return largest


def _no_background(mask: Any, what: str) -> ValueError:
    return ValueError(
        f"{what}: {name_of(mask)} has no background (0) voxel, so no voxel has "
        "a distance to one (scipy returns meaningless values then); the mask "
        "must hold at least one 0"
    )


@operation("Distance map (exact EDT)", [], mask_input=True)
def distance(
    mask: Any,
    *,
    spacing: Any = None,
    block_shape: _Block = None,
) -> Run:
    """The distance map of a mask: float32, for every nonzero voxel the exact
    Euclidean distance to the nearest zero voxel (0 on zeros).

    Equals ``scipy.ndimage.distance_transform_edt(mask, sampling=spacing)``
    (within 1e-3, float32) at any block size and any volume size; the
    volume's edge is not background, as in scipy.  Computed in separable
    passes (Felzenszwalb and Huttenlocher 2012): the squared distance
    along x on every row, then the lower envelope of parabolas along y,
    then along z, each pass streaming tiles of whole lines along its axis
    through the output file (which holds the squared distances between
    passes), so memory is a few tiles whatever the size.  IPSDK calls it a
    distance map.

    Parameters
    ----------
    mask : DiskImage or array-like
        0 = background (solid), 1 = foreground (pores); integer or bool.
    spacing : float or (z, y, x) floats, optional
        Voxel size per axis (scipy's ``sampling`` order; (y, x) for a 2D
        image); default: the image's own spacing (1 for arrays).
    block_shape : (x, y, z), optional
        Tile size across the lines of each pass; a pass always reads whole
        lines along its own axis.

    Returns
    -------
    DiskImage
        float32 distances, in the unit of ``spacing``.

    Raises
    ------
    TypeError
        The mask holds floats.
    ValueError
        It holds values other than 0 and 1 (found while running; the
        output is removed: make a mask with :func:`threshold`), it has no 0
        at all (no distance is defined), or a spacing is zero, negative or
        not finite.
    OSError
        The disk-image directory has no room for the output (before any
        work).
    """
    check_image(mask, "distance")
    check_mask(mask, "distance")
    sp = _spacing(mask, spacing, "distance")
    user = user_blocks(block_shape)
    shape = shape_of(mask)
    geometry = Geometry.from_shape(shape, np.float32)
    n_passes = len(plan_passes(shape, user))
    what = f"distance of {name_of(mask)}"
    output = new_output(geometry, what, mask)

    def plan(run: Run) -> Steps:
        yield 0, run.total
        yield from distance_passes(run, mask, run.image, sp, user, "distance")
        if not _has_background(run.image):
            raise _no_background(mask, "distance")
        return run.output

    return Run(output, plan, what, n_passes * geometry.nbytes)


def _has_background(image: DiskImage) -> bool:
    """False when a volume of the distance map is inf everywhere (no 0 in
    the mask): each voxel of a volume is inf then, so its first one tells."""
    t, c = image.shape[:2]
    first = BoxReader(image, "").read(((0, t), (0, c), (0, 1), (0, 1), (0, 1)))
    return bool(np.isfinite(first).all())


# --- local thickness ---------------------------------------------------------
def _thickness_block(
    reader: BoxReader,
    writer: BlockWriter,
    box: Box,
    halo: int,
) -> float:
    """Local thickness of one block, from the distance map with a halo.

    For each integer radius r (largest first), the voxels within a
    distance below r of a voxel whose distance is at least r get r unless
    they have a larger value already: porespy's ``local_thickness_dt``
    with ``smooth=True``, on the block's core.  ``halo``: the block's own
    (:meth:`CellMaxima.reach`): no ball of a larger radius, and no ball
    centred beyond it, reaches the core.
    """
    from . import _kernels

    shape = reader.shape
    ext = [
        (max(0, a - halo), min(n, b + halo))
        for (a, b), n in zip(box, shape, strict=True)
    ]
    ext[0], ext[1] = box[0], box[1]
    floor = reader.read(ext)[0, 0]
    if not (floor.dtype == np.float32 and floor.flags.writeable):
        floor = np.array(floor, np.float32)
    np.floor(floor, out=floor)  # in place: a fresh array from the file
    core = [(a - e0, b - e0) for (a, b), (e0, _) in zip(box[2:], ext[2:], strict=True)]
    result = np.zeros(tuple(b - a for a, b in core), np.float32)
    top = min(halo, int(floor.max())) if floor.size else 0
    for r in range(top, 0, -1):
        # seeds within r of the core: the core grown by r
        sub = tuple(
            slice(max(0, a - r), min(n, b + r))
            for (a, b), n in zip(core, floor.shape, strict=True)
        )
        seeds = floor[sub] >= r
        if not seeds.any():
            continue
        free = np.logical_not(seeds, out=seeds).view(np.uint8)  # C order
        squared = np.empty(free.shape, np.float32)
        _kernels.rows_from_mask(
            free.reshape(-1, free.shape[-1]), squared.reshape(-1, free.shape[-1]), 1.0
        )
        del free, seeds
        _along(squared, 1, 1.0, False)
        _along(squared, 0, 1.0, False)
        inner = tuple(
            slice(a - s.start, b - s.start) for (a, b), s in zip(core, sub, strict=True)
        )
        hit = squared[inner] < r * r
        del squared
        hit &= result == 0
        result[hit] = r
    del floor
    writer.write(box, result[None, None])
    trim()
    return float(top)


def _thickness_chunks(
    shape: Sequence[int], halo: int, user: tuple[int, int, int] | None
) -> tuple[int, int, int, int, int]:
    """Block cores of local thickness: whole rows when the halo is small
    (a block's rows are then contiguous in the distance map's file: cubes
    of partial rows re-read its pages under a memory cap, where the file
    is not cached: 168 M voxels under 160 MiB took 544 s with cubes, 240 s
    with rows, on busy cores), else cubes (less halo work)."""
    if user is not None:
        bz, by, bx = user
    else:
        voxels = THICKNESS_BLOCK_BYTES // 4
        nx = shape[4]
        if shape[2] > 1:
            side = round((voxels / nx) ** 0.5) - 2 * halo  # (z, y) of rows
            if side >= 4 * halo and side >= 8:  # halo work <= 2.25 x
                bz, by, bx = side, side, nx
            else:
                side = max(32, round(voxels ** (1 / 3)) - 2 * halo)
                bz = by = bx = side
        else:
            side = max(64, round(voxels ** (1 / 2)) - 2 * halo)
            bz, by, bx = 1, side, side
    return (1, 1, min(bz, shape[2]), min(by, shape[3]), min(bx, shape[4]))


@operation("Local thickness (pore sizes)", [], mask_input=True)
def local_thickness(
    mask: Any,
    *,
    block_shape: _Block = None,
) -> Run:
    """The local thickness (pore-size map) of a mask, float32 radii in pixels.

    Each foreground voxel gets the radius of the largest ball inside the
    foreground that covers it, over every integer radius with "smooth"
    balls: ``porespy.filters.local_thickness(mask)`` with its defaults
    (for each radius r, largest first, the voxels closer than r to a voxel
    whose distance to the background is at least r get r).  Its histogram
    is the pore-size distribution (:func:`napari_diskimage.measure.
    size_distribution`).  The distance map (exact, see :func:`distance`,
    in pixels: spacing is not used, as in porespy) is written first into
    a scratch file; then each block is computed on itself plus a halo of
    its own halo: the largest radius of the balls that can reach it (from
    the largest distance per cell of 16^3 voxels, gathered as the distance
    map is written), so a volume of small pores needs small halos
    everywhere, and the result is exact: a voxel's value depends only on
    balls whose centre lies within their radius of it.

    Where it may differ from porespy: nowhere by construction (both use
    the exact distance map and the same radii and balls; measured equal
    on every voxel in the tests).  A voxel can differ only where a
    distance is within float32 rounding of a whole number and the two
    distance maps round it to different sides (porespy's ``edt`` package
    and this one both take the square root of an exact integer squared
    distance, so it has not been seen).

    Raises
    ------
    TypeError, ValueError
        As :func:`distance` (not a 0/1 mask, no background).
    """
    check_image(mask, "local_thickness")
    check_mask(mask, "local_thickness")
    user = user_blocks(block_shape)
    shape = shape_of(mask)
    geometry = Geometry.from_shape(shape, np.float32)
    n_passes = len(plan_passes(shape, user)) + 1
    what = f"local thickness of {name_of(mask)}"
    output = new_output(geometry, what, mask)

    def plan(run: Run) -> Steps:
        import dask

        yield 0, run.total
        dt = new_output(geometry, f"distance map for {what}")
        cells = CellMaxima(shape)
        try:
            largest = yield from distance_passes(
                run, mask, dt, (1.0, 1.0, 1.0), user, "local_thickness", cells
            )
            if not _has_background(dt):
                raise _no_background(mask, "local_thickness")
            largest_radius = math.floor(largest)
            chunks = _thickness_chunks(shape, cells.typical(), user)
            reader = BoxReader(dt, run.token)
            writer = BlockWriter(run.image, run.token)
            task = dask.delayed(_thickness_block, pure=False)
            boxes = block_grid(shape, chunks)
            halos = [cells.reach(box, largest) for box in boxes]
            tasks = [
                task(reader, writer, b, h) for b, h in zip(boxes, halos, strict=True)
            ]
            sizes = [math.prod(b - a for a, b in box) * 4 for box in boxes]
            yield from run.execute(tasks, sizes)
            run.info["largest_radius"] = largest_radius
            run.info["halos"], run.info["boxes"] = halos, boxes
        finally:
            dt.close()
        return run.output

    return Run(output, plan, what, n_passes * geometry.nbytes)
