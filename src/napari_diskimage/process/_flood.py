"""Watershed flooding of a block from its markers (numba).

The priority flood of ``skimage.segmentation.watershed(image, markers,
mask=mask, connectivity=c)`` (Beucher and Meyer; skimage's
``heap_watershed``): every marker voxel enters a heap keyed by (value, age);
the lowest is popped and each unlabelled neighbour inside the mask takes
its label and enters the heap with the larger of its own value and the
popped key (the flood's level) and the next age.  The
ties of equal keys go in order of arrival and the neighbours are visited
in skimage's order, so one block gives skimage's labels.

Memory: the float32 image, the uint32 labels (filled in place) and a heap
of 12 bytes an item (int32 ages and voxel indices when a block has fewer
than 2^31 voxels), against ~60 bytes a voxel for skimage (float64 image,
int64 markers and padded copies), so the watershed split can afford
larger blocks.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _smaller(keys: np.ndarray, ages: np.ndarray, a: int, b: int) -> bool:
    return keys[a] < keys[b] or (keys[a] == keys[b] and ages[a] < ages[b])


@njit(nogil=True, cache=True)
def _swap(
    keys: np.ndarray, ages: np.ndarray, items: np.ndarray, a: int, b: int
) -> None:
    keys[a], keys[b] = keys[b], keys[a]
    ages[a], ages[b] = ages[b], ages[a]
    items[a], items[b] = items[b], items[a]


@njit(nogil=True, cache=True)
def _push(
    keys: np.ndarray, ages: np.ndarray, items: np.ndarray, size: int,
    key: float, age: int, item: int,
) -> int:  # fmt: skip
    """skimage's heappush: up while strictly smaller than the parent."""
    keys[size], ages[size], items[size] = key, age, item
    child = size
    while child > 0:
        parent = (child + 1) // 2 - 1
        if not _smaller(keys, ages, child, parent):
            break
        _swap(keys, ages, items, parent, child)
        child = parent
    return size + 1


@njit(nogil=True, cache=True)
def _pop(keys: np.ndarray, ages: np.ndarray, items: np.ndarray, size: int) -> int:
    """skimage's heappop without the copy out (read the root first):
    the last item to the root, down while a child is strictly smaller."""
    size -= 1
    if size == 0:
        return 0
    keys[0], ages[0], items[0] = keys[size], ages[size], items[size]
    i = 0
    smallest = 0
    while True:
        left = 2 * i + 1
        right = left + 1
        if left >= size:
            break
        if _smaller(keys, ages, left, i):
            smallest = left
        if right < size and _smaller(keys, ages, right, smallest):
            smallest = right
        if smallest == i:
            break
        _swap(keys, ages, items, i, smallest)
        i = smallest
    return size


def flood(image: np.ndarray, labels: np.ndarray, connectivity: int) -> None:
    """Floods ``labels`` (z, y, x) uint32, nonzero on the markers, in place,
    in increasing ``image`` (float32) order; voxels where ``image`` is NaN
    are outside the mask and stay as they are.  ``connectivity``: a
    neighbour differs by at most this many coordinates (1: faces)."""
    capacity = _inside(image) + 1
    index = np.int32 if image.size < 2**31 - 1 else np.int64  # 32 bits: memory
    keys = np.empty(capacity, np.float32)
    ages = np.empty(capacity, index)
    items = np.empty(capacity, index)
    _flood(image, labels, connectivity, keys, ages, items)


@njit(nogil=True, cache=True)
def _inside(image: np.ndarray) -> int:
    n = 0
    nz, ny, nx = image.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if image[z, y, x] == image[z, y, x]:
                    n += 1
    return n


@njit(nogil=True, cache=True)
def _flood(
    image: np.ndarray,
    labels: np.ndarray,
    connectivity: int,
    keys: np.ndarray,
    ages: np.ndarray,
    items: np.ndarray,
) -> None:
    nz, ny, nx = image.shape
    offsets = []  # skimage's order: nearer first, then by raveled offset
    for near in range(1, connectivity + 1):
        for dz in range(-1, 2):
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if abs(dz) + abs(dy) + abs(dx) == near:
                        offsets.append((dz, dy, dx))
    size = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                v = image[z, y, x]
                if labels[z, y, x] and v == v:
                    size = _push(keys, ages, items, size, v, 0, (z * ny + y) * nx + x)
    age = 0
    while size > 0:
        p = items[0]
        level = keys[0]
        size = _pop(keys, ages, items, size)
        z, rem = divmod(p, ny * nx)
        y, x = divmod(rem, nx)
        label = labels[z, y, x]
        for dz, dy, dx in offsets:
            zz, yy, xx = z + dz, y + dy, x + dx
            if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                continue
            v = image[zz, yy, xx]
            if v != v or labels[zz, yy, xx]:
                continue
            age += 1
            labels[zz, yy, xx] = label
            # the flood's level: a voxel below it is reached at it
            size = _push(
                keys, ages, items, size, max(v, level), age, (zz * ny + yy) * nx + xx
            )
