"""Filters: gaussian, median, mean.

Each calls scipy on each block with the halo the filter needs and no
padding at the image's own edges, where scipy's ``mode`` applies as it
does on the whole array: results equal the same scipy call on the whole
volume in memory.  This is what dask-image's filters do over
``map_overlap``; here each block reads its own halo (bounded memory, see
``_engine``), blocks hold one t and one c, so only (z, y, x) is filtered,
and a halo wider than an axis makes the block span that axis instead of
failing.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._geometry import Geometry
from ._checks import check_image, dtype_of, name_of, per_axis, shape_of
from ._engine import Run
from ._generic import blockwise
from ._registry import Parameter, _Block, operation

__all__ = ["gaussian", "mean", "median"]

_SIZE = Parameter("size", "int", 3, minimum=1, maximum=255, help="box side, pixels")


@operation(
    "Gaussian smoothing",
    [Parameter("sigma", "float", 2.0, minimum=0.1, maximum=1000, help="pixels")],
)
def gaussian(
    image: Any,
    sigma: Any,
    *,
    truncate: float = 4.0,
    block_shape: _Block = None,
) -> Run:
    """Gaussian smoothing (``scipy.ndimage.gaussian_filter``, mode "reflect").

    ``sigma`` in pixels, > 0: a number or (x, y, z).  The halo is
    ``int(truncate * sigma + 0.5)`` pixels.  Same pixel type as the input
    (integers as scipy rounds them).

    Raises
    ------
    ValueError
        ``sigma`` is not greater than 0.
    """
    import scipy.ndimage as ndi

    check_image(image, "gaussian")
    sz, sy, sx = per_axis(sigma, "sigma", image, integer=False, minimum=0)
    scalar = isinstance(sigma, (numbers.Real, np.number))
    if max(sz, sy, sx) <= 0 or (scalar and sigma <= 0):
        raise ValueError(
            f"gaussian: sigma must be greater than 0 pixels, got {sigma!r}; "
            "e.g. sigma=2"
        )
    sigmas = (0.0, 0.0, sz, sy, sx)
    depth = tuple(int(truncate * s + 0.5) for s in sigmas)
    dtype = dtype_of(image)

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

    check_image(image, name)
    kz, ky, kx = per_axis(size, "size", image, integer=True, minimum=1)
    sizes = (1, 1, kz, ky, kx)
    depth = tuple(k // 2 for k in sizes)
    filt = getattr(ndi, scipy_name)

    def fn(block: np.ndarray) -> np.ndarray:
        return filt(block, size=sizes, mode="reflect")

    return blockwise(
        fn,
        [image],
        geometry=Geometry.from_shape(shape_of(image), dtype_of(image)),
        what=f"{name}(size={size}) of {name_of(image)}",
        depth=depth,
        block_shape=block_shape,
    )


@operation("Median filter", [_SIZE])
def median(
    image: Any,
    size: Any,
    *,
    block_shape: _Block = None,
) -> Run:
    """Median filter (``scipy.ndimage.median_filter``) over a box of ``size``
    pixels (a whole number >= 1, or (x, y, z)); any pixel type."""
    return _size_filter(image, size, "median", "median_filter", block_shape)


@operation("Mean filter", [_SIZE])
def mean(
    image: Any,
    size: Any,
    *,
    block_shape: _Block = None,
) -> Run:
    """Mean over a box of ``size`` pixels (``scipy.ndimage.uniform_filter``);
    same pixel type as the input."""
    return _size_filter(image, size, "mean", "uniform_filter", block_shape)
