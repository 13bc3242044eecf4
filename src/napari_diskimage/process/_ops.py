"""Operations on disk images, each writing a new scratch disk image.

Every operation validates its parameters first (nothing is created for a
bad call), then returns a :class:`~._engine.Run`: the output disk image
exists at once (zeros, space reserved) and is filled block by block as the
run's steps are iterated.  The public functions in
:mod:`napari_diskimage.process` drive the runs to the end; the napari
widget iterates them in a worker thread and shows the output while it is
written.

The filters call scipy on each block with the halo that the filter needs
and no padding at the image's own edges, where scipy's ``mode`` applies as
it does on the whole array: results equal the same scipy call on the whole
volume in memory.  This is what dask-image's filters do over
``map_overlap``; here each block reads its own halo (bounded memory, see
``_engine``), blocks hold one t and one c, so only (z, y, x) is filtered,
and a halo wider than an axis makes the block span that axis instead of
failing.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._diskimage import DiskImage, Steps, run_steps
from .._errors import closed_error
from .._geometry import Geometry, as_dtype
from .._io import _kernel_copy, _Source
from ..storage.mapped import MappedStorage
from . import _engine
from ._engine import (
    BlockWriter,
    BoxReader,
    Run,
    choose_chunks,
    map_tasks,
    name_of,
    new_output,
    reduce_tasks,
    shape_of,
    user_blocks,
)

ProgressCallback = Callable[[int, int], Any]

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


# --- parameters -------------------------------------------------------------
def _dtype_of(image: Any) -> np.dtype:
    dtype = np.dtype(image.dtype)
    if dtype == np.dtype(bool):  # a numpy mask
        return np.dtype(np.uint8)
    return as_dtype(dtype)


def _per_axis(
    value: Any, name: str, image: Any, *, integer: bool, minimum: float
) -> tuple[Any, Any, Any]:
    """A scalar or (x, y, z) parameter as (z, y, x); z is unused for 2D."""
    values: list[Any]
    if isinstance(value, (numbers.Real, np.number)) and not isinstance(value, bool):
        values = [value] * 3
    elif (
        isinstance(value, Sequence)
        and len(value) in (2, 3)
        and not isinstance(value, str)
    ):
        values = [*value, 0 if len(value) == 2 else value[2]]
        if len(value) == 2:
            values[2] = minimum  # (x, y) for a 2D image
    else:
        raise TypeError(f"{name} must be a number or (x, y, z) numbers, got {value!r}")
    out: list[Any] = []
    for axis, item in zip("xyz", values, strict=True):
        if isinstance(item, bool) or not isinstance(item, (numbers.Real, np.number)):
            raise TypeError(f"{name} for {axis} must be a number, got {item!r}")
        v = float(item)
        if integer and math.isfinite(v) and v != int(v):
            raise ValueError(f"{name} for {axis} must be a whole number, got {v!r}")
        if not math.isfinite(v) or v < minimum:
            raise ValueError(
                f"{name} must be at least {minimum:g} (got {item!r} for {axis})"
            )
        out.append(int(v) if integer else v)
    x, y, z = out
    if shape_of(image)[2] == 1:  # a 2D image: nothing along z
        z = 0 if not integer else (1 if minimum >= 1 else 0)
    return (z, y, x)


def _block_chunks(
    image: Any,
    itemsize: int,
    depth: Sequence[int],
    block_shape: Sequence[int] | None,
) -> tuple[int, int, int, int, int]:
    shape = shape_of(image)
    blocks = user_blocks(block_shape)
    if blocks is None:
        return choose_chunks(shape, itemsize, depth)
    bz, by, bx = blocks
    return (1, 1, min(bz, shape[2]), min(by, shape[3]), min(bx, shape[4]))


def _fit_halo(
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


def _same_shape(a: Any, b: Any, what: str) -> None:
    sa, sb = shape_of(a), shape_of(b)
    if sa != sb:
        ga = Geometry.from_shape(sa, "uint8")
        gb = Geometry.from_shape(sb, "uint8")
        raise ValueError(
            f"{what}: the images differ in size: {name_of(a)} is "
            f"{' x '.join(map(str, ga.sizes))} and {name_of(b)} is "
            f"{' x '.join(map(str, gb.sizes))} (x, y, z, c, t); crop or bin "
            "one of them first"
        )


def _check_image(image: Any, what: str) -> None:
    if isinstance(image, DiskImage) and image.closed:
        raise closed_error(image.path)
    shape_of(image)
    _dtype_of(image)


def _check_mask(image: Any, what: str) -> None:
    dtype = _dtype_of(image)
    if dtype.kind == "f":
        raise TypeError(
            f"{what} expects a mask (an integer image, 0 = background, "
            f"nonzero = foreground) but {name_of(image)} holds {dtype} values; "
            "make a mask first, e.g. with threshold(image, low)"
        )


# --- the generic block-wise run ----------------------------------------------
def blockwise(
    fn: Callable[..., np.ndarray],
    inputs: Sequence[Any],
    *,
    geometry: Geometry,
    what: str,
    depth: Sequence[int] = (0, 0, 0, 0, 0),
    boundary: Any = "none",
    block_shape: Sequence[int] | None = None,
    fit_halo: bool = True,
    like: Any = None,
) -> Run:
    """A run writing ``fn(*blocks)`` (5D blocks with halo) for each block."""
    first = inputs[0]
    itemsize = max(_dtype_of(i).itemsize for i in inputs)
    chunks = _block_chunks(first, itemsize, depth, block_shape)
    if fit_halo:
        fitted, depth = _fit_halo(shape_of(first), chunks, depth)
        chunks = (fitted[0], fitted[1], fitted[2], fitted[3], fitted[4])
    output = new_output(geometry, what, like if like is not None else first)

    def plan(run: Run) -> Steps:
        readers = [BoxReader(img, run.token) for img in inputs]
        writer = BlockWriter(run.image, run.token)
        tasks, sizes = map_tasks(readers, fn, chunks, writer, depth, boundary)
        yield 0, run.total
        yield from run.execute(tasks, sizes)
        return run.output

    return Run(output, plan, what, geometry.nbytes)


def drive(run: Run, progress: ProgressCallback | None) -> Any:
    """Drive ``run`` to its end; return its result."""
    return run_steps(iter(run), progress)


# --- apply -------------------------------------------------------------------
_BOUNDARIES = ("reflect", "periodic", "nearest", "none")


def apply_run(
    func: Callable[..., np.ndarray],
    image: Any,
    *images: Any,
    depth: Any = 0,
    dtype: Any = None,
    boundary: Any = "reflect",
    block_shape: Sequence[int] | None = None,
) -> Run:
    """The :class:`Run` of :func:`apply` (see there)."""
    if not callable(func):
        raise TypeError(f"func must be callable, got {func!r}")
    for img in (image, *images):
        _check_image(img, "apply")
        _same_shape(image, img, "apply")
    if not (
        boundary in _BOUNDARIES
        or (isinstance(boundary, numbers.Real) and not isinstance(boundary, bool))
    ):
        raise ValueError(
            f"boundary must be one of {', '.join(_BOUNDARIES)} or a number, "
            f"got {boundary!r}"
        )
    dz, dy, dx = _per_axis(depth, "depth", image, integer=True, minimum=0)
    shape = shape_of(image)
    for axis, d, n in (("x", dx, shape[4]), ("y", dy, shape[3]), ("z", dz, shape[2])):
        if d > n:
            raise ValueError(
                f"apply: a halo of depth {d} along {axis} is larger than the "
                f"image, which has size_{axis} = {n}; use depth <= {n}"
            )
    out_dtype = _dtype_of(image) if dtype is None else as_dtype(dtype)
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
        fit_halo=False,
    )


# --- filters -----------------------------------------------------------------
def gaussian_run(
    image: Any, sigma: Any, *, truncate: float = 4.0, block_shape: Any = None
) -> Run:
    """The :class:`Run` of :func:`gaussian`."""
    import scipy.ndimage as ndi

    _check_image(image, "gaussian")
    sz, sy, sx = _per_axis(sigma, "sigma", image, integer=False, minimum=0)
    scalar = isinstance(sigma, (numbers.Real, np.number))
    if max(sz, sy, sx) <= 0 or (scalar and sigma <= 0):
        raise ValueError(
            f"gaussian: sigma must be greater than 0 pixels, got {sigma!r}; "
            "e.g. sigma=2"
        )
    sigmas = (0.0, 0.0, sz, sy, sx)
    depth = tuple(int(truncate * s + 0.5) for s in sigmas)
    dtype = _dtype_of(image)

    def fn(block: np.ndarray) -> np.ndarray:
        return ndi.gaussian_filter(block, sigmas, mode="reflect", truncate=truncate)

    return blockwise(
        fn,
        [image],
        geometry=Geometry.from_shape(shape_of(image), dtype),
        what=f"gaussian(sigma={sigma}) of {name_of(image)}",
        depth=depth,
        block_shape=block_shape,
    )


def _size_filter(
    image: Any, size: Any, name: str, scipy_name: str, block_shape: Any
) -> Run:
    import scipy.ndimage as ndi

    _check_image(image, name)
    kz, ky, kx = _per_axis(size, "size", image, integer=True, minimum=1)
    sizes = (1, 1, kz, ky, kx)
    depth = tuple(k // 2 for k in sizes)
    filt = getattr(ndi, scipy_name)

    def fn(block: np.ndarray) -> np.ndarray:
        return filt(block, size=sizes, mode="reflect")

    return blockwise(
        fn,
        [image],
        geometry=Geometry.from_shape(shape_of(image), _dtype_of(image)),
        what=f"{name}(size={size}) of {name_of(image)}",
        depth=depth,
        block_shape=block_shape,
    )


def median_run(image: Any, size: Any, *, block_shape: Any = None) -> Run:
    """The :class:`Run` of :func:`median`."""
    return _size_filter(image, size, "median", "median_filter", block_shape)


def mean_run(image: Any, size: Any, *, block_shape: Any = None) -> Run:
    """The :class:`Run` of :func:`mean`."""
    return _size_filter(image, size, "mean", "uniform_filter", block_shape)


# --- threshold and Otsu ------------------------------------------------------
def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if math.isnan(float(value)):
        raise ValueError(f"{name} must be a number, got NaN")
    return float(value)


def threshold_run(
    image: Any, low: Any, high: Any = None, *, block_shape: Any = None
) -> Run:
    """The :class:`Run` of :func:`threshold`."""
    _check_image(image, "threshold")
    if low is None and high is None:
        raise ValueError(
            "threshold: give low (the bright phase: value >= low), high (the "
            "dark phase: value <= high) or both; otsu(image) gives a value "
            "between two phases"
        )
    lo = -math.inf if low is None else _number(low, "low")
    hi = math.inf if high is None else _number(high, "high")
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


def _reduction_run(
    image: Any,
    passes: Callable[[Run, BoxReader, Sequence[int]], Steps],
    what: str,
    n_passes: int,
    block_shape: Any = None,
) -> Run:
    """A run with no output image: block-wise reductions, a value returned."""
    _check_image(image, what)
    itemsize = _dtype_of(image).itemsize
    chunks = _block_chunks(image, itemsize, (0,) * 5, block_shape)
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


def _minmax(run: Run, reader: BoxReader, chunks: Sequence[int]) -> Steps:
    tasks, sizes = reduce_tasks(reader, _minmax_block, chunks)
    parts = yield from run.execute(tasks, sizes)
    lo = min(float(p[0]) for p in parts)
    hi = max(float(p[1]) for p in parts)
    return lo, hi


def otsu_run(image: Any, *, block_shape: Any = None) -> Run:
    """The :class:`Run` of :func:`otsu`."""
    integer = _dtype_of(image).kind in "iu"

    def passes(run: Run, reader: BoxReader, chunks: Sequence[int]) -> Steps:
        from skimage.filters import threshold_otsu

        lo, hi = yield from _minmax(run, reader, chunks)
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

    return _reduction_run(image, passes, f"otsu of {name_of(image)}", 2, block_shape)


# --- morphology --------------------------------------------------------------
def _footprint(image: Any, radius: Any, what: str) -> np.ndarray:
    if isinstance(radius, bool) or not isinstance(
        radius, (numbers.Integral, np.integer)
    ):
        raise TypeError(f"{what}: radius must be a whole number, got {radius!r}")
    if radius < 0:
        raise ValueError(f"{what}: radius must be 0 or more, got {radius}")
    from skimage.morphology import ball, disk

    r = int(radius)
    fp = disk(r)[None] if shape_of(image)[2] == 1 else ball(r)
    return fp.astype(bool)[None, None]


def _morph_run(
    image: Any, radius: Any, name: str, scipy_name: str, passes: int, block_shape: Any
) -> Run:
    import scipy.ndimage as ndi

    _check_image(image, name)
    _check_mask(image, name)
    structure = _footprint(image, radius, name)
    r = int(radius)
    depth = (0, 0, r * passes if structure.shape[2] > 1 else 0, r * passes, r * passes)
    filt = getattr(ndi, scipy_name)

    def fn(block: np.ndarray) -> np.ndarray:
        if r == 0:
            return (block != 0).astype(np.uint8)
        return filt(block != 0, structure=structure).astype(np.uint8)

    return blockwise(
        fn,
        [image],
        geometry=Geometry.from_shape(shape_of(image), np.uint8),
        what=f"{name}(radius={radius}) of {name_of(image)}",
        depth=depth,
        block_shape=block_shape,
    )


def dilate_run(mask: Any, radius: Any, *, block_shape: Any = None) -> Run:
    """The :class:`Run` of :func:`dilate`."""
    return _morph_run(mask, radius, "dilate", "binary_dilation", 1, block_shape)


def erode_run(mask: Any, radius: Any, *, block_shape: Any = None) -> Run:
    """The :class:`Run` of :func:`erode`."""
    return _morph_run(mask, radius, "erode", "binary_erosion", 1, block_shape)


def opening_run(mask: Any, radius: Any, *, block_shape: Any = None) -> Run:
    """The :class:`Run` of :func:`opening`."""
    return _morph_run(mask, radius, "opening", "binary_opening", 2, block_shape)


def closing_run(mask: Any, radius: Any, *, block_shape: Any = None) -> Run:
    """The :class:`Run` of :func:`closing`."""
    return _morph_run(mask, radius, "closing", "binary_closing", 2, block_shape)


# --- arithmetic and conversion -----------------------------------------------
def _to_type(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float64 values into ``dtype``: rounded and clipped for integers."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.rint(values)
        np.nan_to_num(values, copy=False, nan=0.0, posinf=info.max, neginf=info.min)
        np.clip(values, info.min, info.max, out=values)
        return values.astype(dtype)
    with np.errstate(over="ignore"):
        return values.astype(dtype)


def arithmetic_run(
    a: Any, op: str, b: Any, *, dtype: Any = None, block_shape: Any = None
) -> Run:
    """The :class:`Run` of :func:`arithmetic`."""
    _check_image(a, "arithmetic")
    if not isinstance(op, str) or op.lower() not in _OPS:
        raise ValueError(
            f"arithmetic: unknown operation {op!r}; use one of + - * / min max"
        )
    kind = _OPS[op.lower()]
    scalar = isinstance(b, (numbers.Real, np.number)) and not isinstance(b, bool)
    if not scalar:
        _check_image(b, "arithmetic")
        _same_shape(a, b, f"arithmetic {op!r}")
    else:
        b = _number(b, "b")
    out_dtype = _dtype_of(a) if dtype is None else as_dtype(dtype)
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
        return _to_type(values, out_dtype)

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


def convert_run(
    image: Any, dtype: Any, rescale: bool = True, *, block_shape: Any = None
) -> Run:
    """The :class:`Run` of :func:`convert`."""
    _check_image(image, "convert")
    out_dtype = as_dtype(dtype)
    shape = shape_of(image)
    geometry = Geometry.from_shape(shape, out_dtype)
    what = f"convert {name_of(image)} to {out_dtype}"
    if not rescale:

        def fn(block: np.ndarray) -> np.ndarray:
            if block.dtype == out_dtype:
                return block
            if out_dtype.kind in "iu":
                return _to_type(block.astype(np.float64), out_dtype)
            return block.astype(out_dtype)

        return blockwise(
            fn, [image], geometry=geometry, what=what, block_shape=block_shape
        )

    itemsize = max(_dtype_of(image).itemsize, out_dtype.itemsize)
    chunks = _block_chunks(image, itemsize, (0,) * 5, block_shape)
    output = new_output(geometry, what, image)
    if out_dtype.kind in "iu":
        target = (float(np.iinfo(out_dtype).min), float(np.iinfo(out_dtype).max))
    else:
        target = (0.0, 1.0)

    def plan(run: Run) -> Steps:
        reader = BoxReader(image, run.token)
        yield 0, run.total
        lo, hi = yield from _minmax(run, reader, chunks)  # counts the input's bytes
        scale = (target[1] - target[0]) / (hi - lo) if hi > lo else 0.0

        def fn(block: np.ndarray) -> np.ndarray:
            values = (block.astype(np.float64) - lo) * scale + target[0]
            return _to_type(values, out_dtype)

        writer = BlockWriter(run.image, run.token)
        tasks, sizes = map_tasks([reader], fn, chunks, writer)
        yield from run.execute(tasks, sizes)
        return run.output

    total = geometry.nbytes + math.prod(shape) * _dtype_of(image).itemsize
    return Run(output, plan, what, total)


# --- bin and crop --------------------------------------------------------------
def bin_run(image: Any, factor: Any, *, block_shape: Any = None) -> Run:
    """The :class:`Run` of :func:`bin`."""
    _check_image(image, "bin")
    fz, fy, fx = _per_axis(factor, "factor", image, integer=True, minimum=1)
    fz = max(1, fz)
    t, c, z, y, x = shape_of(image)
    for axis, f, n in (("x", fx, x), ("y", fy, y), ("z", fz, z)):
        if f > n:
            raise ValueError(
                f"bin: factor {f} along {axis} is larger than the image "
                f"(size_{axis} = {n}); use a factor <= {n}"
            )
    out_shape = (t, c, z // fz, y // fy, x // fx)
    dtype = _dtype_of(image)
    geometry = Geometry.from_shape(out_shape, dtype)
    base = _block_chunks(image, dtype.itemsize, (0,) * 5, block_shape)
    chunks = (
        1,
        1,
        max(fz, base[2] // fz * fz),
        max(fy, base[3] // fy * fy),
        max(fx, base[4] // fx * fx),
    )
    output = new_output(geometry, f"bin {name_of(image)} by {factor}", image)
    if isinstance(image, DiskImage):
        sz, sy, sx = image.spacing
        output.spacing = (sz * fz, sy * fy, sx * fx)

    factors = (1, 1, fz, fy, fx)
    out_chunks = tuple(c // f for c, f in zip(chunks, factors, strict=True))

    def plan(run: Run) -> Steps:
        import dask

        reader = BoxReader(image, run.token)
        writer = BlockWriter(run.image, run.token)
        task = dask.delayed(_bin_block, pure=False)
        tasks, sizes = [], []
        for box in _engine.block_grid(out_shape, out_chunks):
            tasks.append(task(reader, box, factors, dtype, writer))
            sizes.append(math.prod(b - a for a, b in box) * dtype.itemsize)
        yield 0, run.total
        yield from run.execute(tasks, sizes)
        return run.output

    return Run(output, plan, f"bin by {factor}", geometry.nbytes)


def _bin_block(
    reader: BoxReader,
    box: Sequence[tuple[int, int]],
    factors: Sequence[int],
    dtype: np.dtype,
    writer: BlockWriter,
) -> int:
    """Mean of ``factors`` blocks of the input for output ``box``."""
    block = reader.read(
        [(a * f, b * f) for (a, b), f in zip(box, factors, strict=True)]
    )
    bt, bc, bz, by, bx = block.shape
    _, _, fz, fy, fx = factors
    parts = block.reshape(bt, bc, bz // fz, fz, by // fy, fy, bx // fx, fx)
    means = parts.astype(np.float64).mean(axis=(3, 5, 7))
    return writer.write(box, _to_type(means, dtype))


def _index(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"crop: {name} must be a whole number, got {value!r}")
    return int(value)


def crop_run(
    image: Any,
    x: int,
    y: int,
    z: int = 0,
    size_x: int | None = None,
    size_y: int | None = None,
    size_z: int | None = None,
) -> Run:
    """The :class:`Run` of :func:`crop`."""
    _check_image(image, "crop")
    t_n, c_n, z_n, y_n, x_n = shape_of(image)
    box = []
    for axis, start, size, n in (
        ("x", x, size_x, x_n),
        ("y", y, size_y, y_n),
        ("z", z, size_z, z_n),
    ):
        start = _index(start, axis)
        size = n - start if size is None else _index(size, f"size_{axis}")
        if not 0 <= start < n or size < 1 or start + size > n:
            raise IndexError(
                f"crop: {axis} = {start} with size_{axis} = {size} reaches "
                f"outside the image (size_{axis} is {n}): use 0 <= {axis} and "
                f"{axis} + size_{axis} <= {n}"
            )
        box.append((start, size))
    (x0, nx), (y0, ny), (z0, nz) = box
    dtype = _dtype_of(image)
    geometry = Geometry.from_shape((t_n, c_n, nz, ny, nx), dtype)
    what = f"crop of {name_of(image)}"
    output = new_output(geometry, what, image)

    def plan(run: Run) -> Steps:
        yield 0, run.total
        writer = BlockWriter(run.image, run.token)
        kernel = _kernel_source(image, x_n, nx, writer)
        plane = ny * nx * dtype.itemsize
        if kernel is not None:
            src_path, src_offset, st = kernel
            fd = os.open(writer.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                done = 0
                for t, c, k in np.ndindex(t_n, c_n, nz):
                    at = src_offset + t * st[0] + c * st[1] + (z0 + k) * st[2]
                    at += y0 * st[3]
                    base = done
                    for n in _kernel_copy(src_path, at, fd, done, plane):
                        yield run.advance(base + n - run.done)
                    done += plane
            finally:
                os.close(fd)
            return run.output
        source = _Source(image)
        rows = max(1, _engine.BLOCK_BYTES // max(1, nx * dtype.itemsize))
        for t, c, k in np.ndindex(t_n, c_n, nz):
            for r in range(0, ny, rows):
                m = min(rows, ny - r)
                key = (t, c, z0 + k, slice(y0 + r, y0 + r + m), slice(x0, x0 + nx))
                block = source.block(key)
                writer.write(
                    [(t, t + 1), (c, c + 1), (k, k + 1), (r, r + m), (0, nx)],
                    block[None, None, None],
                )
                yield run.advance(block.nbytes)
        return run.output

    return Run(output, plan, what, geometry.nbytes)


def _kernel_source(
    image: Any, x_n: int, nx: int, writer: BlockWriter
) -> tuple[Any, int, tuple[int, ...]] | None:
    """(path, offset, strides) if the crop's rows can be copied by the kernel."""
    if not isinstance(image, DiskImage) or not image.is_mapped or nx != x_n:
        return None
    storage = image.storage
    if not isinstance(storage, MappedStorage) or storage.file_dtype != writer.dtype:
        return None
    st = storage.strides
    item = storage.file_dtype.itemsize
    if st[4] != item or st[3] != x_n * item:
        return None
    return image.path, storage.file_offset, st
