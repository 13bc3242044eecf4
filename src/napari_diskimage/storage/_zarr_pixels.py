"""Helpers of :mod:`.zarr_array`: axes order and one coarser pixel."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["block_value", "in_array_order"]

#: The axes of a disk image, in order (the one definition for the Zarr kind).
_AXES = "tczyx"


def in_array_order(out: np.ndarray, axes: str) -> np.ndarray:
    """A view of ``out`` (t, c, z, y, x) with the axes of an array whose
    axes are ``axes`` (the others, of size 1, dropped)."""
    rest = [a for a in _AXES if a not in axes]
    view = out.transpose([_AXES.index(a) for a in (*axes, *rest)])
    return view[(Ellipsis,) + (0,) * len(rest)]


def block_value(block: np.ndarray, method: str) -> Any:
    """One coarser pixel from the ``block`` of finer pixels it covers."""
    flat = block.reshape(-1)
    if method == "nearest":
        return flat[0]
    if method == "mode":
        values, counts = np.unique(flat, return_counts=True)
        return values[np.argmax(counts)]
    if block.dtype.kind == "f":
        return flat.mean(dtype=np.float64).astype(block.dtype)
    total = (
        int(flat.astype(np.int64).sum()) if flat.dtype.kind != "b" else int(flat.sum())
    )
    n = flat.size
    return block.dtype.type((2 * total + n) // (2 * n))
