"""Coarser levels of a multiscale image, reduced block by block as the
finest level streams: :func:`pyramid_factors` (how much each level
shrinks), :func:`reduce_block` (mean, gaussian, nearest or mode of blocks)
and the pyramid that carries odd planes from one slab to the next.  Used by
:mod:`napari_diskimage.io.ome_zarr`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Ways to compute a coarser level from the finer one.
DOWNSAMPLE = ("mean", "gaussian", "nearest", "mode")
#: Bytes of the finest level read and reduced at a time (a slab of planes).
SLAB_BYTES = 32 << 20
#: The pyramid stops when the largest of y and x is at most this.
SMALLEST = 256
#: Default chunk edge in y and x, and the largest in z.
CHUNK_YX = 256
CHUNK_Z = 64


# --- the pyramid ------------------------------------------------------------
def pyramid_factors(
    shape_zyx: tuple[int, int, int],
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    levels: int | None = None,
) -> list[tuple[int, int, int]]:
    """Per-level reduction factors ``(fz, fy, fx)`` from each level to the next.

    y and x are halved at each level (an axis of size 1 stays); z is halved
    only while its spacing stays no coarser than y's and x's.  ``levels``
    is the number of levels including the finest; None goes on until the
    largest of y and x is at most 256.
    """
    z, y, x = shape_zyx
    sz, sy, sx = (abs(float(s)) or 1.0 for s in spacing)
    out: list[tuple[int, int, int]] = []
    while True:
        if levels is None and max(y, x) <= SMALLEST:
            break
        if levels is not None and len(out) + 1 >= levels:
            break
        fy, fx = (2 if y > 1 else 1), (2 if x > 1 else 1)
        if fy == fx == 1:
            break
        finest_next = min(sy * fy, sx * fx)
        fz = 2 if z > 1 and sz * 2 <= finest_next * (1 + 1e-9) else 1
        out.append((fz, fy, fx))
        z, y, x = -(-z // fz), -(-y // fy), -(-x // fx)
        sz, sy, sx = sz * fz, sy * fy, sx * fx
    return out


def _accumulator(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "b":
        return np.dtype(np.int32)
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        return np.dtype(np.int32)
    if dtype.kind in "iu" and dtype.itemsize <= 4:
        return np.dtype(np.int64)
    return np.dtype(np.float64)


def _pad_to(block: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Repeat the last plane, row, column so that each size divides evenly
    (a repeat changes no mean or mode of the voxels a block has)."""
    pad = [(0, (-n) % f) for n, f in zip(block.shape, factors, strict=True)]
    if not any(after for _, after in pad):
        return block
    return np.pad(block, pad, mode="edge")


def _block_views(block: np.ndarray, factors: tuple[int, int, int]) -> list[np.ndarray]:
    fz, fy, fx = factors
    return [
        block[dz::fz, dy::fy, dx::fx]
        for dz in range(fz)
        for dy in range(fy)
        for dx in range(fx)
    ]


def _mean(block: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    dtype = block.dtype
    acc_dtype = _accumulator(dtype)
    block = _pad_to(block, factors)
    views = _block_views(block, factors)
    acc = views[0].astype(acc_dtype)
    for view in views[1:]:
        acc += view
    n = len(views)
    if acc_dtype.kind == "f":
        acc /= n
        if dtype.kind in "iub":
            acc = np.floor(acc + 0.5)
        return acc.astype(dtype)
    # integers: round half up, exactly
    acc *= 2
    acc += n
    acc //= 2 * n
    return acc.astype(dtype)


def _mode(block: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    block = _pad_to(block, factors)
    views = _block_views(block, factors)
    best = views[0].copy()
    best_count = np.zeros(best.shape, np.int8)
    for i, vi in enumerate(views):
        count = np.zeros(best.shape, np.int8)
        for vj in views:
            count += vi == vj
        better = (count > best_count) | ((count == best_count) & (vi < best))
        if i == 0:
            better[...] = True
        np.copyto(best, vi, where=better)
        np.copyto(best_count, count, where=better)
    return best


def reduce_block(
    block: np.ndarray, factors: tuple[int, int, int], method: str = "mean"
) -> np.ndarray:
    """One pyramid step of ``block`` (z, y, x) by ``factors`` (fz, fy, fx).

    ``method``: ``"mean"`` (integers rounded half up), ``"gaussian"`` (each
    plane smoothed in y and x with sigma 2/3 pixel along halved axes, then
    the mean), ``"nearest"`` (the block's first voxel) or ``"mode"`` (the most
    frequent value, ties to the smallest: labels).  Sizes are rounded up.
    """
    if method == "nearest":
        fz, fy, fx = factors
        return np.ascontiguousarray(block[::fz, ::fy, ::fx])
    if method == "mode":
        return _mode(block, factors)
    if method == "gaussian":
        from scipy import ndimage

        sigma = [0.0] + [2.0 / 3.0 if f > 1 else 0.0 for f in factors[1:]]
        smooth = ndimage.gaussian_filter(
            block.astype(np.float32 if block.dtype.itemsize <= 2 else np.float64),
            sigma,
            mode="nearest",
        )
        if block.dtype.kind in "iu":
            info = np.iinfo(block.dtype)
            smooth = np.clip(np.floor(smooth + 0.5), info.min, info.max)
        elif block.dtype.kind == "b":
            smooth = smooth >= 0.5
        return _mean(smooth.astype(block.dtype), factors)
    if method == "mean":
        return _mean(block, factors)
    raise ValueError(f"unknown downsample method {method!r}: use one of {DOWNSAMPLE}")


@dataclass
class Level:
    """One level of one image being written: its array and what is pending."""

    array: Any
    factors: tuple[int, int, int] | None  # from the finer level (None: finest)
    chunk_z: int
    pending: list[np.ndarray] = field(default_factory=list)
    pending_z: int = 0
    carry: np.ndarray | None = None
    z_written: int = 0


class Pyramid:
    """Writes slabs of the finest level and reduces them down the levels."""

    def __init__(
        self,
        arrays: list[Any],
        factors: list[tuple[int, int, int]],
        chunk_z: list[int],
        method: str,
        prefix_axes: int,
    ) -> None:
        self.levels = [
            Level(arr, None if i == 0 else factors[i - 1], cz)
            for i, (arr, cz) in enumerate(zip(arrays, chunk_z, strict=True))
        ]
        self.method = method
        self.prefix_axes = prefix_axes
        self.tc: tuple[int, ...] = ()

    def start(self, tc: tuple[int, ...]) -> None:
        self.tc = tc[-self.prefix_axes :] if self.prefix_axes else ()
        for level in self.levels:
            level.pending, level.pending_z, level.carry, level.z_written = (
                [],
                0,
                None,
                0,
            )

    def feed(self, index: int, planes: np.ndarray) -> None:
        """Add ``planes`` (z, y, x) to level ``index``; write full chunk rows
        and pass the planes on to the coarser levels."""
        level = self.levels[index]
        level.pending.append(planes)
        level.pending_z += planes.shape[0]
        if level.pending_z >= level.chunk_z:
            self._write(level, whole_chunks=True)
        if index + 1 < len(self.levels):
            nxt = self.levels[index + 1]
            assert nxt.factors is not None
            fz = nxt.factors[0]
            if nxt.carry is not None:
                planes = np.concatenate([nxt.carry, planes])
                nxt.carry = None
            even = planes.shape[0] - planes.shape[0] % fz
            if even < planes.shape[0]:
                nxt.carry = planes[even:].copy()
            if even:
                self.feed(
                    index + 1, reduce_block(planes[:even], nxt.factors, self.method)
                )

    def finish(self) -> None:
        """Flush what remains at the end of z (odd planes, partial chunk rows)."""
        for index, level in enumerate(self.levels):
            if level.carry is not None:
                carry, level.carry = level.carry, None
                assert level.factors is not None
                self.feed(index, reduce_block(carry, level.factors, self.method))
            self._write(level, whole_chunks=False)

    def _write(self, level: Level, *, whole_chunks: bool) -> None:
        if not level.pending:
            return
        data = (
            level.pending[0]
            if len(level.pending) == 1
            else np.concatenate(level.pending)
        )
        n = data.shape[0]
        if level.array is None:  # a finest level already written
            level.pending, level.pending_z = [], 0
            level.z_written += n
            return
        if whole_chunks:
            n -= n % level.chunk_z
        if n:
            z0 = level.z_written
            key = (*self.tc, slice(z0, z0 + n))
            level.array[key] = data[:n]
            level.z_written += n
        rest = data[n:]
        level.pending = [rest] if rest.shape[0] else []
        level.pending_z = rest.shape[0]
