"""Operations on pixel values: threshold, Otsu's threshold, arithmetic,
conversion to another pixel type."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._geometry import Geometry, as_dtype
from .._steps import Steps
from ._blocks import block_chunks
from ._checks import check_image, dtype_of, name_of, number, same_shape, shape_of
from ._engine import Run
from ._generic import blockwise, minmax, reduction_run
from ._registry import Parameter, _Block, operation, reduction
from ._tasks import BlockWriter, BoxReader, map_tasks, new_output, reduce_tasks

__all__ = ["arithmetic", "convert", "otsu", "threshold", "to_type"]

_OPS = {
    "+": "add",
    "add": "add",
    "-": "subtract",
    "subtract": "subtract",
    "*": "multiply",
    "multiply": "multiply",
    "/": "divide",
    "divide": "divide",
    "min": "min",
    "minimum": "min",
    "max": "max",
    "maximum": "max",
}

_TYPES = ("uint8", "uint16", "uint32", "int16", "int32", "float32", "float64")


def to_type(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float64 values into ``dtype``: rounded and clipped for integers."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.rint(values)
        np.nan_to_num(values, copy=False, nan=0.0, posinf=info.max, neginf=info.min)
        np.clip(values, info.min, info.max, out=values)
        return values.astype(dtype)
    with np.errstate(over="ignore"):
        return values.astype(dtype)


# --- threshold and Otsu ------------------------------------------------------
@operation(
    "Threshold (mask 0/1)",
    [
        Parameter("low", "optional float", None, help="empty: no lower bound"),
        Parameter("high", "optional float", None, help="empty: no upper bound"),
    ],
)
def threshold(
    image: Any,
    low: float | None,
    high: float | None = None,
    *,
    block_shape: _Block = None,
) -> Run:
    """A uint8 mask: 1 where ``low <= value <= high``, else 0.

    ``low`` None: no lower bound, ``high`` None: no upper bound (not both).
    With Otsu's value ``t`` (:func:`otsu`), ``threshold(image, None, t)``
    is the dark phase (e.g. the pores of a scan), ``threshold(image, t)``
    the bright one."""
    check_image(image, "threshold")
    if low is None and high is None:
        raise ValueError(
            "threshold: give low (the bright phase: value >= low), high (the "
            "dark phase: value <= high) or both; otsu(image) gives a value "
            "between two phases"
        )
    lo = -math.inf if low is None else number(low, "low")
    hi = math.inf if high is None else number(high, "high")
    if hi < lo:
        raise ValueError(
            f"threshold: high ({high!r}) is below low ({low!r}); swap them"
        )

    def fn(block: np.ndarray) -> np.ndarray:
        return ((block >= lo) & (block <= hi)).astype(np.uint8)

    return blockwise(
        fn,
        [image],
        geometry=Geometry.from_shape(shape_of(image), np.uint8),
        what=f"threshold({low}, {high}) of {name_of(image)}",
        block_shape=block_shape,
    )


@reduction
def otsu(
    image: Any,
    *,
    block_shape: _Block = None,
) -> Run:
    """Otsu's threshold of the whole image, from a block-wise histogram.

    Equals ``skimage.filters.threshold_otsu(image)``: integer images get
    one bin per value, float images 256 bins over their finite range.
    Returns the threshold value: :func:`threshold`'s ``high`` for the dark
    phase, its ``low`` for the bright one.
    """
    integer = dtype_of(image).kind in "iu"

    def passes(run: Run, reader: BoxReader, chunks: Sequence[int]) -> Steps:
        from skimage.filters import threshold_otsu

        lo, hi = yield from minmax(run, reader, chunks)
        if not math.isfinite(lo):
            raise ValueError(f"otsu: {name_of(image)} has no finite values")
        if integer:
            lo_i, hi_i = int(lo), int(hi)

            def hist(block: np.ndarray) -> np.ndarray:
                values = block.ravel().astype(np.int64) - lo_i
                return np.bincount(values, minlength=hi_i - lo_i + 1)

            centers = np.arange(lo_i, hi_i + 1)
        else:
            edges = np.histogram_bin_edges([lo, hi], bins=256, range=(lo, hi))

            def hist(block: np.ndarray) -> np.ndarray:
                values = block[np.isfinite(block)]
                return np.histogram(values, bins=256, range=(lo, hi))[0]

            centers = (edges[:-1] + edges[1:]) / 2
        tasks, sizes = reduce_tasks(reader, hist, chunks)
        parts = yield from run.execute(tasks, sizes)
        counts = np.sum(parts, axis=0)
        if lo == hi:
            return float(lo)
        return float(threshold_otsu(hist=(counts, centers)))

    return reduction_run(image, passes, f"otsu of {name_of(image)}", 2, block_shape)


# --- arithmetic and conversion -----------------------------------------------
@operation(
    "Arithmetic (+ - * / min max)",
    [
        Parameter("op", "choice", "+", choices=("+", "-", "*", "/", "min", "max")),
        Parameter("b", "image or number", 0.0, help="a layer or a number"),
    ],
    second_image=True,
)
def arithmetic(
    a: Any,
    op: str,
    b: Any,
    *,
    dtype: Any = None,
    block_shape: _Block = None,
) -> Run:
    """``a op b`` pixel by pixel: ``op`` is one of + - * / min max.

    ``b`` is an image of the same size or a number.  Computed in float64,
    then stored as ``dtype`` (default: ``a``'s type): for integer types
    rounded to the nearest integer and clipped to the type's range (200 +
    100 in uint8 is 255, 3 - 5 is 0; x / 0 is the type's largest value,
    0 / 0 is 0); float types keep the values.
    """
    check_image(a, "arithmetic")
    if not isinstance(op, str) or op.lower() not in _OPS:
        raise ValueError(
            f"arithmetic: unknown operation {op!r}; use one of + - * / min max"
        )
    kind = _OPS[op.lower()]
    scalar = isinstance(b, (numbers.Real, np.number)) and not isinstance(b, bool)
    if not scalar:
        check_image(b, "arithmetic")
        same_shape(a, b, f"arithmetic {op!r}")
    else:
        b = number(b, "b")
    out_dtype = dtype_of(a) if dtype is None else as_dtype(dtype)
    ufunc = {
        "add": np.add,
        "subtract": np.subtract,
        "multiply": np.multiply,
        "divide": np.divide,
        "min": np.minimum,
        "max": np.maximum,
    }[kind]

    def combine(x: np.ndarray, y: Any) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            values = ufunc(x.astype(np.float64), np.asarray(y, dtype=np.float64))
        return to_type(values, out_dtype)

    fn: Callable[..., np.ndarray]
    if scalar:
        inputs = [a]

        def fn(x: np.ndarray) -> np.ndarray:
            return combine(x, b)

        what = f"{name_of(a)} {op} {b:g}"
    else:
        inputs = [a, b]
        fn = combine
        what = f"{name_of(a)} {op} {name_of(b)}"
    return blockwise(
        fn,
        inputs,
        geometry=Geometry.from_shape(shape_of(a), out_dtype),
        what=what,
        block_shape=block_shape,
    )


@operation(
    "Convert pixel type",
    [
        Parameter("dtype", "choice", "uint8", choices=_TYPES),
        Parameter("rescale", "bool", True, help="map min..max to the new range"),
    ],
)
def convert(
    image: Any,
    dtype: Any,
    rescale: bool = True,
    *,
    block_shape: _Block = None,
) -> Run:
    """The image in another pixel type.

    ``rescale=True`` (default) maps the image's own range (min..max, from a
    first pass) linearly to the whole range of an integer type, or to 0..1
    for a float type.  ``rescale=False`` keeps the values: rounded and
    clipped to an integer type's range.
    """
    check_image(image, "convert")
    out_dtype = as_dtype(dtype)
    shape = shape_of(image)
    geometry = Geometry.from_shape(shape, out_dtype)
    what = f"convert {name_of(image)} to {out_dtype}"
    if not rescale:

        def fn(block: np.ndarray) -> np.ndarray:
            if block.dtype == out_dtype:
                return block
            if out_dtype.kind in "iu":
                return to_type(block.astype(np.float64), out_dtype)
            return block.astype(out_dtype)

        return blockwise(
            fn, [image], geometry=geometry, what=what, block_shape=block_shape
        )

    itemsize = max(dtype_of(image).itemsize, out_dtype.itemsize)
    chunks = block_chunks(image, itemsize, (0,) * 5, block_shape)
    output = new_output(geometry, what, image)
    if out_dtype.kind in "iu":
        target = (float(np.iinfo(out_dtype).min), float(np.iinfo(out_dtype).max))
    else:
        target = (0.0, 1.0)

    def plan(run: Run) -> Steps:
        reader = BoxReader(image, run.token)
        yield 0, run.total
        lo, hi = yield from minmax(run, reader, chunks)  # counts the input's bytes
        scale = (target[1] - target[0]) / (hi - lo) if hi > lo else 0.0

        def fn(block: np.ndarray) -> np.ndarray:
            values = (block.astype(np.float64) - lo) * scale + target[0]
            return to_type(values, out_dtype)

        writer = BlockWriter(run.image, run.token)
        tasks, sizes = map_tasks([reader], fn, chunks, writer)
        yield from run.execute(tasks, sizes)
        return run.output

    total = geometry.nbytes + math.prod(shape) * dtype_of(image).itemsize
    return Run(output, plan, what, total)
