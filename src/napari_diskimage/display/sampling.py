"""Bounded samples of an image's values: contrast limits, histograms.

Samples are taken from the rows and columns of the coarsest exact display
level (the pixels napari reads first anyway), within a budget of bytes
counted by the storage's :meth:`~napari_diskimage.storage.Storage.read_cost`.
"""

from __future__ import annotations

import numpy as np

from .._diskimage import DiskImage
from .levels import DisplayLevel, display_levels, read_cost

__all__ = ["SAMPLE_BYTES", "sample_contrast_limits", "sample_values"]

#: Most bytes read from the file to estimate contrast limits.
SAMPLE_BYTES = 16 << 20


def sample_contrast_limits(
    image: DiskImage,
    channel: int | tuple[int, ...] = 0,
    budget: int = SAMPLE_BYTES,
) -> tuple[float, float]:
    """Contrast limits (min, max) of a sample of the coarsest display level.

    The sample is taken from the rows and columns of the coarsest level of
    :func:`display_levels` (a stored level of a pyramidal TIFF, or every
    ``2**k``-th row and column): the pixels napari reads first anyway, so
    from a cold cache the sample costs the first view no extra disk reads,
    and a compressed file decodes only chunks the view needs.  At most
    ``budget`` bytes are read: the whole level if it fits, else 16 planes
    spread through t and z, and in each of them rows of the level spread
    evenly through the plane.  The limits span the values found, so a
    uint16 image whose values are 0..1255 shows with limits near 0..1255,
    not 0..65535.  NaN and infinities are ignored; a constant image gets
    ``(v, v + 1)``.  A tuple of channels (RGB) samples each of them.
    """
    channels = channel if isinstance(channel, tuple) else (channel,)
    coarsest = _coarsest_2d(image, channels[0])
    samples: list[np.ndarray] = []
    for c in channels:
        samples += _sample_level(
            coarsest.image, c, coarsest.factor, budget // len(channels)
        )
    return _limits(samples)


def sample_values(
    image: DiskImage, channel: int = 0, budget: int = SAMPLE_BYTES
) -> np.ndarray:
    """A bounded sample of the pixel values of one channel (1-D, finite).

    The same rows as :func:`sample_contrast_limits` reads (at most
    ``budget`` bytes, spread through the image): enough for a histogram
    such as Otsu's threshold, prefilled in a widget before any full pass.
    """
    coarsest = _coarsest_2d(image, channel)
    parts = _sample_level(coarsest.image, channel, coarsest.factor, budget)
    values = np.concatenate([p.ravel() for p in parts]) if parts else np.empty(0)
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    return values


def _coarsest_2d(image: DiskImage, channel: int) -> DisplayLevel:
    """The coarsest level of the pyramid that keeps every z plane."""
    return [lv for lv in display_levels(image, channel) if lv.zfactor == 1][-1]


def _sample_level(
    image: DiskImage, channel: int, factor: int, budget: int
) -> list[np.ndarray]:
    """Rows of ``image`` strided by ``factor`` (a display level), within budget."""
    t_size, _, z_size, y_size, x_size = image.shape
    ny, nx = -(-y_size // factor), -(-x_size // factor)
    row_cost = read_cost(image, 1, factor, nx, factor)
    planes = t_size * z_size
    rows_total = budget // row_cost
    if rows_total == 0:

        def _fits(n: int) -> bool:
            return read_cost(image, 1, 1, n, 1) <= budget

        # A row longer than the budget: the start of the middle row of the
        # level, every pixel (contiguous: the cheapest read).
        n, too_many = 1, x_size + 1  # the most pixels within budget
        while too_many - n > 1:
            mid = (n + too_many) // 2
            n, too_many = (mid, too_many) if _fits(mid) else (n, mid)
        y = (ny // 2) * factor
        return [image.read_region(0, channel, z_size // 2, y, 1, 1, 0, n, 1)]
    # 16 planes, or every plane if all of them fit in the budget
    n_planes = min(planes, rows_total, max(16, rows_total // ny))
    per_plane = budget // n_planes
    rows = max(1, min(ny, per_plane // row_cost))
    step = max(1, ny // rows)
    # read_region reads close rows as one block: spread them out more
    while rows > 1 and read_cost(image, rows, step * factor, nx, factor) > per_plane:
        rows -= max(1, rows // 8)
        step = max(1, ny // rows)
    y0 = (ny - 1 - (rows - 1) * step) // 2 * factor
    flat = np.linspace(0, planes - 1, n_planes).round().astype(int)
    samples = []
    for p in np.unique(flat):
        t, z = divmod(int(p), z_size)
        samples.append(
            image.read_region(t, channel, z, y0, rows, step * factor, 0, nx, factor)
        )
    return samples


def _limits(samples: list[np.ndarray]) -> tuple[float, float]:
    """(min, max) of the finite values of ``samples``; (v, v + 1) if constant."""
    lows, highs = [], []
    for values in samples:
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size:
            lows.append(float(values.min()))
            highs.append(float(values.max()))
    if not lows:
        return (0.0, 1.0)
    lo, hi = min(lows), max(highs)
    if hi <= lo:
        hi = lo + 1.0
    return (lo, hi)
