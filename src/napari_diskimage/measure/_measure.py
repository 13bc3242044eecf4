"""The runs behind :mod:`napari_diskimage.measure`: validation, the block
passes on the process engine, and the table derived from merged statistics.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._diskimage import DiskImage
from .._errors import closed_error
from .._steps import Steps
from ..process._blocks import BLOCK_BYTES, block_grid, choose_chunks, user_blocks
from ..process._checks import name_of, shape_of
from ..process._engine import Run, report
from ..process._tasks import BoxReader
from ._blocks import Layout, block_stats, id_dtype, merge, merge_into, surface_block

#: Properties :func:`regionprops_table` computes, with what each one is.
PROPERTIES: dict[str, str] = {
    "label": "the object's label",
    "area": "voxels (pixels) x voxel volume (spacing product)",
    "num_pixels": "voxels (pixels) of the object",
    "bbox": "bounding box: start per axis, then stop (pixels)",
    "area_bbox": "volume of the bounding box",
    "extent": "area / area_bbox",
    "centroid": "mean position (with spacing)",
    "centroid_weighted": "intensity-weighted mean position (with spacing)",
    "equivalent_diameter_area": "diameter of the ball of the same volume",
    "inertia_tensor": "inertia tensor (with spacing)",
    "inertia_tensor_eigvals": "its eigenvalues, largest first",
    "axis_major_length": "major axis of the ellipsoid of the same moments",
    "axis_minor_length": "minor axis of that ellipsoid",
    "intensity_mean": "mean intensity",
    "intensity_min": "minimum intensity",
    "intensity_max": "maximum intensity",
    "intensity_std": "standard deviation of the intensity",
    "surface_area": "area of the marching-cubes mesh at level 0.5 (3D only)",
    "sphericity": "pi^(1/3) (6 V)^(2/3) / surface_area (3D only)",
    "touches_border": "the object touches the image's edge (cut by it)",
}

_INTENSITY = {"intensity_mean", "intensity_min", "intensity_max", "intensity_std"}
_INTENSITY |= {"centroid_weighted"}
_SURFACE = {"surface_area", "sphericity"}


def _layout(props: Sequence[str]) -> Layout:
    wanted = set(props)
    return Layout(
        moments=bool(
            wanted
            & {
                "inertia_tensor",
                "inertia_tensor_eigvals",
                "axis_major_length",
                "axis_minor_length",
            }
        ),
        intensity=bool(wanted & {"intensity_mean", "intensity_std"}),
        squares="intensity_std" in wanted,
        extrema=bool(wanted & {"intensity_min", "intensity_max"}),
        weighted="centroid_weighted" in wanted,
    )


# --- validation --------------------------------------------------------------
def _as_input(image: Any) -> Any:
    if isinstance(image, np.ndarray) and image.dtype == np.bool_:
        return image.view(np.uint8)
    return image


def check_labels(labels: Any, what: str = "measure") -> tuple[int, int, int]:
    """(z, y, x) sizes of a labels image; TypeError/ValueError if unfit."""
    if isinstance(labels, DiskImage) and labels.closed:
        raise closed_error(labels.path)
    dtype = np.dtype(getattr(labels, "dtype", np.float64))
    if dtype.kind not in "iub":
        raise TypeError(
            f"{what}: labels must be integers (0 = background, each object "
            f"one value) but {name_of(labels)} holds {dtype} values; label a "
            "mask first (process.label)"
        )
    t, c, z, y, x = shape_of(labels)
    if t > 1 or c > 1:
        raise ValueError(
            f"{what}: labels must be one 2D image or volume, but "
            f"{name_of(labels)} has {c} channels and {t} time points (RGB or "
            "multichannel); extract one channel first"
        )
    return z, y, x


def check_intensity(intensity: Any, labels: Any, what: str = "measure") -> None:
    if isinstance(intensity, DiskImage) and intensity.closed:
        raise closed_error(intensity.path)
    dtype = np.dtype(getattr(intensity, "dtype", object))
    if dtype.kind not in "iufb":
        raise TypeError(
            f"{what}: the intensity image must be numeric, but "
            f"{name_of(intensity)} holds {dtype} values"
        )
    a, b = shape_of(labels), shape_of(intensity)
    if a != b:
        raise ValueError(
            f"{what}: the intensity image {name_of(intensity)} is "
            f"{' x '.join(map(str, b[::-1]))} but the labels are "
            f"{' x '.join(map(str, a[::-1]))} (x, y, z, c, t); they must have "
            "the same sizes"
        )


def check_properties(properties: Any, ndim: int, has_intensity: bool) -> list[str]:
    if isinstance(properties, str):
        properties = [properties]
    props = list(dict.fromkeys(properties))
    unknown = [p for p in props if p not in PROPERTIES]
    if unknown:
        raise ValueError(
            f"unknown propert{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(map(repr, unknown))}; known: {', '.join(PROPERTIES)}"
        )
    if not has_intensity and (_INTENSITY & set(props)):
        missing = ", ".join(p for p in props if p in _INTENSITY)
        raise ValueError(f"{missing} need an intensity image (intensity=...)")
    if ndim == 2 and (_SURFACE & set(props)):
        raise ValueError(
            "surface_area and sphericity are for volumes; for a 2D image use "
            "skimage.measure.regionprops' perimeter"
        )
    return props


def check_spacing(spacing: Any, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, numbers.Real):
        spacing = (spacing,) * ndim
    values = tuple(spacing)
    if len(values) != ndim or not all(
        isinstance(s, (numbers.Real, np.number))
        and not isinstance(s, bool)
        and math.isfinite(float(s))
        and float(s) > 0
        for s in values
    ):
        axes = "(z, y, x)" if ndim == 3 else "(y, x)"
        raise ValueError(
            f"spacing must be {ndim} positive numbers {axes}, got {spacing!r}"
        )
    return tuple(float(s) for s in values)


def _chunks(
    shape: Sequence[int], itemsize: int, block_shape: Any
) -> tuple[int, int, int, int, int]:
    blocks = user_blocks(block_shape)
    if blocks is None:
        return choose_chunks(shape, itemsize, block_bytes=BLOCK_BYTES)
    bz, by, bx = blocks
    return (1, 1, min(bz, shape[2]), min(by, shape[3]), min(bx, shape[4]))


# --- block tasks --------------------------------------------------------------
def _stats_task(
    labels: BoxReader,
    intensity: BoxReader | None,
    box: Sequence[tuple[int, int]],
    layout: Layout,
    intensity_dtype: Any,
) -> np.ndarray:
    block = labels.read(box)[0, 0]
    nbytes = block.nbytes
    values = None
    if intensity is not None:
        values = intensity.read(box)[0, 0]
        nbytes += values.nbytes
        if values.dtype != intensity_dtype:
            values = values.astype(intensity_dtype)
    origin = [a for a, _ in box[2:]]
    result = block_stats(block, values, origin, layout)
    report(labels.token, nbytes)
    return result


def _surface_task(
    labels: BoxReader,
    box: Sequence[tuple[int, int]],
    spacing: Sequence[float],
    ids: np.dtype,
) -> np.ndarray:
    """Surface areas of the parts of objects in the cells of ``box``.

    The cells (2 x 2 x 2 voxels, lower corner from -1 to n - 1 per axis
    in the zero-padded image) whose lower corner lies in [a - 1, b - 1)
    belong to the block [a, b) (and the last block takes the one at
    n - 1 too): it reads voxels [a - 1, b) (or [a - 1, b + 1)) with zeros
    beyond the image.
    """
    shape = labels.shape
    read, pads = [], []
    for axis, (a, b) in enumerate(box):
        if axis < 2:
            read.append((a, b))
            pads.append((0, 0))
            continue
        n = shape[axis]
        lo, hi = a - 1, (b + 1 if b == n else b)
        read.append((max(0, lo), min(n, hi)))
        pads.append((max(0, -lo), max(0, hi - n)))
    block = labels.read(read)[0, 0]
    if any(p for pair in pads[2:] for p in pair):
        block = np.pad(block, pads[2:])
    result = surface_block(block, spacing, ids)
    report(labels.token, math.prod(b - a for a, b in box) * block.itemsize)
    return result


def _delayed(fn: Callable[..., Any], *args: Any) -> Any:
    import dask

    return dask.delayed(fn, pure=False)(*args)


#: Blocks whose partial tables are merged at once: the rows of objects cut
#: by block borders never pile up beyond this many blocks' worth.
_BATCH = 16


def _batched_pass(
    run: Run, tasks: list[Any], sizes: list[int], kinds: np.ndarray
) -> Steps:
    table: np.ndarray | None = None
    for i in range(0, len(tasks), _BATCH):
        parts = yield from run.execute(tasks[i : i + _BATCH], sizes[i : i + _BATCH])
        table = merge_into(table, merge(list(parts), kinds), kinds)
    assert table is not None
    return table


# --- the run -----------------------------------------------------------------
def measure_run(
    labels: Any,
    intensity: Any = None,
    properties: Any = ("label", "area"),
    *,
    spacing: Any = None,
    block_shape: Any = None,
) -> Run:
    """The :class:`Run` of :func:`regionprops_table`; its result is the table."""
    labels = _as_input(labels)
    z, _y, _x = check_labels(labels)
    ndim = 2 if z == 1 else 3
    if intensity is not None:
        intensity = _as_input(intensity)
        check_intensity(intensity, labels)
    props = check_properties(properties, ndim, intensity is not None)
    spacing_t = check_spacing(spacing, ndim)
    shape = shape_of(labels)
    itemsize = np.dtype(labels.dtype).itemsize
    intensity_dtype = None
    if intensity is not None:
        kind = np.dtype(intensity.dtype)
        intensity_dtype = np.dtype(np.uint8) if kind == np.bool_ else kind
        itemsize += intensity_dtype.itemsize
    chunks = _chunks(shape, itemsize, block_shape)
    layout = _layout(props)
    ids = id_dtype(np.dtype(labels.dtype))
    voxels = math.prod(shape)
    pass_bytes = voxels * itemsize
    surface = bool(_SURFACE & set(props))
    total = pass_bytes + (voxels * np.dtype(labels.dtype).itemsize if surface else 0)
    what = f"measure {name_of(labels)}"

    def plan(run: Run) -> Steps:
        reader = BoxReader(labels, run.token)
        ireader = None if intensity is None else BoxReader(intensity, run.token)
        boxes = block_grid(shape, chunks)
        tasks = [
            _delayed(_stats_task, reader, ireader, box, layout, intensity_dtype)
            for box in boxes
        ]
        sizes = [math.prod(b - a for a, b in box) * itemsize for box in boxes]
        yield 0, run.total
        table = yield from _batched_pass(run, tasks, sizes, layout.kinds())
        areas = None
        if surface:
            stasks = [
                _delayed(_surface_task, reader, box, spacing_t, ids) for box in boxes
            ]
            lsize = np.dtype(labels.dtype).itemsize
            ssizes = [math.prod(b - a for a, b in box) * lsize for box in boxes]
            areas = yield from _batched_pass(run, stasks, ssizes, np.zeros(1))
        return derive(table, layout, props, ndim, spacing_t, shape[2:], areas, ids)

    return Run(None, plan, what, total)


# --- the table -----------------------------------------------------------------
def columns(props: Sequence[str], ndim: int) -> list[str]:
    """The table's column names, as skimage's ``regionprops_table``."""
    names: list[str] = []
    for p in props:
        if p == "bbox":
            names += [f"bbox-{i}" for i in range(2 * ndim)]
        elif p in ("centroid", "centroid_weighted", "inertia_tensor_eigvals"):
            names += [f"{p}-{i}" for i in range(ndim)]
        elif p == "inertia_tensor":
            names += [f"{p}-{i}-{j}" for i in range(ndim) for j in range(ndim)]
        else:
            names.append(p)
    return names


def derive(
    table: np.ndarray,
    layout: Layout,
    props: Sequence[str],
    ndim: int,
    spacing: Sequence[float],
    shape: Sequence[int],
    areas: np.ndarray | None,
    ids: np.dtype,
) -> Any:
    """The properties of each object from its merged statistics."""
    import pandas as pd

    axes = [0, 1, 2] if ndim == 3 else [1, 2]  # of the (z, y, x) columns
    v = table["v"]

    def col(name: str) -> np.ndarray:
        return v[:, layout.index(name)]

    n = col("n")
    spc = np.asarray(spacing, dtype=np.float64)
    voxel = float(np.prod(spc))
    out: dict[str, Any] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        area = n * voxel
        mean = [col(f"s{a}") / n for a in axes]
        tensor = None
        if layout.moments:
            mu = np.zeros((n.size, ndim, ndim))
            for i, a in enumerate(axes):
                for j, b in enumerate(axes):
                    key = f"s{min(a, b)}{max(a, b)}"
                    raw = col(key) - col(f"s{a}") * col(f"s{b}") / n
                    mu[:, i, j] = raw * spc[i] * spc[j]
            trace = np.trace(mu, axis1=1, axis2=2)
            tensor = -mu / n[:, None, None]
            for i in range(ndim):
                tensor[:, i, i] = (trace - mu[:, i, i]) / n
        eig = None
        if tensor is not None:
            eig = (
                np.clip(np.linalg.eigvalsh(tensor), 0, None)[:, ::-1]
                if n.size
                else np.zeros((0, ndim))
            )
        for p in props:
            if p == "label":
                label = table["id"]
                if label.dtype == np.uint64 and (not label.size or label.max() < 2**63):
                    label = label.astype(np.int64)  # skimage's type for the ids
                out[p] = label
            elif p == "area":
                out[p] = area
            elif p == "num_pixels":
                out[p] = n.astype(np.int64)
            elif p == "bbox":
                for i, a in enumerate(axes):
                    out[f"bbox-{i}"] = col(f"min{a}").astype(np.int64)
                for i, a in enumerate(axes):
                    out[f"bbox-{ndim + i}"] = col(f"max{a}").astype(np.int64) + 1
            elif p in ("area_bbox", "extent"):
                box = np.prod(
                    [col(f"max{a}") - col(f"min{a}") + 1 for a in axes], axis=0
                )
                out[p] = box * voxel if p == "area_bbox" else area / (box * voxel)
            elif p == "centroid":
                for i in range(ndim):
                    out[f"centroid-{i}"] = mean[i] * spc[i]
            elif p == "centroid_weighted":
                si = col("si") if "si" in layout.columns else None
                assert si is not None
                for i, a in enumerate(axes):
                    out[f"{p}-{i}"] = col(f"si{a}") / si * spc[i]
            elif p == "equivalent_diameter_area":
                out[p] = (2 * ndim * area / np.pi) ** (1 / ndim)
            elif p == "inertia_tensor":
                assert tensor is not None
                for i in range(ndim):
                    for j in range(ndim):
                        out[f"{p}-{i}-{j}"] = tensor[:, i, j]
            elif p == "inertia_tensor_eigvals":
                assert eig is not None
                for i in range(ndim):
                    out[f"{p}-{i}"] = eig[:, i]
            elif p in ("axis_major_length", "axis_minor_length"):
                assert eig is not None
                major = p == "axis_major_length"
                if ndim == 2:
                    out[p] = 4 * np.sqrt(eig[:, 0 if major else 1])
                else:
                    sign = 1 if major else -1
                    l2 = 10 * (sign * eig[:, 0] + eig[:, 1] - sign * eig[:, 2])
                    out[p] = np.sqrt(np.maximum(0, l2))
            elif p == "intensity_mean":
                out[p] = col("si") / n
            elif p == "intensity_min":
                out[p] = col("imin")
            elif p == "intensity_max":
                out[p] = col("imax")
            elif p == "intensity_std":
                m = col("si") / n
                out[p] = np.sqrt(np.maximum(0, col("sii") / n - m * m))
            elif p == "surface_area":
                out[p] = _surface_of(table["id"], areas)
            elif p == "sphericity":
                surf = _surface_of(table["id"], areas)
                out[p] = np.pi ** (1 / 3) * (6 * area) ** (2 / 3) / surf
            elif p == "touches_border":
                touches = np.zeros(n.size, dtype=bool)
                for a in axes:
                    touches |= col(f"min{a}") == 0
                    touches |= col(f"max{a}") == shape[a] - 1
                out[p] = touches
    frame = pd.DataFrame(out, columns=columns(props, ndim))
    if "label" in frame and n.size == 0:
        frame["label"] = frame["label"].astype(np.int64)
    return frame


def _surface_of(ids: np.ndarray, areas: np.ndarray | None) -> np.ndarray:
    assert areas is not None
    result = np.zeros(ids.size)
    if areas.size:
        rows = np.searchsorted(areas["id"], ids)
        rows = np.minimum(rows, areas.size - 1)
        found = areas["id"][rows] == ids
        result[found] = areas["v"][rows[found], 0]
    return result


# --- porosity ------------------------------------------------------------------
def _count_task(
    reader: BoxReader, box: Sequence[tuple[int, int]], axis: int | None
) -> np.ndarray:
    block = reader.read(box)[0, 0]
    nonzero = block != 0
    if axis is None:
        result = np.array([np.count_nonzero(nonzero)], dtype=np.int64)
    else:
        others = tuple(a for a in range(3) if a != axis)
        result = np.count_nonzero(nonzero, axis=others).astype(np.int64)
    report(reader.token, block.nbytes)
    return result


def porosity_run(mask: Any, axis: int | None = None, *, block_shape: Any = None) -> Run:
    """The :class:`Run` of :func:`porosity` (``axis`` None) or of
    :func:`porosity_profile` (``axis`` 0, 1 or 2 of (z, y, x))."""
    mask = _as_input(mask)
    if isinstance(mask, DiskImage) and mask.closed:
        raise closed_error(mask.path)
    dtype = np.dtype(getattr(mask, "dtype", object))
    if dtype.kind not in "iufb":
        raise TypeError(f"porosity: {name_of(mask)} holds {dtype} values, not a mask")
    t, c, z, _y, _x = shape_of(mask)
    if t > 1 or c > 1:
        raise ValueError(
            f"porosity: {name_of(mask)} has {c} channels and {t} time points; "
            "give one 2D image or volume"
        )
    ndim = 2 if z == 1 else 3
    if axis is not None:
        if isinstance(axis, bool) or not isinstance(axis, (numbers.Integral,)):
            raise TypeError(f"axis must be an integer, got {axis!r}")
        if not -ndim <= axis < ndim:
            raise ValueError(
                f"axis {axis} does not exist in a {ndim}D image (0 to {ndim - 1}"
                f"{', (z, y, x)' if ndim == 3 else ', (y, x)'})"
            )
        axis = int(axis) % ndim + (3 - ndim)  # an axis of (z, y, x)
    shape = shape_of(mask)
    chunks = _chunks(shape, dtype.itemsize, block_shape)
    voxels = math.prod(shape)

    def plan(run: Run) -> Steps:
        reader = BoxReader(mask, run.token)
        boxes = block_grid(shape, chunks)
        tasks = [_delayed(_count_task, reader, box, axis) for box in boxes]
        sizes = [math.prod(b - a for a, b in box) * dtype.itemsize for box in boxes]
        yield 0, run.total
        parts = yield from run.execute(tasks, sizes)
        if axis is None:
            return float(sum(int(p[0]) for p in parts)) / voxels
        counts = np.zeros(shape[2 + axis], dtype=np.int64)
        for box, part in zip(boxes, parts, strict=True):
            a, b = box[2 + axis]
            counts[a:b] += part
        return counts / (voxels // shape[2 + axis])

    return Run(None, plan, f"porosity of {name_of(mask)}", voxels * dtype.itemsize)


__all__ = [
    "PROPERTIES",
    "check_labels",
    "columns",
    "measure_run",
    "porosity_run",
]
