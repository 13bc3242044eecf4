"""Per-block partial statistics of labelled objects, and their merge by id.

A block of labels (z, y, x) is cut into runs: stretches of one label along
x within a row.  Objects in a porous scan are tens of voxels wide, so a
block of 4 M voxels holds a few hundred thousand runs, and everything
geometric is a closed form over a run (its row fixes z and y; x goes from
``x0`` to ``x0 + n - 1``): counts, coordinate sums, second moments and
boxes cost one pass over the runs, not over the voxels.  Only the
intensity statistics need every voxel, as ``ufunc.reduceat`` over the same
runs (one pass over the block each).

Partial statistics are one row per label present in the block: the label
(its own integer type, so ids up to 2**64 - 1 stay exact) and float64
values (sums, minima, maxima; coordinates are exact in float64 up to
2**53).  Rows of several blocks merge by id with a sort, never with an
array indexed by the id: ids near 2**32 (or 2**63) cost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Layout", "block_stats", "merge", "surface_block"]

# Ids spanning at most this many values (or 4 x the runs) in a block are
# mapped to rows through a bincount on ``id - min``; wider spans by a sort.
_DENSE_SPAN = 1 << 20


@dataclass(frozen=True)
class Layout:
    """Which statistics are accumulated, and their columns.

    Columns are named ``n`` (voxels), ``min0..2`` / ``max0..2`` (box over
    z, y, x), ``s0..2`` (coordinate sums), ``s00, s11, s22, s01, s02, s12``
    (second moments), ``si, sii, imin, imax`` (intensity), ``si0..2``
    (intensity-weighted coordinate sums).
    """

    moments: bool = False
    intensity: bool = False
    squares: bool = False
    extrema: bool = False
    weighted: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        cols = ["n", "min0", "min1", "min2", "max0", "max1", "max2", "s0", "s1", "s2"]
        if self.moments:
            cols += ["s00", "s11", "s22", "s01", "s02", "s12"]
        if self.intensity:
            cols += ["si"]
        if self.squares:
            cols += ["sii"]
        if self.extrema:
            cols += ["imin", "imax"]
        if self.weighted:
            cols += ["si0", "si1", "si2"]
        return tuple(cols)

    def index(self, name: str) -> int:
        return self.columns.index(name)

    def kinds(self) -> np.ndarray:
        """Per column: 0 summed, 1 minimum, 2 maximum when merging."""
        kind = {"min0": 1, "min1": 1, "min2": 1, "imin": 1}
        kind.update({"max0": 2, "max1": 2, "max2": 2, "imax": 2})
        return np.array([kind.get(c, 0) for c in self.columns])


def _rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``values`` (sorted) and each value's row among them."""
    lo, hi = values.min(), values.max()
    span = int(hi) - int(lo)
    if span < max(_DENSE_SPAN, 4 * values.size):
        offsets = (values - lo).astype(np.intp)
        present = np.bincount(offsets, minlength=span + 1) > 0
        rows = np.cumsum(present) - 1
        ids = np.flatnonzero(present).astype(values.dtype) + lo
        return ids, rows[offsets]
    ids, inverse = np.unique(values, return_inverse=True)
    return ids, inverse.reshape(-1)


def _empty(layout: Layout, id_dtype: np.dtype) -> np.ndarray:
    return np.zeros(
        0, dtype=[("id", id_dtype), ("v", np.float64, (len(layout.columns),))]
    )


def id_dtype(labels_dtype: np.dtype) -> np.dtype:
    return np.dtype(np.uint64 if labels_dtype.kind in "ub" else np.int64)


def block_stats(
    labels: np.ndarray,
    intensity: np.ndarray | None,
    origin: Sequence[int],
    layout: Layout,
) -> np.ndarray:
    """Partial statistics of the objects of one block of labels (z, y, x).

    ``origin`` is the block's (z, y, x) offset in the image.  Returns a
    structured array: ``id`` (the label) and ``v`` (the columns of
    ``layout``), one row per label > 0 present, sorted by id.
    """
    _nz, ny, nx = labels.shape
    flat = labels.reshape(-1)
    ids_dtype = id_dtype(labels.dtype)
    size = flat.size
    if size == 0:
        return _empty(layout, ids_dtype)
    change = np.empty(size, dtype=bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    change[::nx] = True  # runs stop at the end of a row
    starts = np.flatnonzero(change)
    values = flat[starts]
    keep = values > 0
    if not keep.any():
        return _empty(layout, ids_dtype)
    lengths = np.diff(starts, append=size)
    fg_starts = starts[keep]
    ids, rows = _rows(values[keep])
    k = ids.size
    n = lengths[keep].astype(np.float64)
    row = fg_starts // nx
    x0 = (fg_starts - row * nx).astype(np.float64)
    z = (row // ny).astype(np.float64)
    y = (row - (row // ny) * ny).astype(np.float64)
    z += origin[0]
    y += origin[1]
    x0 += origin[2]
    x1 = x0 + n - 1
    sx = n * x0 + n * (n - 1) / 2

    out = np.empty(
        k, dtype=[("id", ids_dtype), ("v", np.float64, (len(layout.columns),))]
    )
    out["id"] = ids
    v = out["v"]

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(rows, weights=weights, minlength=k)

    v[:, 0] = total(n)
    for col, coord in ((1, z), (2, y), (3, x0)):
        lo = np.full(k, np.inf)
        np.minimum.at(lo, rows, coord)
        v[:, col] = lo
    for col, coord in ((4, z), (5, y), (6, x1)):
        hi = np.full(k, -np.inf)
        np.maximum.at(hi, rows, coord)
        v[:, col] = hi
    v[:, 7] = total(n * z)
    v[:, 8] = total(n * y)
    v[:, 9] = total(sx)
    c = 10
    if layout.moments:
        sxx = n * x0 * x0 + x0 * n * (n - 1) + (n - 1) * n * (2 * n - 1) / 6
        v[:, c] = total(n * z * z)
        v[:, c + 1] = total(n * y * y)
        v[:, c + 2] = total(sxx)
        v[:, c + 3] = total(n * z * y)
        v[:, c + 4] = total(z * sx)
        v[:, c + 5] = total(y * sx)
        c += 6
    if intensity is None:
        return out
    iflat = intensity.reshape(-1)
    si = None
    if layout.intensity or layout.weighted:
        si = np.add.reduceat(iflat, starts, dtype=np.float64)[keep]
    if layout.intensity:
        assert si is not None
        v[:, c] = total(si)
        c += 1
    if layout.squares:
        squares = np.square(iflat, dtype=np.float64)
        v[:, c] = total(np.add.reduceat(squares, starts)[keep])
        del squares
        c += 1
    if layout.extrema:
        lo_runs = np.minimum.reduceat(iflat, starts)[keep].astype(np.float64)
        hi_runs = np.maximum.reduceat(iflat, starts)[keep].astype(np.float64)
        lo = np.full(k, np.inf)
        np.minimum.at(lo, rows, lo_runs)
        hi = np.full(k, -np.inf)
        np.maximum.at(hi, rows, hi_runs)
        v[:, c] = lo
        v[:, c + 1] = hi
        c += 2
    if layout.weighted:
        assert si is not None
        xs = np.arange(origin[2], origin[2] + nx, dtype=np.float64)
        weighted_x = (intensity.reshape(-1, nx) * xs).reshape(-1)
        six = np.add.reduceat(weighted_x, starts)[keep]
        del weighted_x
        v[:, c] = total(z * si)
        v[:, c + 1] = total(y * si)
        v[:, c + 2] = total(six)
    return out


def merge(parts: Sequence[np.ndarray], kinds: np.ndarray) -> np.ndarray:
    """Rows of several blocks merged by id (sums added, boxes widened).

    ``kinds`` says how each column merges (see :meth:`Layout.kinds`).
    """
    parts = [p for p in parts if p.size]
    if not parts:
        return np.zeros(0, dtype=[("id", np.uint64), ("v", np.float64, (len(kinds),))])
    rows = np.concatenate(parts)
    if len(parts) == 1:
        return rows
    order = np.argsort(rows["id"], kind="stable")
    rows = rows[order]
    ids = rows["id"]
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    out = np.empty(first.size, dtype=rows.dtype)
    out["id"] = ids[first]
    values = rows["v"]
    merged = out["v"]
    for kind, ufunc in ((0, np.add), (1, np.minimum), (2, np.maximum)):
        cols = np.flatnonzero(kinds == kind)
        if cols.size:
            merged[:, cols] = ufunc.reduceat(values[:, cols], first, axis=0)
    return out


def merge_into(
    table: np.ndarray | None, rows: np.ndarray, kinds: np.ndarray
) -> np.ndarray:
    """``table`` with ``rows`` merged in; both sorted by id, ids unique.

    Rows of ids already in the table update it in place; new ids are
    inserted in one copy of the table (a merge of the concatenation would
    hold three).
    """
    if table is None or not table.size:
        return rows
    if not rows.size:
        return table
    ids = table["id"]
    pos = np.minimum(np.searchsorted(ids, rows["id"]), ids.size - 1)
    found = ids[pos] == rows["id"]
    at = pos[found]
    values, extra = table["v"], rows["v"][found]
    for kind, ufunc in ((0, np.add), (1, np.minimum), (2, np.maximum)):
        cols = np.flatnonzero(kinds == kind)
        if cols.size:
            block = np.ix_(at, cols)
            values[block] = ufunc(values[block], extra[:, cols])
    new = rows[~found]
    if not new.size:
        return table
    out = np.empty(table.size + new.size, dtype=table.dtype)
    where = np.searchsorted(ids, new["id"]) + np.arange(new.size)
    old = np.ones(out.size, dtype=bool)
    old[where] = False
    out[where] = new
    out[old] = table
    return out


# --- surface area ------------------------------------------------------------
def surface_block(
    labels: np.ndarray, spacing: Sequence[float], id_type: np.dtype
) -> np.ndarray:
    """Marching-cubes surface area of each object's part in a padded block.

    ``labels`` is the block with the halo that makes the cells of
    neighbouring blocks a partition (see ``_measure._surface_task``); every
    cell (2 x 2 x 2 voxels) lies in exactly one block, and the marching
    cubes' triangles of a cell depend only on its 8 voxels, so the areas of
    an object's parts add up to the area of its whole mesh.
    """
    from scipy import ndimage
    from skimage.measure import marching_cubes, mesh_surface_area

    result = np.zeros(0, dtype=[("id", id_type), ("v", np.float64, (1,))])
    flat = labels.reshape(-1)
    fg = flat > 0
    if not fg.any():
        return result
    ids, rows = _rows(flat[fg])
    compact_flat = np.zeros(flat.shape, dtype=np.int32)
    compact_flat[fg] = rows + 1
    compact = compact_flat.reshape(labels.shape)
    boxes = ndimage.find_objects(compact)
    areas = np.zeros(ids.size)
    for i, box in enumerate(boxes):
        if box is None:  # pragma: no cover - every row is present
            continue
        crop = tuple(
            slice(max(0, s.start - 1), min(n, s.stop + 1))
            for s, n in zip(box, labels.shape, strict=True)
        )
        mask = compact[crop] == i + 1
        if mask.all():  # inside the object: no surface in this block
            continue
        verts, faces, _, _ = marching_cubes(
            mask.astype(np.float64), 0.5, spacing=tuple(spacing)
        )
        areas[i] = mesh_surface_area(verts, faces)
    result = np.zeros(ids.size, dtype=result.dtype)
    result["id"] = ids
    result["v"][:, 0] = areas
    return result
