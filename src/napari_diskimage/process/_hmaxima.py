"""The h-maxima of a block, by one union-find over its voxels (numba).

``skimage.morphology.h_maxima(image, h)`` keeps the voxels of the regional
maxima (plateaus, all 3^ndim neighbours) whose *dynamic* is at least ``h``:
the depth one must descend from the maximum before reaching a strictly
higher voxel.  skimage computes it as a grey reconstruction by dilation of
``image - h`` under ``image``, which sorts 2 x the voxels in float64 and
holds ~100 bytes a voxel; the watershed split spent most of its time
there.

The same set comes from the component tree: add the voxels from the
highest value down, joining each to its added neighbours (union-find).
A component's peak is its highest value.  When a voxel of value ``v``
joins a component to one with a strictly higher peak, the lower one's
maximum dies at level ``v``: its dynamic is ``peak - v``.  Components of
equal peaks joined below their peak keep one shared fate, as in the
reconstruction, where an equal peak does not lower the other.  A maximum
that never dies (the highest) is kept.  ``peak - v >= h`` is evaluated in
float64 as skimage's ``image - reconstruction >= h`` is, and gives the
same voxels (``tests/test_watershed.py`` checks it on images with
plateaus and ties).  Memory: ~33 bytes a voxel.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(nogil=True, cache=True)
def _h_maxima(
    flat: np.ndarray,
    shape: tuple[int, int, int],
    order: np.ndarray,
    h: float,
    lowest: float,
) -> np.ndarray:
    nz, ny, nx = shape
    n = flat.size
    parent = np.full(n, -1, np.int32)  # components; -1: not added yet
    top = np.empty(n, np.int32)  # a root's voxel of highest value
    current = np.empty(n, np.int32)  # a root's live maximum (its group)
    group = np.full(n, -1, np.int32)  # maxima; -1: voxel on no maximum
    death = np.empty(n, np.float32)  # a group root's death level
    roots = np.empty(27, np.int32)
    inf = np.float32(np.inf)
    for k in range(order.size - 1, -1, -1):
        p = order[k]
        v = flat[p]
        z, rem = divmod(p, ny * nx)
        y, x = divmod(rem, nx)
        count = 0
        highest = v
        for dz in range(-1, 2):
            zz = z + dz
            if zz < 0 or zz >= nz:
                continue
            for dy in range(-1, 2):
                yy = y + dy
                if yy < 0 or yy >= ny:
                    continue
                for dx in range(-1, 2):
                    xx = x + dx
                    if xx < 0 or xx >= nx:
                        continue
                    q = (zz * ny + yy) * nx + xx
                    if parent[q] < 0:
                        continue
                    r = _find(parent, q)
                    seen = False
                    for j in range(count):
                        if roots[j] == r:
                            seen = True
                            break
                    if not seen:
                        roots[count] = r
                        count += 1
                        highest = max(highest, flat[top[r]])
        parent[p] = p
        top[p] = p
        live = -1
        if highest == v:  # p is on a plateau at its component's peak
            group[p] = p
            death[p] = inf
            live = p
        for j in range(count):
            r = roots[j]
            g = _find(group, current[r])
            if flat[top[r]] < highest:
                death[g] = v  # joins a higher peak at level v
            elif live < 0:
                live = g
                top[p] = top[r]
            elif g != live:
                group[g] = live
            parent[r] = p
        current[p] = live
    # the voxels of the lowest value (not in ``order``) join everything:
    # the box is connected; every peak below the highest dies there
    highest = flat[order[order.size - 1]]
    for p in order:
        if parent[p] == p and flat[top[p]] < highest:
            death[_find(group, current[p])] = lowest
    out = np.zeros(n, np.uint8)
    for p in range(n):
        if group[p] >= 0:
            d = death[_find(group, p)]
            if d == inf or np.float64(flat[p]) - np.float64(d) >= h:
                out[p] = 1
    return out


def h_maxima(values: np.ndarray, h: float) -> np.ndarray:
    """``skimage.morphology.h_maxima(values, h)`` of a float32 (z, y, x)
    array (a 2D image as (1, y, x)): uint8, 1 on the maxima of dynamic
    >= ``h``."""
    values = np.ascontiguousarray(values, np.float32)
    flat = values.ravel()
    if flat.size == 0 or h > float(flat.max()) - float(flat.min()):
        return np.zeros(values.shape, np.uint8)
    lowest = flat.min()
    above = np.flatnonzero(flat > lowest).astype(np.int32)
    # ascending values (the order among equal values does not matter)
    order = above[np.argsort(flat[above], kind="stable")]
    shape = (values.shape[0], values.shape[1], values.shape[2])
    found = _h_maxima(flat, shape, order, float(h), float(lowest))
    return found.reshape(values.shape)
