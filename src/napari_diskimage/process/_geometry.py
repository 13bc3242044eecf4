"""Operations that change the geometry: bin (mean of blocks) and crop."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._diskimage import DiskImage
from .._geometry import Geometry
from .._steps import Steps
from ..io.stream import Source, kernel_copy
from ..storage import FileLayout
from ._blocks import BLOCK_BYTES, block_chunks, block_grid
from ._checks import check_image, dtype_of, name_of, per_axis, shape_of
from ._engine import Run
from ._registry import Parameter, _Block, operation
from ._tasks import BlockWriter, BoxReader, new_output
from ._values import to_type

__all__ = ["bin", "crop"]


# --- bin -----------------------------------------------------------------------
@operation(
    "Bin (mean of blocks)",
    [Parameter("factor", "int", 2, minimum=1, maximum=1024)],
)
def bin(
    image: Any,
    factor: Any,
    *,
    block_shape: _Block = None,
) -> Run:
    """Mean over blocks of ``factor`` pixels (a number or (x, y, z)).

    The result has ``size // factor`` pixels along each axis (pixels
    beyond the last whole block are left out), the same pixel type
    (integers rounded), and its spacing multiplied by the factors.
    """
    check_image(image, "bin")
    fz, fy, fx = per_axis(factor, "factor", image, integer=True, minimum=1)
    fz = max(1, fz)
    t, c, z, y, x = shape_of(image)
    for axis, f, n in (("x", fx, x), ("y", fy, y), ("z", fz, z)):
        if f > n:
            raise ValueError(
                f"bin: factor {f} along {axis} is larger than the image "
                f"(size_{axis} = {n}); use a factor <= {n}"
            )
    out_shape = (t, c, z // fz, y // fy, x // fx)
    dtype = dtype_of(image)
    geometry = Geometry.from_shape(out_shape, dtype)
    base = block_chunks(image, dtype.itemsize, (0,) * 5, block_shape)
    chunks = (
        1,
        1,
        max(fz, base[2] // fz * fz),
        max(fy, base[3] // fy * fy),
        max(fx, base[4] // fx * fx),
    )
    output = new_output(geometry, f"bin {name_of(image)} by {factor}", image)
    if isinstance(image, DiskImage):
        output.meta = output.meta.binned((fz, fy, fx))

    factors = (1, 1, fz, fy, fx)
    out_chunks = tuple(c // f for c, f in zip(chunks, factors, strict=True))

    def plan(run: Run) -> Steps:
        import dask

        reader = BoxReader(image, run.token)
        writer = BlockWriter(run.image, run.token)
        task = dask.delayed(_bin_block, pure=False)
        tasks, sizes = [], []
        for box in block_grid(out_shape, out_chunks):
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
    return writer.write(box, to_type(means, dtype))


# --- crop ----------------------------------------------------------------------
def _index(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"crop: {name} must be a whole number, got {value!r}")
    return int(value)


@operation(
    "Crop",
    [
        Parameter("x", "int", 0, minimum=0),
        Parameter("y", "int", 0, minimum=0),
        Parameter("z", "int", 0, minimum=0),
        Parameter("size_x", "int", 1, minimum=1),
        Parameter("size_y", "int", 1, minimum=1),
        Parameter("size_z", "int", 1, minimum=1),
    ],
)
def crop(
    image: Any,
    x: int,
    y: int,
    z: int = 0,
    size_x: int | None = None,
    size_y: int | None = None,
    size_z: int | None = None,
) -> Run:
    """The box from (x, y, z) of ``size_x`` x ``size_y`` x ``size_z`` pixels
    (default: to the far edge), all channels and frames.  Whole rows of a
    mapped file are copied by the kernel.

    Raises
    ------
    IndexError
        The box reaches outside the image.
    """
    check_image(image, "crop")
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
    dtype = dtype_of(image)
    geometry = Geometry.from_shape((t_n, c_n, nz, ny, nx), dtype)
    what = f"crop of {name_of(image)}"
    output = new_output(geometry, what, image)

    def plan(run: Run) -> Steps:
        yield 0, run.total
        writer = BlockWriter(run.image, run.token)
        layout = _kernel_layout(image, x_n, nx, writer)
        plane = ny * nx * dtype.itemsize
        if layout is not None:
            st = layout.strides
            fd = os.open(writer.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                done = 0
                for t, c, k in np.ndindex(t_n, c_n, nz):
                    at = layout.offset + t * st[0] + c * st[1] + (z0 + k) * st[2]
                    at += y0 * st[3]
                    base = done
                    for n in kernel_copy(layout.path, at, fd, done, plane):
                        yield run.advance(base + n - run.done)
                    done += plane
            finally:
                os.close(fd)
            return run.output
        source = Source(image)
        rows = max(1, BLOCK_BYTES // max(1, nx * dtype.itemsize))
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


def _kernel_layout(
    image: Any, x_n: int, nx: int, writer: BlockWriter
) -> FileLayout | None:
    """Where the input's pixels lie if the crop's rows (whole rows, the
    output's pixel type) can be copied by the kernel; else None."""
    if not isinstance(image, DiskImage) or nx != x_n:
        return None
    layout = image.storage.file_layout()
    if layout is None or layout.dtype != writer.dtype:
        return None
    st = layout.strides
    item = layout.dtype.itemsize
    if st[4] != item or st[3] != x_n * item:
        return None
    return layout
