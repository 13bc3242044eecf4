"""One index normaliser for the (t, c, z, y, x) array-likes of the package.

:class:`~napari_diskimage.storage.PlaneView`, the lazily decoded TIFF's
``TczyxView`` and the display levels all take integers and slices (with an
optional ``...``) and turn them into one range per axis with
:func:`normalize_key`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_slice", "normalize_key"]


def _is_integer(k: Any) -> bool:
    return isinstance(k, (numbers.Integral, np.integer)) and not isinstance(
        k, (bool, np.bool_)
    )


def normalize_key(
    key: Any, shape: Sequence[int], *, negative_steps: bool = False
) -> tuple[list[range], tuple[int | slice, ...]]:
    """``(ranges, drop)`` for an index ``key`` into an array of ``shape``.

    ``ranges`` has one ``range`` per axis (an integer gives a range of
    one); indexing an array of their lengths with ``drop`` removes the
    axes that were integers.  ``key`` holds integers (negative ones count
    from the end), slices and at most one ``...``; missing axes are whole.

    Raises
    ------
    IndexError
        Too many indices, an integer out of bounds, or a negative step when
        ``negative_steps`` is False.
    TypeError
        Anything else than integers, slices and ``...`` (fancy indexing).
    """
    ndim = len(shape)
    if not isinstance(key, tuple):
        key = (key,)
    n_ellipsis = sum(k is Ellipsis for k in key)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_ellipsis:
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        rest = list(key[at + 1 :])
        fill = max(0, ndim - at - len(rest))
        key = (*key[:at], *[slice(None)] * fill, *rest)
    if len(key) > ndim:
        raise IndexError(f"too many indices for a {ndim}D image: {len(key)}")
    key = (*key, *[slice(None)] * (ndim - len(key)))
    ranges: list[range] = []
    drop: list[int | slice] = []
    for axis, (k, n) in enumerate(zip(key, shape, strict=True)):
        if isinstance(k, slice):
            r = range(*k.indices(n))
            if r.step < 0 and not negative_steps:
                raise IndexError("negative steps are not supported here")
            ranges.append(r)
            drop.append(slice(None))
        elif _is_integer(k):
            i = int(k) + (n if int(k) < 0 else 0)
            if not 0 <= i < n:
                name = "tczyx"[axis] if ndim == 5 else str(axis)
                raise IndexError(
                    f"index {int(k)} is out of bounds for axis {name} with size {n}"
                )
            ranges.append(range(i, i + 1))
            drop.append(0)
        else:
            raise TypeError(
                f"unsupported index {k!r}: integers, slices and '...' only; for "
                "other indexing read the pixels first (np.asarray), or copy "
                "the image (napari_diskimage.copy)"
            )
    return ranges, tuple(drop)


def as_slice(r: range) -> slice:
    """The slice that selects ``r`` (a range of non-negative indices, any
    step) from a sequence; ``slice(0, 0)`` if ``r`` is empty."""
    if len(r) == 0:
        return slice(0, 0)
    return slice(r.start, r.stop if r.stop >= 0 else None, r.step)
