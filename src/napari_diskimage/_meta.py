"""What a disk image is besides its pixels: spacing, unit, colour, format.

:class:`ImageMeta` is frozen: an opener makes one, a disk image keeps it,
pickling carries it whole, processing copies it whole (``dataclasses.replace``
where one field changes) and binning scales it (:meth:`ImageMeta.binned`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

__all__ = ["ImageMeta"]


@dataclass(frozen=True)
class ImageMeta:
    """The metadata of a disk image.

    ``spacing`` is the physical size of a pixel along (z, y, x) in ``unit``
    (None: unknown); ``rgb`` is True when the c axis holds the red, green,
    blue (and alpha) samples of an RGB(A) image; ``kind`` names the format
    (``"tiff"``, ``"raw"``, ``"tiff sequence"``, ...); ``shown_series`` the
    series of the file a viewer shows as layers (TIFF: not pyramid levels or
    thumbnails).
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    unit: str | None = None
    rgb: bool = False
    kind: str = "raw"
    shown_series: tuple[int, ...] = field(default=(0,))

    def __post_init__(self) -> None:
        spacing = tuple(float(v) for v in self.spacing)
        if len(spacing) != 3:
            raise ValueError(f"spacing is (z, y, x), got {self.spacing!r}")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "rgb", bool(self.rgb))
        object.__setattr__(self, "shown_series", tuple(self.shown_series))

    def binned(self, factors_zyx: Sequence[float]) -> ImageMeta:
        """The metadata of this image binned by ``factors_zyx`` (z, y, x):
        the spacing is scaled by them, everything else kept."""
        fz, fy, fx = (float(f) for f in factors_zyx)
        z, y, x = self.spacing
        return replace(self, spacing=(z * fz, y * fy, x * fx))
