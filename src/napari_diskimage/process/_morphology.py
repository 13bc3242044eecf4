"""Binary morphology of masks: dilate, erode, opening, closing.

scipy's binary operations on each block with a halo of the radius (twice
it for opening and closing), with skimage's ball (3D) or disk (2D).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._diskimage import DiskImage
from .._geometry import Geometry
from ._checks import check_image, check_mask, name_of, shape_of
from ._engine import Run
from ._generic import blockwise
from ._registry import Driven, Parameter, _Block, operation

__all__ = ["closing", "dilate", "erode", "opening"]


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

    check_image(image, name)
    check_mask(image, name)
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


def _morphology(
    name: str, scipy_name: str, passes: int, title: str
) -> Driven[..., DiskImage]:
    """Register the operation ``name``: scipy's ``scipy_name`` applied
    ``passes`` times (opening and closing: 2)."""

    def make_run(mask: Any, radius: int, *, block_shape: _Block = None) -> Run:
        return _morph_run(mask, radius, name, scipy_name, passes, block_shape)

    make_run.__name__ = make_run.__qualname__ = name
    make_run.__doc__ = (
        f"Binary {name} of a mask (nonzero = foreground) with a ball (3D) or "
        f"disk (2D) of ``radius`` pixels, as ``scipy.ndimage.{scipy_name}`` "
        "with ``skimage.morphology.ball/disk(radius)``; a uint8 mask 0/1."
    )
    radius = Parameter("radius", "int", 1, minimum=0, maximum=100)
    return operation(title, [radius], mask_input=True)(make_run)


dilate = _morphology("dilate", "binary_dilation", 1, "Dilate mask")
erode = _morphology("erode", "binary_erosion", 1, "Erode mask")
opening = _morphology("opening", "binary_opening", 2, "Opening of mask")
closing = _morphology("closing", "binary_closing", 2, "Closing of mask")
