"""napari reader: a TIFF or RAW file opens as a disk image, not loaded.

napari (npe2) calls :func:`napari_get_reader` with a path; it returns
``None`` for files this plugin does not take, else a function that returns
image layer data.  The data are multiscale :class:`DisplayLevel` lists, so
napari reads only the planes, rows and columns it shows.  A TIFF with
several image series gives one layer per series (its pyramid levels and
thumbnails excepted; up to :data:`MAX_SERIES_LAYERS`); an RGB(A) TIFF gives
one colour layer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._diskimage import DiskImage
from .._files import RAW_SUFFIXES, TIFF_SUFFIXES
from .._geometry import Geometry
from .._open import kind_of, open_any, open_tiff, open_tiff_sequence
from .._sequence import SequenceGapWarning, find_slices
from ..display import display_axes, display_levels, sample_contrast_limits

__all__ = ["disk_image_layers", "napari_get_reader", "open_disk_image"]

logger = logging.getLogger(__name__)


LayerDataTuple = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[Any], list[LayerDataTuple]]

#: A TIFF with more image series than this shows only the first (a file
#: written page by page can declare thousands; each layer parses the file).
MAX_SERIES_LAYERS = 8

_CHANNEL_COLORMAPS = ("magenta", "green", "cyan", "yellow", "red", "blue")


def open_disk_image(path: str | os.PathLike[str]) -> DiskImage:
    """Open a TIFF, or a RAW file whose name carries its geometry, read-only.

    Raises
    ------
    ValueError
        The file is not a TIFF or RAW file, a RAW name without a geometry
        (open it with the "Open RAW" widget or :func:`open_raw`), or a file
        that is not a valid TIFF.
    FileNotFoundError, IsADirectoryError, PermissionError
        The path cannot be read.
    """
    p = Path(path)
    kind = kind_of(p)
    if kind.name == "tiff sequence":
        raise ValueError(f"{str(p)!r} is a folder: open it with open_tiff_sequence")
    if kind.name == "raw":
        try:
            Geometry.from_filename(p.name)
        except ValueError as exc:
            raise ValueError(
                f"{exc}. To open {str(p)!r} anyway, give its geometry in the "
                "'Open RAW' widget (Plugins menu) or call "
                "napari_diskimage.open_raw(path, Geometry(...))"
            ) from None
    return open_any(p)


def napari_get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return a reader for ``path`` if this plugin can open it, else ``None``.

    Cheap (only the file header is parsed) and never raises, as napari
    expects.  A file that is declined for a reason the user can act on (a
    RAW name without a geometry) gets a hint in the log
    and, inside napari, a notification.
    """
    try:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not paths:
            return None
        images: list[tuple[DiskImage, str]] = []
        for p in paths:
            opened = _try_open(p)
            if opened is None:
                for image, _ in images:
                    image.close()
                return None
            images.extend(opened)
    except Exception:  # napari's contract: a get_reader never raises
        logger.debug("napari-diskimage declined %r", path, exc_info=True)
        return None

    def read(_path: Any = None) -> list[LayerDataTuple]:
        # The images were opened (header only) by the check above.
        from .render3d import watch_current_viewer

        watch_current_viewer()  # a porous volume's 3D rendering
        layers: list[LayerDataTuple] = []
        for image, name in images:
            layers.extend(disk_image_layers(image, name=name))
        if "napari" in sys.modules:  # the offer of a view cache; never fails
            with contextlib.suppress(Exception):
                from .view_cache_offer import after_open

                after_open([image for image, _ in images])
        return layers

    return read


def _try_open(path: str | os.PathLike[str]) -> list[tuple[DiskImage, str]] | None:
    """The images of ``path`` to show and their layer names, or None."""
    p = Path(path)
    if p.is_dir() and p.suffix.lower() == ".zarr":
        return _try_zarr(p)
    if p.is_dir():
        return _try_folder(p)
    suffix = p.suffix.lower()
    if suffix not in (*TIFF_SUFFIXES, *RAW_SUFFIXES) or not p.is_file():
        return None
    try:
        first = open_disk_image(p)
    except (OSError, ValueError) as exc:
        _hint(f"napari-diskimage did not open {p.name}: {exc}")
        return None
    shown = first.shown_series
    if len(shown) == 1:
        return [(first, p.stem)]
    if len(shown) > MAX_SERIES_LAYERS:
        _hint(
            f"{p.name} holds {len(shown)} image series; napari-diskimage shows "
            "the first. List them with napari_diskimage.tiff_series(path) and "
            "open one with napari_diskimage.open_tiff(path, series=i)"
        )
        return [(first, p.stem)]
    return [(first, f"{p.stem} [series 0]"), *_open_series(p, shown[1:])]


def _try_folder(p: Path) -> list[tuple[DiskImage, str]] | None:
    """A folder of TIFF slices as one image; None if it holds none (napari's
    own reader may take it).  Gaps in the numbering are notified."""
    try:
        _, files, _ = find_slices(p)
    except OSError:
        return None
    if not files:
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SequenceGapWarning)
            image = open_tiff_sequence(p)
    except (OSError, ValueError) as exc:
        _hint(f"napari-diskimage did not open the folder {p.name}: {exc}")
        return None
    for w in caught:
        if issubclass(w.category, SequenceGapWarning):
            _warn(str(w.message))
    return [(image, p.name)]


def _try_zarr(p: Path) -> list[tuple[DiskImage, str]] | None:
    """An OME-Zarr or Zarr array folder as one image; None, with a hint, if
    it cannot be opened (napari-ome-zarr may take it)."""
    from .._open import open_zarr

    try:
        image = open_zarr(p)
    except (OSError, ValueError) as exc:
        _hint(f"napari-diskimage did not open {p.name}: {exc}")
        return None
    return [(image, p.name.removesuffix(".zarr").removesuffix(".ome"))]


def _warn(message: str) -> None:
    logger.warning(message)
    if "napari" in sys.modules:
        with contextlib.suppress(Exception):
            from napari.utils.notifications import show_warning

            show_warning(message)


def _open_series(p: Path, indices: Sequence[int]) -> list[tuple[DiskImage, str]]:
    """Each series ``indices`` of TIFF ``p``, named ``"<file> [series i]"``.

    A series that cannot be opened is left out, with a hint.
    """
    opened: list[tuple[DiskImage, str]] = []
    for i in indices:
        try:
            opened.append((open_tiff(p, series=i), f"{p.stem} [series {i}]"))
        except (OSError, ValueError, IndexError) as exc:
            _hint(f"napari-diskimage did not open series {i} of {p.name}: {exc}")
    return opened


def _hint(message: str) -> None:
    """Tell the user why a file was declined: the log, and napari if running."""
    logger.info(message)
    if "napari" in sys.modules:
        with contextlib.suppress(Exception):
            from napari.utils.notifications import show_info

            show_info(message)


def disk_image_layers(
    image: DiskImage, name: str | None = None
) -> list[LayerDataTuple]:
    """Image layer data for ``image``: one ``(data, kwargs, "image")`` per channel.

    ``data`` is the display pyramid (:func:`display_levels`: the levels
    stored in a pyramidal TIFF, then strided ones) and ``kwargs`` hold the
    name (the file name without suffix by default; `` [c<n>]`` is appended
    for multi-channel images), contrast limits from a bounded sample of the
    coarsest level, the physical scale and axis labels of the axes shown (t
    and z only when longer than 1), and ``metadata={"disk_image": image,
    "channel": c}``.  Nothing but the contrast sample is read.

    An RGB(A) image (``image.rgb``) is one colour layer (``rgb=True``, its
    levels end with a colour axis of 3 or 4) with ``"channel": None``.
    """
    if name is None:
        name = image.path.stem
    axes = display_axes(image)
    z_step, y_step, x_step = image.spacing
    scale_of = {"t": 1.0, "z": z_step, "y": y_step, "x": x_step}
    common: dict[str, Any] = {
        "multiscale": True,
        "scale": tuple(scale_of[a] for a in axes),
        "axis_labels": tuple(axes),
    }
    if image.unit:
        common["units"] = tuple("pixel" if a == "t" else image.unit for a in axes)
    n_channels = image.shape[1]
    if getattr(image, "rgb", False) and n_channels in (3, 4):
        return [_rgb_layer(image, name, common)]
    layers: list[LayerDataTuple] = []
    for c in range(n_channels):
        kwargs: dict[str, Any] = {
            "name": name if n_channels == 1 else f"{name} [c{c}]",
            "rgb": False,
            "contrast_limits": sample_contrast_limits(image, c),
            "metadata": {"disk_image": image, "channel": c},
            **common,
        }
        if n_channels > 1:
            colormaps = (
                ("red", "green", "blue") if n_channels == 3 else _CHANNEL_COLORMAPS
            )
            kwargs["colormap"] = colormaps[c % len(colormaps)]
            kwargs["blending"] = "additive"
        layers.append((display_levels(image, c), kwargs, "image"))
    return layers


def _rgb_layer(image: DiskImage, name: str, common: dict[str, Any]) -> LayerDataTuple:
    """One colour layer for an RGB(A) image: each level stacks the colours."""
    colours = tuple(range(image.shape[1]))
    if np.dtype(image.dtype) == np.uint8:
        limits = (0.0, 255.0)  # no need to read: the full range is right
    else:
        # uint16: from black to the brightest colour sampled (alpha aside),
        # so that colours keep their proportions
        _, high = sample_contrast_limits(image, colours[:3])
        limits = (0.0, high)
    kwargs = {
        "name": name,
        "rgb": True,
        "contrast_limits": limits,
        "metadata": {"disk_image": image, "channel": None},
        **common,
    }
    return (display_levels(image, colours), kwargs, "image")
