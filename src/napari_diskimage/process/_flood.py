"""Watershed flooding of a block from its markers (numba).

The priority flood of ``skimage.segmentation.watershed(image, markers,
mask=mask, connectivity=c)`` (Beucher and Meyer; skimage's
``heap_watershed``): every marker voxel enters a heap keyed by (value, age);
the lowest is popped and each unlabelled neighbour inside the mask takes
its label and enters the heap with the larger of its own value and the
popped key (the flood's level) and the next age.  The
ties of equal keys go in order of arrival and the neighbours are visited
in skimage's order, so one block gives skimage's labels.

Memory: the float32 image (its bits turned into ordered integers in
place), the uint32 labels (filled in place) and a heap of 12 bytes an
item (a uint64 key of value and age, an int32 voxel index when a block
has fewer than 2^31 voxels), against ~60 bytes a voxel for skimage (float64 image,
int64 markers and padded copies), so the watershed split can afford
larger blocks.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: A voxel outside the mask, in the image's bits made monotonic (NaN).
_OUTSIDE = np.uint32(0xFFFFFFFF)


@njit(nogil=True, cache=True)
def _monotonic(bits: np.ndarray) -> int:
    """float32 bits (in place) to uint32 that order as the floats: negative
    floats reversed, positive ones above them; -0.0 as +0.0 (equal as
    floats); NaN (outside the mask) to :data:`_OUTSIDE`, which no float
    reaches (+inf is 0xFF800000).  Returns the voxels inside the mask (the
    heap's capacity), counted in the same pass."""
    sign = np.uint32(0x80000000)
    inside = 0
    for i in range(bits.size):
        u = bits[i]
        if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
            bits[i] = _OUTSIDE
            continue
        inside += 1
        if u == sign:
            bits[i] = sign
        elif u & sign:
            bits[i] = ~u
        else:
            bits[i] = u | sign
    return inside


@njit(nogil=True, cache=True)
def _push(
    keys: np.ndarray, items: np.ndarray, size: int, key: np.uint64, item: int
) -> int:
    """skimage's heappush: up while strictly smaller than the parent."""
    child = size
    while child > 0:
        parent = (child + 1) // 2 - 1
        if not key < keys[parent]:
            break
        keys[child] = keys[parent]  # the parent down; the item lands once
        items[child] = items[parent]
        child = parent
    keys[child] = key
    items[child] = item
    return size + 1


@njit(nogil=True, cache=True)
def _pop(keys: np.ndarray, items: np.ndarray, size: int) -> int:
    """skimage's heappop without the copy out (read the root first):
    the last item to the root, down while a child is strictly smaller."""
    size -= 1
    if size == 0:
        return 0
    key, item = keys[size], items[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        smallest = left if keys[left] < key else -1
        right = left + 1
        if right < size and keys[right] < (key if smallest < 0 else keys[left]):
            smallest = right
        if smallest < 0:
            break
        keys[i] = keys[smallest]
        items[i] = items[smallest]
        i = smallest
    keys[i] = key
    items[i] = item
    return size


def flood(image: np.ndarray, labels: np.ndarray, connectivity: int) -> None:
    """Floods ``labels`` (z, y, x) uint32, nonzero on the markers, in place,
    in increasing ``image`` (float32, C order) order; voxels where
    ``image`` is NaN are outside the mask and stay as they are.
    ``connectivity``: a neighbour differs by at most this many coordinates
    (1: faces).  ``image`` is used up: its buffer is overwritten (memory).

    A heap key is one uint64, the image value's bits made monotonic above
    the 32-bit age, so a comparison is one integer compare: the order of
    skimage's (value, age) pairs, ties included.
    """
    if image.dtype != np.float32 or not image.flags.c_contiguous:
        raise TypeError("flood: image must be a C-ordered float32 array")
    if labels.dtype != np.uint32 or not labels.flags.c_contiguous:
        raise TypeError("flood: labels must be a C-ordered uint32 array")
    if image.size >= 2**32 - 1:
        raise ValueError(f"flood: a block of {image.size} voxels is too large")
    bits = image.view(np.uint32)
    capacity = _monotonic(bits.reshape(-1)) + 1
    index = np.int32 if image.size < 2**31 - 1 else np.int64  # 32 bits: memory
    keys = np.empty(capacity, np.uint64)
    items = np.empty(capacity, index)
    _flood(bits, labels, connectivity, keys, items)


@njit(nogil=True, cache=True)
def _flood(
    bits3: np.ndarray,
    labels3: np.ndarray,
    connectivity: int,
    keys: np.ndarray,
    items: np.ndarray,
) -> None:
    nz, ny, nx = bits3.shape
    bits, labels = bits3.reshape(-1), labels3.reshape(-1)
    # skimage's order: nearer first, then by raveled offset
    steps = np.empty((26, 3), np.int64)
    offsets = np.empty(26, np.int64)  # the same, in the flat arrays
    m = 0
    for near in range(1, connectivity + 1):
        for dz in range(-1, 2):
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if abs(dz) + abs(dy) + abs(dx) == near:
                        steps[m] = dz, dy, dx
                        offsets[m] = (dz * ny + dy) * nx + dx
                        m += 1
    shift = np.uint64(32)
    size = 0
    for p in range(bits.size):
        v = bits[p]
        if labels[p] and v != _OUTSIDE:  # age 0
            size = _push(keys, items, size, np.uint64(v) << shift, p)
    age = 0
    plane = ny * nx
    while size > 0:
        p = items[0]
        level = keys[0] >> shift
        size = _pop(keys, items, size)
        label = labels[p]
        z, rem = divmod(p, plane)
        y, x = divmod(rem, nx)
        inner = 0 < z < nz - 1 and 0 < y < ny - 1 and 0 < x < nx - 1
        for j in range(m):
            if inner:  # no bounds to check
                q = p + offsets[j]
            else:
                zz, yy, xx = z + steps[j, 0], y + steps[j, 1], x + steps[j, 2]
                if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                    continue
                q = (zz * ny + yy) * nx + xx
            v = bits[q]
            if v == _OUTSIDE or labels[q]:
                continue
            age += 1
            labels[q] = label
            # the flood's level: a voxel below it is reached at it
            key = (max(np.uint64(v), level) << shift) | np.uint64(age)
            size = _push(keys, items, size, key, q)
