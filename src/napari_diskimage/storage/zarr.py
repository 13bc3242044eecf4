"""Zarr stores: OME-Zarr (NGFF 0.4 and 0.5) and plain Zarr v2/v3 arrays.

The storage kind's opener, :func:`open_zarr_storage`: it reads the
metadata only (``zarr.json`` / ``.zattrs`` / ``.zarray``) and returns the
pixels of each resolution level as a
:class:`~napari_diskimage.storage.zarr_array.ZarrStorage`, which decodes
the chunks a read touches, through a bounded cache shared by the levels.
An OME-Zarr's levels (``multiscales[0].datasets``) are the display
pyramid; with ``mode="r+"`` the finest level is writable and a written
pixel updates the coarser levels covering it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._meta import ImageMeta
from ._base import Opened
from ._zarr_pixels import _AXES
from .zarr_array import (
    CACHE_BYTES,
    ZarrHandle,
    ZarrStorage,
    corrupt,
    is_zarr_store,
    open_node,
    zarr_problem,
)

__all__ = ["CACHE_BYTES", "ZarrStorage", "is_zarr_store", "open_zarr_storage"]

_TYPES = {"time": "t", "channel": "c"}


def _axis_names(axes: Any) -> list[Any]:
    return [a.get("name") if isinstance(a, dict) else a for a in axes]


def _axes_of(path: Path, axes: Any) -> str:
    letters = []
    for axis in axes:
        name = axis.get("name") if isinstance(axis, dict) else axis
        kind = axis.get("type") if isinstance(axis, dict) else None
        letter = (
            str(name).lower() if str(name).lower() in _AXES else _TYPES.get(kind or "")
        )
        if letter is None or letter in letters:
            raise corrupt(
                path,
                f"its axes {_axis_names(axes)} cannot be mapped to (t, c, z, y, x)",
            )
        letters.append(letter)
    order = "".join(sorted(letters, key=_AXES.index))
    if "".join(letters) != order or not {"y", "x"} <= set(letters):
        raise corrupt(
            path, f"its axes {''.join(letters)!r} are not in t, c, z, y, x order"
        )
    return "".join(letters)


def _multiscales(attrs: Any) -> tuple[list[Any] | None, str | None]:
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:
        return ome["multiscales"], str(ome.get("version", "0.5"))
    if "multiscales" in attrs:
        ms = attrs["multiscales"]
        version = ms[0].get("version") if ms and isinstance(ms[0], dict) else None
        return ms, None if version is None else str(version)
    return None, None


def _scale(path: Path, dataset: dict[str, Any], ndim: int) -> list[float]:
    scale = [1.0] * ndim
    for transform in dataset.get("coordinateTransformations", []) or []:
        if transform.get("type") == "scale" and "scale" in transform:
            values = transform["scale"]
            if len(values) != ndim:
                raise corrupt(path, f"a scale {values} does not match its {ndim} axes")
            scale = [s * float(v) for s, v in zip(scale, values, strict=True)]
    return scale


def open_zarr_storage(
    path: str | os.PathLike[str], mode: str = "r", level: int = 0
) -> Opened:
    """Open an OME-Zarr (0.4, 0.5) or a plain Zarr array; nothing is decoded.

    Returns ``Opened(storage, meta, levels)``: the storage of resolution
    level ``level``, its :class:`~napari_diskimage.ImageMeta` (``spacing``
    (z, y, x) of that level, ``unit``, ``kind`` ``"zarr"``) and the coarser
    stored levels (read-only).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    CorruptFileError
        ``path`` is not a Zarr store, its metadata is broken, a level it
        lists is missing, or it uses a codec that is not installed.
    ValueError
        ``mode`` or ``level`` is not valid for the store.
    """
    import zarr

    path = Path(path).expanduser().absolute()
    if mode not in ("r", "r+"):
        raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
    if not path.exists():
        raise FileNotFoundError(
            errno.ENOENT, f"no such Zarr store: {str(path)!r}", str(path)
        )
    if not path.is_dir():
        raise corrupt(path, "it is a file, not a folder (a Zarr store is a folder)")
    node = open_node(path)
    handle = ZarrHandle(path, mode)
    unit: str | None = None
    method = "mean"
    if isinstance(node, zarr.Array):
        if not 2 <= node.ndim <= 5:
            raise corrupt(path, f"its array has {node.ndim} axes: 2 to 5 expected")
        names: list[tuple[str, Any]] = [("", node)]
        axes = _AXES[-node.ndim :]
        scales = [[1.0] * node.ndim]
    else:
        multiscales, _version = _multiscales(dict(node.attrs))
        if not multiscales:
            arrays = sorted(name for name, _ in node.arrays())
            raise corrupt(
                path,
                "it is a Zarr group without OME-Zarr 'multiscales' metadata"
                + (f"; open one of its arrays: {arrays}" if arrays else ""),
            )
        try:
            ms = multiscales[0]
            datasets = ms["datasets"]
            axes_meta = ms.get("axes")
            dataset_paths = [str(d["path"]) for d in datasets]
        except (KeyError, IndexError, TypeError) as exc:
            raise corrupt(
                path, f"its 'multiscales' metadata is broken ({exc!r})"
            ) from None
        if not dataset_paths:
            raise corrupt(path, "its 'multiscales' lists no datasets")
        names = []
        for name in dataset_paths:
            try:
                arr = node[name]
            except KeyError:
                raise corrupt(path, f"its level {name!r} is missing") from None
            except Exception as exc:
                raise corrupt(path, zarr_problem(exc)) from exc
            if not isinstance(arr, zarr.Array):
                raise corrupt(path, f"its level {name!r} is not an array")
            names.append((name, arr))
        ndim = names[0][1].ndim
        if axes_meta is None:  # NGFF 0.3 and older: no axes
            if ndim > 5:
                raise corrupt(path, f"its arrays have {ndim} axes: at most 5")
            axes = _AXES[-ndim:]
        else:
            axes = _axes_of(path, axes_meta)
        if any(arr.ndim != len(axes) for _, arr in names):
            raise corrupt(path, f"its levels do not all have the axes {axes!r}")
        scales = [_scale(path, d, len(axes)) for d in datasets]
        if axes_meta is not None:
            units = {
                a.get("unit") for a in axes_meta
                if isinstance(a, dict) and a.get("type") == "space" and a.get("unit")
            }  # fmt: skip
            unit = units.pop() if len(units) == 1 else None
        marks = dict(node.attrs).get("napari_diskimage")
        handle.every_chunk = isinstance(marks, dict) and bool(
            marks.get("every_chunk_written")
        )
        method = str(ms.get("type") or "mean")
        if "image-label" in dict(node.attrs).get("ome", dict(node.attrs)):
            method = "mode"
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise TypeError(f"level must be an integer, got {level!r}")
    if not 0 <= level < len(names):
        raise ValueError(
            f"level {level} of {str(path)!r}: the store has {len(names)} "
            f"level(s), 0..{len(names) - 1}"
        )
    storages: list[ZarrStorage] = []
    for i, (name, arr) in enumerate(names[level:], start=level):
        if arr.dtype.kind not in "biuf" or arr.dtype.itemsize > 8:
            raise corrupt(path, f"its pixel type {arr.dtype} is not supported")
        first = i == level
        storages.append(
            ZarrStorage(
                handle,
                name,
                axes,
                arr.shape,
                arr.dtype,
                level=i,
                writable=first and mode == "r+",
                pyramid=[n for n, _ in names[i + 1 :]] if first else (),
                method=method,
                owns_handle=first,
            )
        )
    scale = scales[level]
    sz, sy, sx = (scale[axes.index(a)] if a in axes else 1.0 for a in "zyx")
    meta = ImageMeta(spacing=(sz, sy, sx), unit=unit, kind="zarr")
    return Opened(storages[0], meta, tuple(storages[1:]))
