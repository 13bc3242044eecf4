"""Block planning: how an image is cut into the blocks of a run.

Sizes come from the file layout (x is fastest on disk) and the halo a
filter needs; a caller's ``block_shape=(x, y, z)`` overrides them, and
``block_bytes`` the budget of :func:`choose_chunks`.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._checks import shape_of

__all__ = [
    "BLOCK_BYTES",
    "HALO_BLOCK_BYTES",
    "TILE_X",
    "block_chunks",
    "block_grid",
    "choose_chunks",
    "fit_halo",
    "trim",
    "user_blocks",
]

#: Input bytes per block of an operation without a halo (pointwise).
BLOCK_BYTES = 16 << 20
#: Input bytes per block (before the halo) of a filter with a halo.
HALO_BLOCK_BYTES = 64 << 20
#: Columns of a block of a filter with a halo (when rows are longer).
TILE_X = 1024


def block_grid(
    shape: Sequence[int], chunks: Sequence[int]
) -> list[tuple[tuple[int, int], ...]]:
    """The boxes of ``chunks`` that tile ``shape``, in C order (file order)."""
    axes = [
        [(a, min(n, a + c)) for a in range(0, n, c)]
        for n, c in zip(shape, chunks, strict=True)
    ]
    return [tuple(box) for box in itertools.product(*axes)]


def user_blocks(block_shape: Any) -> tuple[int, int, int] | None:
    """A caller's ``block_shape`` (x, y, z) as (z, y, x), or None for none.

    Raises ValueError unless it is 3 whole numbers >= 1.
    """
    if block_shape is None:
        return None
    if (
        isinstance(block_shape, str)
        or not isinstance(block_shape, Sequence)
        or len(block_shape) != 3
        or any(
            isinstance(n, bool)
            or not isinstance(n, (numbers.Integral, np.integer))
            or n < 1
            for n in block_shape
        )
    ):
        raise ValueError(
            f"block_shape must be 3 whole numbers >= 1 (x, y, z), got {block_shape!r}"
        )
    bx, by, bz = (int(n) for n in block_shape)
    return bz, by, bx


def choose_chunks(
    shape: Sequence[int],
    itemsize: int,
    depth: Sequence[int] = (0, 0, 0, 0, 0),
    block_bytes: int | None = None,
) -> tuple[int, int, int, int, int]:
    """Block shape over (t, c, z, y, x) from the file layout and the halo.

    Blocks hold one t and one c.  Without a halo they are whole rows,
    whole planes, then several planes, about :data:`BLOCK_BYTES` each (x
    is fastest on disk: one read per plane).  With a halo they are tiles
    of :data:`HALO_BLOCK_BYTES`: z as deep as a cube of that size (all of
    it for most stacks, so no halo in z), then :data:`TILE_X` columns and
    as many rows as fit.  The halo's share of the work stays small, and
    scipy's filters run 2-3x faster on such tiles than on whole rows of
    2048 or 4096 pixels, whose power-of-two stride aliases in the CPU
    cache on the y pass.  A block is never thinner than its halo.
    ``block_bytes`` replaces either budget.
    """
    _t, _c, z, y, x = (int(n) for n in shape)
    dz, dy, dx = (int(d) for d in depth[2:])
    halo = bool(dz or dy or dx)
    if block_bytes is None:
        block_bytes = HALO_BLOCK_BYTES if halo else BLOCK_BYTES
    voxels = max(1, block_bytes // itemsize)
    if not halo:
        if x >= voxels:
            return (1, 1, 1, 1, voxels)
        cy = min(y, voxels // x)
        cz = max(1, min(z, voxels // (cy * x)))
        return (1, 1, cz, cy, x)
    cz = 1
    if dz and z > 1:
        cz = min(z, max(1, 2 * dz, round(voxels ** (1 / 3))))
    plane = max(1, voxels // cz)  # voxels of a block in y and x
    cx = x if not dx or x <= TILE_X * 3 // 2 else TILE_X
    cy = min(y, max(1, 2 * dy, plane // cx))
    return (1, 1, cz, cy, cx)


def block_chunks(
    image: Any,
    itemsize: int,
    depth: Sequence[int],
    block_shape: Sequence[int] | None,
) -> tuple[int, int, int, int, int]:
    """The blocks of a run over ``image``: the caller's ``block_shape``
    (x, y, z), clipped to the image, or :func:`choose_chunks`'s; rounded up
    to whole chunks of the store a result is written into (``out=``)."""
    from ._out import align

    shape = shape_of(image)
    blocks = user_blocks(block_shape)
    if blocks is None:
        chunks = choose_chunks(shape, itemsize, depth)
    else:
        bz, by, bx = blocks
        chunks = (1, 1, min(bz, shape[2]), min(by, shape[3]), min(bx, shape[4]))
    t, c, z, y, x = align(chunks, shape, keep_size=True)  # whole chunks of out=
    return (t, c, z, y, x)


def fit_halo(
    shape: Sequence[int], chunks: Sequence[int], depth: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Blocks for a halo: one block spans an axis the halo would cover.

    Only for operations whose function handles the image's edges itself
    (scipy's ``mode``), where no padding is needed: a block spanning an
    axis needs no halo along it.  Blocks are never thinner than the halo.
    """
    chunks, depth = list(chunks), list(depth)
    for a in range(5):
        if depth[a] and (depth[a] >= shape[a] or chunks[a] >= shape[a]):
            chunks[a] = shape[a]
        if chunks[a] >= shape[a]:
            depth[a] = 0
        elif depth[a] > chunks[a]:
            chunks[a] = min(shape[a], depth[a])
    return tuple(chunks), tuple(depth)


_LIBC: Any = None


def trim() -> None:
    """Give the C heap's free memory back to the system (glibc's
    ``malloc_trim``), after a block: numpy's large arrays raise glibc's
    mmap threshold as they are freed, later ones come from the heap
    arenas (one per thread), which keep their free pages, so a capped run
    of many blocks would count every thread's largest block.  A no-op
    elsewhere."""
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim  # noqa: B018  (glibc only)
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)
