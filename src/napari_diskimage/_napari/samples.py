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

from .._diskimage import DiskImage
from .._geometry import Geometry
from .._open import open_tiff
from .._scratch import _check_writable, format_bytes, get_disk_image_dir
from .._steps import run_steps
from ..io import copy, iter_save_tiff

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
    ).real
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
    from .render3d import watch_current_viewer

    _apply_saved_settings()
    image = copy(porosity_volume())
    watch_current_viewer()  # a porous volume's 3D rendering
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
    return Geometry(np.dtype(np.uint16), x, y, z)


def _interpolation(n_out: int, n_in: int) -> Any:
    """(n_out, n_in) weights of cubic B-spline interpolation from a coarse
    axis: smooth (no straight edges or corners), 4 weights per row, as a
    sparse matrix (products with it cost 4 multiplications per pixel)."""
    from scipy.sparse import csr_matrix

    pos = np.linspace(1, n_in - 2, n_out)
    base = np.floor(pos).astype(int)
    f = (pos - base).astype(np.float32)
    taps = (
        (1 - f) ** 3 / 6,
        (3 * f**3 - 6 * f**2 + 4) / 6,
        (-3 * f**3 + 3 * f**2 + 3 * f + 1) / 6,
        f**3 / 6,
    )
    weights = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    for k, w in enumerate(taps):
        np.add.at(weights, (rows, np.clip(base - 1 + k, 0, n_in - 1)), w)
    return csr_matrix(weights)


class _SyntheticVolume:
    """A lazily computed uint16 micro-CT scan of a porous material.

    Indexed (t, c, z, y, x) like a disk image, with t and c of size 1.  Each
    plane is computed when it is indexed (about 0.1 s for 2048 x 4096), so
    :func:`save_tiff` streams it into a file without it ever being in
    memory whole.  The pores are where a smooth random field (features of
    about 40 and 12 pixels, so pores of all sizes joined into a network) is
    high (cubic B-spline interpolation of coarse random grids: smooth
    pores), with soft partial-volume edges a few pixels wide; the solid has
    a grain texture; everything has scanner noise.  Grey levels: pores
    about 700, solid about 1900 (uint16), so the reader's sampled contrast
    limits show the structure.
    """

    def __init__(self, geometry: Geometry, seed: int = 0) -> None:
        self.geometry = geometry
        self.shape = geometry.shape
        self.dtype = np.dtype("uint16")
        rng = np.random.default_rng(seed)
        x, y, z = geometry.size_x, geometry.size_y, geometry.size_z
        self._fields = []
        for scale, weight in ((40, 1.0), (12, 0.45)):
            grid = tuple(max(4, n // scale + 4) for n in (z, y, x))
            field = rng.standard_normal(grid).astype(np.float32)
            field = _smooth(field)
            field /= field.std() or 1.0
            self._fields.append(
                (
                    field * np.float32(weight),
                    _interpolation(z, grid[0]).toarray(),
                    _interpolation(y, grid[1]),
                    _interpolation(x, grid[2]),
                )
            )
        # noise: a table of rows, taken at row- and plane-dependent shifts
        self._noise = rng.normal(0, 70, size=(97, x)).astype(np.float32)
        # pores where the field is in its top 30 %, measured on a few
        # planes at every 8th row (cheap): the same porosity at any size
        self._threshold = np.float32(0.0)
        rows = range(0, y, 8)
        sample = [self._field(k, rows)[0] for k in {0, z // 2, z - 1}]
        self._threshold = np.float32(np.quantile(np.concatenate(sample), 0.7))

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

    def _field(self, z: int, ys: range) -> tuple[np.ndarray, np.ndarray]:
        """The smooth field at plane ``z``, rows ``ys``; and its fine part."""
        rows = np.arange(ys.start, ys.stop, ys.step)
        f = np.zeros((len(rows), self.shape[4]), np.float32)
        fine = f
        for field, wz, wy, wx in self._fields:
            coarse = np.tensordot(wz[z], field, axes=(0, 0))  # (gy, gx)
            part = np.asarray((wx @ (wy[rows] @ coarse).T).T, dtype=np.float32)
            f += part
            fine = part
        return f.ravel(), fine.ravel()

    def _plane(self, z: int, ys: range) -> np.ndarray:
        rows = np.arange(ys.start, ys.stop, ys.step)
        flat, fine_flat = self._field(z, ys)
        f = flat.reshape(len(rows), self.shape[4])
        fine = fine_flat.reshape(f.shape)
        # partial volume: solid fraction falls from 1 to 0 across the edge
        solid = np.clip((self._threshold - f) * np.float32(2.0) + 0.5, 0.0, 1.0)
        grey = np.float32(700) + np.float32(1200) * solid
        grey += np.float32(150) * fine * solid  # grain texture in the solid
        grey += self._noise[(rows * 7 + z * 13) % len(self._noise)]
        np.clip(grey, 0, 65535, out=grey)
        return grey.astype(np.uint16)


def _smooth(field: np.ndarray) -> np.ndarray:
    """A light blur of a coarse random grid (no scipy needed at import)."""
    out = field.copy()
    for axis in range(field.ndim):
        if field.shape[axis] > 2:
            out = (np.roll(out, 1, axis) + 2 * out + np.roll(out, -1, axis)) / 4
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
    _check_writable(get_disk_image_dir())  # clear errors, before the work
    path = large_sample_file(size)
    if _is_complete(path, geometry):
        return path
    return (yield from iter_save_tiff(_SyntheticVolume(geometry), path))


def large_sample_file(size: int | str = DEFAULT_LARGE_SIZE) -> Path:
    """Where the large sample of ``size`` is (or will be) written: the
    disk-image directory, named after its geometry."""
    geometry = large_sample_geometry(size)
    name = geometry.filename("synthetic").removesuffix(".raw") + ".tif"
    return get_disk_image_dir() / name


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
    from .render3d import watch_current_viewer

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
    watch_current_viewer()  # a porous volume's 3D rendering
    return disk_image_layers(image, name="synthetic volume")
