"""Build an OME-Zarr pyramid in blocks when a chunk row of planes is too big.

:class:`~.downsample.Pyramid` streams the finest level in slabs of one
chunk row in z: memory grows with the plane (64 planes of 6496 x 3248
uint16 are 2.7 GB).  :func:`feed_in_blocks` reads instead blocks of
(chunk rows in z x a band of rows x a band of columns), each a whole
number of the level's chunks and of the next level's (means over 2 x 2
x 2 stay inside a block), writes the chunks of both levels and frees the
block.  The next level is then read back from the store the same way,
until a level's chunk row of planes fits the budget; from there the
pyramid streams as usual.  Memory: one block (at most ``budget`` bytes,
or the smallest block of whole chunks if larger) and its reduction.
Chunks are the same whatever the plane size, and so are the pixels: a
block's means are the means of the same voxels as the streamed slabs'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .downsample import Pyramid, reduce_block

__all__ = ["block_shape", "feed_in_blocks", "needs_blocks"]

#: ``read(z, y, x)`` with three slices: the level's pixels (z, y, x).
Reader = Callable[[slice, slice, slice], np.ndarray]


def _chunks(array: Any) -> tuple[int, int, int]:
    c = tuple(int(n) for n in array.chunks[-3:])
    return (c[0], c[1], c[2])


def _zyx(array: Any) -> tuple[int, int, int]:
    s = tuple(int(n) for n in array.shape[-3:])
    return (s[0], s[1], s[2])


def needs_blocks(pyramid: Pyramid, index: int, itemsize: int, budget: int) -> bool:
    """Whether level ``index`` (not the coarsest) has a chunk row of planes
    larger than ``budget`` bytes, and a block of whole chunks smaller than
    that row."""
    if index + 1 >= len(pyramid.levels):
        return False
    array, nxt = pyramid.levels[index].array, pyramid.levels[index + 1]
    zyx = _zyx(array)
    row = min(_chunks(array)[0], zyx[0]) * zyx[1] * zyx[2] * itemsize
    if row <= budget:
        return False
    assert nxt.factors is not None
    bz, by, bx = block_shape(
        zyx, _chunks(array), _chunks(nxt.array), nxt.factors, itemsize, budget
    )
    return bz * by * bx * itemsize < row


def block_shape(
    zyx: tuple[int, int, int],
    chunks: tuple[int, int, int],
    next_chunks: tuple[int, int, int],
    factors: tuple[int, int, int],
    itemsize: int,
    budget: int,
) -> tuple[int, int, int]:
    """The block (z, y, x) read at a time from a level of size ``zyx``.

    A whole number of the level's ``chunks`` and of the next level's chunks
    times ``factors`` along each axis; whole rows (all of x) when such a
    block of the fewest rows fits ``budget``, more rows while they fit;
    else a band of columns.  Never smaller than one such unit.
    """
    unit = [
        math.lcm(c, n * f) for c, n, f in zip(chunks, next_chunks, factors, strict=True)
    ]
    bz = min(unit[0], zyx[0])

    def fits(by: int, bx: int) -> bool:
        return bz * by * bx * itemsize <= budget

    if fits(unit[1], zyx[2]):
        rows = budget // (bz * zyx[2] * itemsize)
        by = max(unit[1], rows - rows % unit[1])
        return (bz, min(by, zyx[1]), zyx[2])
    cols = budget // (bz * unit[1] * itemsize)
    bx = max(unit[2], cols - cols % unit[2])
    return (bz, min(unit[1], zyx[1]), min(bx, zyx[2]))


def feed_in_blocks(
    pyramid: Pyramid, read: Reader, itemsize: int, budget: int
) -> Iterator[int]:
    """Write every level of ``pyramid`` (started, for one t and c) from
    ``read`` (the finest level's pixels), in blocks of whole chunks while a
    level's chunk row of planes exceeds ``budget``, then streamed.

    Yields the bytes of the finest level done after each block or slab (0
    for the blocks of coarser levels).  Ends with ``pyramid.finish()``.
    """

    def done(index: int, box: tuple[slice, slice, slice]) -> int:
        if index:
            return 0
        n = itemsize
        for s in box:
            n *= s.stop - s.start
        return n

    levels = pyramid.levels
    arrays = [level.array for level in levels]
    tc = pyramid.tc
    index = 0
    try:
        while needs_blocks(pyramid, index, itemsize, budget):
            nxt = levels[index + 1]
            assert nxt.factors is not None
            zyx = _zyx(arrays[index])
            bz, by, bx = block_shape(
                zyx, _chunks(arrays[index]), _chunks(arrays[index + 1]),
                nxt.factors, itemsize, budget,
            )  # fmt: skip
            fz, fy, fx = nxt.factors
            for z0 in range(0, zyx[0], bz):
                for y0 in range(0, zyx[1], by):
                    for x0 in range(0, zyx[2], bx):
                        box = (
                            slice(z0, min(z0 + bz, zyx[0])),
                            slice(y0, min(y0 + by, zyx[1])),
                            slice(x0, min(x0 + bx, zyx[2])),
                        )
                        block = read(*box)
                        if index == 0:
                            where = (*tc, *box)
                            arrays[0][where] = block
                        small = reduce_block(block, nxt.factors, pyramid.method)
                        del block
                        nz, ny, nx = small.shape
                        at = (z0 // fz, y0 // fy, x0 // fx)
                        key = (
                            slice(at[0], at[0] + nz),
                            slice(at[1], at[1] + ny),
                            slice(at[2], at[2] + nx),
                        )
                        where = (*tc, *key)
                        arrays[index + 1][where] = small
                        del small
                        yield done(index, box)
            index += 1
            read = _reader(arrays[index], tc)
        # Stream from level ``index`` (already written unless it is the finest).
        level = levels[index]
        if index:
            level.array = None  # the pyramid writes only the coarser levels
        z_size = _zyx(arrays[index])[0]
        cz = level.chunk_z
        all_ = slice(None)
        for z0 in range(0, z_size, cz):
            planes = slice(z0, min(z0 + cz, z_size))
            slab = np.ascontiguousarray(read(planes, all_, all_))
            pyramid.feed(index, slab)
            yield slab.nbytes if index == 0 else 0
        pyramid.finish()
    finally:
        for level, array in zip(levels, arrays, strict=True):
            level.array = array


def _reader(array: Any, tc: tuple[int, ...]) -> Reader:
    def read(z: slice, y: slice, x: slice) -> np.ndarray:
        key = (*tc, z, y, x)
        return np.asarray(array[key])

    return read
