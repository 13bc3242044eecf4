"""The generic block-wise runs every operation is made of, and ``apply``.

:func:`blockwise` writes ``fn(*blocks)`` for each block of the inputs
(with the halo ``fn`` needs) into a new disk image; :func:`reduction_run`
reduces blocks to a value (a histogram, a min and max) with no output.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._geometry import Geometry, as_dtype
from .._steps import Steps
from ._blocks import block_chunks, fit_halo
from ._checks import check_image, dtype_of, per_axis, same_shape, shape_of
from ._engine import Run
from ._out import align
from ._registry import _Block, operation
from ._tasks import BlockWriter, BoxReader, map_tasks, new_output, reduce_tasks

__all__ = ["apply", "blockwise", "minmax", "reduction_run"]


def blockwise(
    fn: Callable[..., np.ndarray],
    inputs: Sequence[Any],
    *,
    geometry: Geometry,
    what: str,
    depth: Sequence[int] = (0, 0, 0, 0, 0),
    boundary: Any = "none",
    block_shape: Sequence[int] | None = None,
    fit: bool = True,
    like: Any = None,
) -> Run:
    """A run writing ``fn(*blocks)`` (5D blocks with halo) for each block.

    ``fit``: blocks span an axis the halo would cover (:func:`fit_halo`),
    for functions that handle the image's edges themselves.
    """
    first = inputs[0]
    itemsize = max(dtype_of(i).itemsize for i in inputs)
    chunks = block_chunks(first, itemsize, depth, block_shape)
    if fit:
        fitted, depth = fit_halo(shape_of(first), chunks, depth)
        t, c, z, y, x = align(fitted, shape_of(first))  # whole chunks of out=
        chunks = (t, c, z, y, x)
    output = new_output(geometry, what, like if like is not None else first)

    def plan(run: Run) -> Steps:
        readers = [BoxReader(img, run.token) for img in inputs]
        writer = BlockWriter(run.image, run.token)
        tasks, sizes = map_tasks(readers, fn, chunks, writer, depth, boundary)
        yield 0, run.total
        yield from run.execute(tasks, sizes)
        return run.output

    return Run(output, plan, what, geometry.nbytes)


def reduction_run(
    image: Any,
    passes: Callable[[Run, BoxReader, Sequence[int]], Steps],
    what: str,
    n_passes: int,
    block_shape: Any = None,
) -> Run:
    """A run with no output image: block-wise reductions, a value returned."""
    check_image(image, what)
    itemsize = dtype_of(image).itemsize
    chunks = block_chunks(image, itemsize, (0,) * 5, block_shape)
    nbytes = math.prod(shape_of(image)) * itemsize

    def plan(run: Run) -> Steps:
        reader = BoxReader(image, run.token)
        yield 0, run.total
        return (yield from passes(run, reader, chunks))

    return Run(None, plan, what, nbytes * n_passes)


def _minmax_block(block: np.ndarray) -> np.ndarray:
    values = block
    if block.dtype.kind == "f":
        values = block[np.isfinite(block)]
    if values.size == 0:
        return np.array([np.inf, -np.inf])
    return np.array([float(values.min()), float(values.max())])


def minmax(run: Run, reader: BoxReader, chunks: Sequence[int]) -> Steps:
    """Steps of a pass over ``reader``'s blocks; returns the finite
    (min, max) of the image ((inf, -inf) if it has no finite value)."""
    tasks, sizes = reduce_tasks(reader, _minmax_block, chunks)
    parts = yield from run.execute(tasks, sizes)
    lo = min(float(p[0]) for p in parts)
    hi = max(float(p[1]) for p in parts)
    return lo, hi


# --- apply -------------------------------------------------------------------
_BOUNDARIES = ("reflect", "periodic", "nearest", "none")


@operation()
def apply(
    func: Callable[..., Any],
    image: Any,
    *images: Any,
    depth: Any = 0,
    dtype: Any = None,
    boundary: Any = "reflect",
    block_shape: _Block = None,
) -> Run:
    """Run ``func`` on blocks of images and write the result to a disk image.

    ``func(block, *blocks)`` receives numpy arrays of one block of each
    image, indexed (z, y, x) (2D images: z of size 1), each with a halo of
    ``depth`` pixels on every side that is trimmed from what it returns;
    it must return an array of the same shape.  The halo is read from the
    neighbouring blocks, and at the image's edges made by ``boundary``.

    Parameters
    ----------
    func : callable
        numpy in, numpy out, same shape; called once per block, in several
        threads (or cluster workers) at once.
    image, *images : DiskImage or array-like
        Inputs of the same size (numpy, dask or zarr arrays of 1 to 5 axes
        are right-aligned to (t, c, z, y, x)).
    depth : int or (x, y, z)
        Halo in pixels; at most the image's size along each axis.
    dtype : optional
        Pixel type of the result (default: that of ``image``); ``func``'s
        values must cast to it safely ("same kind").
    boundary : {"reflect", "nearest", "periodic", "none"} or number
        How the halo is filled beyond the image's edges: dask's
        ``map_overlap`` boundaries ("reflect" mirrors the edge pixel, as
        scipy's ``mode="reflect"``; "none": no halo there).

    Returns
    -------
    DiskImage
        A new scratch disk image (deleted when dropped; save it to keep it).

    Raises
    ------
    ValueError, TypeError
        Bad parameters, images of different sizes, a halo larger than the
        image, or ``func`` returning another shape or an unsafe type.
    Exception
        Whatever ``func`` raised, with a note naming the run; the output
        file is removed.

    >>> out = apply(lambda b: b * 2, np.ones((4, 5), np.uint8))
    >>> int(np.asarray(out).max())
    2
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {func!r}")
    for img in (image, *images):
        check_image(img, "apply")
        same_shape(image, img, "apply")
    if not (
        boundary in _BOUNDARIES
        or (isinstance(boundary, numbers.Real) and not isinstance(boundary, bool))
    ):
        raise ValueError(
            f"boundary must be one of {', '.join(_BOUNDARIES)} or a number, "
            f"got {boundary!r}"
        )
    dz, dy, dx = per_axis(depth, "depth", image, integer=True, minimum=0)
    shape = shape_of(image)
    for axis, d, n in (("x", dx, shape[4]), ("y", dy, shape[3]), ("z", dz, shape[2])):
        if d > n:
            raise ValueError(
                f"apply: a halo of depth {d} along {axis} is larger than the "
                f"image, which has size_{axis} = {n}; use depth <= {n}"
            )
    out_dtype = dtype_of(image) if dtype is None else as_dtype(dtype)
    geometry = Geometry.from_shape(shape, out_dtype)
    name = getattr(func, "__name__", type(func).__name__)

    def on_block(*blocks: np.ndarray) -> np.ndarray:
        result = func(*(b[0, 0] for b in blocks))
        result = np.asarray(result)
        if result.shape != blocks[0].shape[2:]:
            raise ValueError(
                f"apply: {name}() returned a block of shape {result.shape} for "
                f"a block of shape {blocks[0].shape[2:]} (z, y, x); it must "
                "return the same shape"
            )
        if not np.can_cast(result.dtype, out_dtype, casting="same_kind"):
            raise TypeError(
                f"apply: {name}() returned {result.dtype} values but the output "
                f"is {out_dtype}; pass dtype={result.dtype.name!r} to keep them"
            )
        return result.astype(out_dtype, copy=False)[None, None]

    return blockwise(
        on_block,
        [image, *images],
        geometry=geometry,
        what=f"apply({name})",
        depth=(0, 0, dz, dy, dx),
        boundary=boundary,
        block_shape=block_shape,
        fit=False,
    )
