"""Sample volumes: a small porous material and a large synthetic volume.

* :func:`porosity_volume` is a 125 x 97 x 47 (x, y, z) uint16 volume with
  values 0..1255 that looks like a micro-CT scan of a porous material (the
  size of IPSDK's porosity example), made with numpy in milliseconds.
* :func:`large_sample_path` writes a volume of a few GiB into the disk-image
  directory once, streaming it slab by slab (bounded memory), and reuses
  it afterwards: it is there to show a volume larger than one wants to load
  opening at once.

The napari sample-data commands (``porosity_sample``, ``large_sample``)
return layers backed by disk images.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from .._diskimage import DiskImage, run_steps
from .._geometry import Geometry
from .._io import copy, iter_save_tiff
from .._scratch import _check_writable, format_bytes, get_disk_image_dir
from .._tiff import open_tiff

__all__ = [
    "DEFAULT_LARGE_SIZE",
    "iter_write_large_sample",
    "large_sample",
    "large_sample_geometry",
    "large_sample_path",
    "parse_size",
    "porosity_sample",
    "porosity_volume",
]

#: Size of the large sample volume when none is given: 4 GiB.
DEFAULT_LARGE_SIZE = 4 << 30

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "kb": 10**3,
    "m": 1 << 20,
    "mib": 1 << 20,
    "mb": 10**6,
    "g": 1 << 30,
    "gib": 1 << 30,
    "gb": 10**9,
    "t": 1 << 40,
    "tib": 1 << 40,
    "tb": 10**12,
}


def parse_size(text: str | int) -> int:
    """Bytes in ``"4GiB"``, ``"512MiB"``, ``"1.5G"``, ``"2GB"`` or ``123``.

    ``K``, ``M``, ``G``, ``T`` with or without ``iB`` are powers of 1024;
    ``KB``, ``MB``, ``GB``, ``TB`` are powers of 1000.

    >>> parse_size("4GiB")
    4294967296
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = match[2].lower() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(
                f"cannot read a size from {text!r}: write e.g. '4GiB', '512MiB' "
                "or a number of bytes"
            )
        value = int(float(match[1]) * _UNITS[unit])
    if value < 1:
        raise ValueError(f"size must be at least 1 byte, got {text!r}")
    return value


# --- the small porosity-like volume ------------------------------------------
def porosity_volume(seed: int = 0) -> np.ndarray:
    """A porous-material-like (z, y, x) = (47, 97, 125) uint16 volume.

    Smoothed random noise, thresholded into grains (about 1000) and pores
    (about 100) with soft edges and scanner-like noise; values 0..1255.
    The same ``seed`` always gives the same volume.
    """
    shape = (47, 97, 125)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(shape)
    # Low-pass filter in Fourier space: blobs a few pixels wide that join
    # into a connected pore network, like sintered grains.
    freqs = np.meshgrid(*(np.fft.fftfreq(n) for n in shape), indexing="ij")
    radius2 = sum(f**2 for f in freqs)
    field = np.fft.ifftn(
        np.fft.fftn(noise) * np.exp(-radius2 * (2 * np.pi * 3) ** 2 / 2)
    )
    field = field.real
    field /= field.std()
    threshold = np.quantile(field, 0.3)  # about 30 % porosity
    solid = np.clip((field - threshold) * 3.0 + 0.5, 0.0, 1.0)
    volume = 100.0 + 900.0 * solid + rng.normal(0.0, 40.0, shape)
    volume[volume.shape[0] // 2, 40:46, 60:66] = 1255  # a dense inclusion
    return np.clip(np.rint(volume), 0, 1255).astype(np.uint16)


def _apply_saved_settings() -> None:
    """Use the disk-image directory the user chose in the widget, if any."""
    from .._settings import apply_saved_disk_image_dir

    problem = apply_saved_disk_image_dir()
    if problem:
        logging.getLogger(__name__).warning(problem)


def porosity_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """napari sample: the porosity-like volume as a (scratch) disk image.

    The volume is copied into a scratch file in the disk-image directory,
    so the widgets can edit it like any disk image; the file is deleted
    when the layer is removed.
    """
    from .reader import disk_image_layers

    _apply_saved_settings()
    image = copy(porosity_volume())
    return disk_image_layers(image, name="porosity")


# --- the large synthetic volume ----------------------------------------------
def large_sample_geometry(size: int | str = DEFAULT_LARGE_SIZE) -> Geometry:
    """uint16 geometry of about ``size`` bytes: y x 2y pixel planes, z = y / 8.

    4 GiB gives 4096 x 2048 x 256 (x, y, z).
    """
    nbytes = parse_size(size)
    y = max(16, round((2 * nbytes) ** (1 / 3) / 16) * 16)
    x = 2 * y
    z = max(1, round(nbytes / (2 * x * y)))
    return Geometry("uint16", x, y, z)


class _SyntheticVolume:
    """A lazily computed uint16 volume: a gyroid-like porous foam.

    Indexed (t, c, z, y, x) like a disk image, with t and c of size 1.  Each
    block is computed when it is indexed, so :func:`save_tiff` can stream it
    into a file without it ever being in memory whole.
    """

    def __init__(self, geometry: Geometry, seed: int = 0) -> None:
        self.geometry = geometry
        self.shape = geometry.shape
        self.dtype = np.dtype("uint16")
        # Two gyroids of unrelated periods (about 1/7 and 1/19 of the plane
        # height) make an irregular foam; porosity grows from left to
        # right, so each part of the volume looks different.
        self._k = (
            2 * np.pi / (geometry.size_y / 7),
            2 * np.pi / (geometry.size_y / 19),
        )
        self._x = [
            (np.sin(x), np.cos(x))
            for k in self._k
            for x in [np.arange(geometry.size_x, dtype=np.float32) * np.float32(k)]
        ]
        self._threshold = np.linspace(-0.9, 0.9, geometry.size_x, dtype=np.float32)
        rng = np.random.default_rng(seed)
        self._noise = rng.integers(0, 60, size=(61, geometry.size_x), dtype=np.uint16)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (5 - len(key))
        ranges = [_as_range(k, n) for k, n in zip(key, self.shape, strict=True)]
        zs, ys = ranges[2], ranges[3]
        planes = np.stack([self._plane(z, ys) for z in zs])[:, :, key[4]]
        out = planes.reshape(
            (len(ranges[0]), len(ranges[1]), *planes.shape)
        )  # t and c have size 1
        drop = tuple(0 if not isinstance(k, slice) else slice(None) for k in key)
        return out[drop]

    def _plane(self, z: int, ys: range) -> np.ndarray:
        rows = np.arange(ys.start, ys.stop, ys.step)
        g = np.zeros((len(rows), self.shape[4]), np.float32)
        for (sin_x, cos_x), k, weight in zip(self._x, self._k, (1.0, 0.7), strict=True):
            # Gyroid: sin x cos y + sin y cos z + sin z cos x, a triply
            # periodic surface between two interwoven channel networks.
            y = rows.astype(np.float32) * np.float32(k)
            sin_y, cos_y = np.sin(y) * weight, np.cos(y) * weight
            sin_z, cos_z = np.sin(z * k), np.cos(z * k)
            g += np.multiply.outer(cos_y, sin_x)
            g += (sin_y * np.float32(cos_z))[:, None]
            g += (np.float32(sin_z * weight) * cos_x)[None, :]
        g -= self._threshold[None, :]
        g *= np.float32(2.0)
        np.clip(g, 0.0, 1.0, out=g)
        g *= np.float32(1000.0)
        out = g.astype(np.uint16)
        out += np.uint16(100)
        out += self._noise[(rows + 7 * z) % len(self._noise)]
        return out


def _as_range(k: Any, n: int) -> range:
    if isinstance(k, slice):
        return range(n)[k]
    return range(int(k), int(k) + 1)


def large_sample_path(
    size: int | str = DEFAULT_LARGE_SIZE,
    *,
    progress: Callable[[int, int], Any] | None = None,
) -> Path:
    """The large sample file for ``size``, written first if it is missing.

    The file is an uncompressed ImageJ TIFF named after its geometry (e.g.
    ``synthetic_4096x2048x256_UInt16.tif``) in the disk-image directory
    (:func:`get_disk_image_dir`).  It is written once, slab by slab with
    bounded memory, under a temporary name renamed when complete, and
    reused while it opens with the expected geometry.

    Raises
    ------
    OSError
        Not enough space in the disk-image directory (checked first).
    """
    return run_steps(iter_write_large_sample(size), progress)


def iter_write_large_sample(
    size: int | str = DEFAULT_LARGE_SIZE,
) -> Generator[tuple[int, int], None, Path]:
    """Steps ``(done_bytes, total_bytes)`` of :func:`large_sample_path`.

    Yields nothing when the file is already there; closing the generator
    cancels and removes the partial file.
    """
    _apply_saved_settings()
    geometry = large_sample_geometry(size)
    name = geometry.filename("synthetic").removesuffix(".raw") + ".tif"
    folder = get_disk_image_dir()
    _check_writable(folder)  # clear errors for a bad folder, before the work
    path = folder / name
    if _is_complete(path, geometry):
        return path
    return (yield from iter_save_tiff(_SyntheticVolume(geometry), path))


def _is_complete(path: Path, geometry: Geometry) -> bool:
    if not path.is_file():
        return False
    try:
        with open_tiff(path) as image:
            return image.geometry == geometry
    except (OSError, ValueError):
        return False


def large_sample(
    size: int | str = DEFAULT_LARGE_SIZE,
) -> list[tuple[Any, dict[str, Any], str]]:
    """napari sample: the large synthetic volume, opened not loaded.

    The first call writes the file (4 GiB by default: about half a minute,
    shown as a napari progress bar); later calls open it at once.
    """
    from .reader import disk_image_layers

    total = large_sample_geometry(size).nbytes
    try:
        from napari.utils import progress as napari_progress
    except ImportError:  # pragma: no cover - called outside napari
        path = large_sample_path(size)
    else:
        with napari_progress(
            total=total, desc=f"Writing the large sample ({format_bytes(total)})"
        ) as bar:
            last = [0]

            def advance(done: int, _total: int) -> None:
                bar.update(done - last[0])
                last[0] = done

            path = large_sample_path(size, progress=advance)
    image: DiskImage = open_tiff(path)
    return disk_image_layers(image, name="synthetic volume")
