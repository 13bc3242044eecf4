"""Separate touching pores out of core: markers of the distance map, flooded.

In memory this is::

    dt = scipy.ndimage.distance_transform_edt(mask)
    markers = scipy.ndimage.label(skimage.morphology.h_maxima(dt, h),
                                  structure=np.ones((3,) * mask.ndim))[0]
    labels = skimage.segmentation.watershed(-dt, markers, mask=mask,
                                            connectivity=connectivity)

Here:

1. the distance map is written exactly, out of core (``_distance``);
2. each block finds the h-maxima of the distance map on itself and a halo
   of six times the largest distance around it plus 2 (at most 40 voxels:
   memory; "around it": within the halo the volume's largest distance
   would need, from the largest distance per 16^3 cell, so a volume of
   small pores has small halos everywhere),
   with a union-find in numba (``_hmaxima``: skimage's voxels, at ~1/3 of
   its memory and 2-4 x its speed), and writes those of its core into a
   uint8 marker mask;
3. the marker mask is labelled as one volume (``_label``: one id per
   marker across block borders);
4. each block floods its core from the labelled markers in it and its
   halo (skimage's watershed on the block with its halo, in numba:
   ``_flood``, the same labels at ~1/3 of the memory); ids are the
   markers' global ids, so a pore cut by a block border keeps one id;
5. foreground voxels that no marker of their block's halo reached (a pore
   whose marker is farther than the halo) are flooded from the labels
   already written around them, block by block, until none is left.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Generator
from typing import Any

import numpy as np

from .._geometry import Geometry
from .._steps import Steps
from ._blocks import block_grid, trim, user_blocks
from ._checks import check_image, check_mask, name_of, shape_of
from ._distance import (
    CellMaxima,
    _has_background,
    _no_background,
    distance_passes,
    plan_passes,
)
from ._engine import Run
from ._flood import flood
from ._hmaxima import h_maxima
from ._label import label
from ._registry import Parameter, _Block, operation
from ._tasks import BlockWriter, BoxReader, new_output

#: float32 bytes of the distance map of a block with its halo (the
#: h-maxima and the flood hold ~40 bytes a voxel of it: ~100 MiB a thread).
WATERSHED_BLOCK_BYTES = 10 << 20
#: Fill passes (step 5) before giving up on unreached voxels.
_MAX_FILLS = 8
#: Halo of a block, in multiples of the largest distance.
_HALO_FACTOR = 6
#: Largest halo (memory: a block with its halo is at most (3 x 2 x this)^3).
_MAX_HALO = 40

Box = tuple[tuple[int, int], ...]


def _ext(box: Box, halo: int, shape: Any) -> list[tuple[int, int]]:
    ext = [
        (max(0, a - halo), min(n, b + halo))
        for (a, b), n in zip(box, shape, strict=True)
    ]
    ext[0], ext[1] = box[0], box[1]
    return ext


def _core(box: Box, ext: list[tuple[int, int]]) -> tuple[slice, ...]:
    return tuple(
        slice(a - e0, b - e0) for (a, b), (e0, _) in zip(box[2:], ext[2:], strict=True)
    )


def _markers_block(
    reader: BoxReader, writer: BlockWriter, box: Box, halo: int, h: float
) -> int:
    """Step 2: the h-maxima of the block (computed with its halo), core only."""
    ext = _ext(box, halo, reader.shape)
    dt = reader.read(ext)[0, 0]
    maxima = h_maxima(dt, h)  # a 2D image is (1, y, x): 8 neighbours
    del dt
    core = maxima[_core(box, ext)]
    writer.write(box, core[None, None])
    n = int(core.sum())
    del maxima, core
    trim()
    return n


def _flood_block(
    dt_reader: BoxReader,
    marker_reader: BoxReader,
    writer: BlockWriter,
    box: Box,
    halo: int,
    connectivity: int,
    keep: bool,
) -> int:
    """Steps 4 and 5: watershed of the block with its halo from the labels
    of ``marker_reader``; returns the core's foreground voxels left at 0.

    ``keep``: the markers are the output itself (step 5), whose core
    labels are kept and only its zeros filled.
    """
    ext = _ext(box, halo, dt_reader.shape)
    # blocks read are fresh arrays: modified in place (memory)
    dt = dt_reader.read(ext)[0, 0].astype(np.float32, copy=False)
    core = _core(box, ext)
    mask = dt > 0
    labels = marker_reader.read(ext)[0, 0].astype(np.uint32, copy=False)
    labels[~mask] = 0
    if keep and not (labels[core][mask[core]] == 0).any():
        return 0
    if mask[core].any() and labels.any():
        # -dt, NaN outside the mask: the flood's order and its bounds
        np.negative(dt, out=dt)
        dt[~mask] = np.nan
        flood(dt, labels, connectivity)  # a 2D image is (1, y, x)
        del dt
    out = labels[core]
    writer.write(box, out[None, None])
    n = int(((out == 0) & mask[core]).sum())
    del out, labels, mask
    trim()
    return n


def _chunks(shape: Any, halo: int, user: Any) -> tuple[int, int, int, int, int]:
    """Block cores: the user's, or those whose block with its halo holds at
    most :data:`WATERSHED_BLOCK_BYTES` of float32 and whose halo adds the
    least work (an axis a core spans whole has no halo: long blocks)."""
    if user is not None:
        bz, by, bx = user
        return (1, 1, min(bz, shape[2]), min(by, shape[3]), min(bx, shape[4]))
    budget = WATERSHED_BLOCK_BYTES // 4
    sides = (32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)

    def options(n: int) -> list[int]:
        return [n] + [c for c in sides if c < n]

    found = []  # (halo work, -core, ext, core)
    for cz in options(shape[2]) if shape[2] > 1 else [1]:
        for cy in options(shape[3]):
            for cx in options(shape[4]):
                core = (cz, cy, cx)
                ext = math.prod(
                    n if c >= n else min(n, c + 2 * halo)
                    for c, n in zip(core, shape[2:], strict=True)
                )
                found.append((ext / math.prod(core), -math.prod(core), ext, core))
    fits = [f for f in found if f[2] <= budget]
    best = min(fits) if fits else min(found, key=lambda f: f[2])
    return (1, 1, *best[3])


def _connectivity(connectivity: Any, ndim: int) -> int:
    if isinstance(connectivity, bool) or not isinstance(
        connectivity, (numbers.Integral, np.integer)
    ):
        raise TypeError(
            f"watershed_split: connectivity must be 1, 2 or 3, got {connectivity!r}"
        )
    if not 1 <= int(connectivity) <= ndim:
        raise ValueError(
            f"watershed_split: connectivity must be 1 (faces) to {ndim} (all "
            f"neighbours) for a {ndim}D image, got {connectivity}"
        )
    return int(connectivity)


@operation(
    "Watershed split of pores (labels)",
    [
        Parameter("h", "float", 1.0, minimum=0.01, maximum=1000, help="pixels"),
        Parameter("connectivity", "int", 1, minimum=1, maximum=3),
    ],
    mask_input=True,
    labels_result=True,
)
def watershed_split(
    mask: Any,
    h: float = 1.0,
    *,
    connectivity: int = 1,
    block_shape: _Block = None,
) -> Run:
    """Separate touching pores: uint32 labels, one id per pore, 0 outside.

    In memory this is::

        dt = scipy.ndimage.distance_transform_edt(mask)
        markers = scipy.ndimage.label(skimage.morphology.h_maxima(dt, h),
                                      structure=np.ones((3,) * mask.ndim))[0]
        skimage.segmentation.watershed(-dt, markers, mask=mask,
                                       connectivity=connectivity)

    (markers: the connected regional maxima of the distance map whose
    dynamic is at least ``h`` pixels).  Here the distance map is exact;
    markers and flooding are computed on blocks with a halo of 6 x the
    largest distance around the block + 2 (at most 40 pixels, for
    memory), blocks shaped
    for the least halo work within ~10 MiB of float32 with their halo
    (~100 MiB of work a thread); markers get one id across block borders, and
    foreground voxels whose marker lies beyond their block's halo are
    flooded from their neighbours' labels afterwards.  Where blocks meet,
    a pore's boundary can move by a few voxels, when the flooding path in
    memory leaves the block's halo: measured on porespy blobs, the
    adjusted Rand index against the in-memory result inside the mask is
    >= 0.98 (1.0 with one block).  Equality with memory everywhere would
    need each block to see every voxel on the flooding paths into it and
    every path that decides a maximum's dynamic (up to a higher maximum),
    which can run across the whole volume; a halo of a few times the
    local pore radius holds them for pores up to a few radii long.  Ids
    are the markers' ids (1..N in file order of the markers), not
    skimage's numbering.

    Parameters
    ----------
    h : float
        Least dynamic of a marker, in pixels of distance, > 0.
    connectivity : int
        Of the flooding: 1 (faces) to 3 (all 26 neighbours).

    Raises
    ------
    TypeError, ValueError
        As :func:`distance`; ``h`` not > 0; ``connectivity`` out of range.
    """
    check_image(mask, "watershed_split")
    check_mask(mask, "watershed_split")
    if isinstance(h, bool) or not isinstance(h, (numbers.Real, np.number)):
        raise TypeError(f"watershed_split: h must be a number, got {h!r}")
    if not math.isfinite(float(h)) or float(h) <= 0:
        raise ValueError(
            f"watershed_split: h must be greater than 0 (the least depth, in "
            f"pixels of distance, that separates two pores), got {h!r}; e.g. h=1"
        )
    shape = shape_of(mask)
    ndim = 3 if shape[2] > 1 else 2
    conn = _connectivity(connectivity, ndim)
    user = user_blocks(block_shape)
    voxels = math.prod(shape)
    n_dist = len(plan_passes(shape, user))
    what = f"watershed_split of {name_of(mask)}"
    output = new_output(Geometry.from_shape(shape, np.uint32), what, mask)
    # distance passes, markers, their labels (2 passes), flooding, one fill
    total = voxels * (4 * n_dist + 1 + 8 + 4 + 4)

    def plan(run: Run) -> Steps:
        yield 0, run.total
        dt = new_output(Geometry.from_shape(shape, np.float32), f"distance for {what}")
        marks = new_output(Geometry.from_shape(shape, np.uint8), f"markers for {what}")
        labelled = None
        cells = CellMaxima(shape)
        try:
            largest = yield from distance_passes(
                run, mask, dt, (1.0, 1.0, 1.0), user, "watershed_split", cells
            )
            if not _has_background(dt):
                raise _no_background(mask, "watershed_split")
            chunks = _chunks(shape, _halo(cells.typical()), user)
            boxes = block_grid(shape, chunks)
            # each block's own: from the largest distance around it
            halos = [_halo(_local(cells, b, largest)) for b in boxes]
            run.info["halos"], run.info["boxes"] = halos, boxes
            dt_reader = BoxReader(dt, run.token)
            yield from _markers(run, dt_reader, marks, boxes, halos, float(h))
            label_chunks = chunks if user is not None else _label_chunks(shape)
            labelled = yield from _label_markers(run, marks, ndim, label_chunks)
            marks.close()
            left = yield from _flood(
                run, dt_reader, labelled, run.image, boxes, halos, conn, False
            )
            fills, todo, before = 0, boxes, sum(left) + 1
            while 0 < sum(left) < before and fills < _MAX_FILLS:
                # stops when a fill reaches nothing more: what is left are
                # pores without a marker (as in memory, they stay 0)
                before = sum(left)
                keep = [i for i, n in enumerate(left) if n]
                todo = [todo[i] for i in keep]
                halos = [halos[i] for i in keep]
                left = yield from _flood(
                    run, dt_reader, run.image, run.image, todo, halos, conn, True
                )
                fills += 1
            run.info["unreached"] = int(sum(left))
        finally:
            dt.close()
            marks.close()
            if labelled is not None:
                labelled.close()
        return run.output

    return Run(output, plan, what, total)


def _halo(distance: float) -> int:
    """The halo of a block around which the largest distance is this."""
    return min(_MAX_HALO, math.ceil(_HALO_FACTOR * distance) + 2)


def _local(cells: CellMaxima, box: Box, largest: float) -> float:
    """The largest distance within the global halo of ``box``."""
    return cells.largest_within(box, _halo(largest))


def _markers(
    run: Run,
    reader: BoxReader,
    marks: Any,
    boxes: list[Box],
    halos: list[int],
    h: float,
) -> Generator[tuple[int, int], None, None]:
    import dask

    writer = BlockWriter(marks, run.token)
    task = dask.delayed(_markers_block, pure=False)
    tasks = [task(reader, writer, b, n, h) for b, n in zip(boxes, halos, strict=True)]
    sizes = [math.prod(b - a for a, b in box) for box in boxes]
    yield from run.execute(tasks, sizes)


def _label_chunks(shape: Any) -> tuple[int, int, int, int, int]:
    """Blocks of whole rows for labelling the markers, ~8 MiB of uint32
    (the label engine's own hold 32 MiB: over a 320 MiB cap beside the
    rest).  On the watershed's narrow blocks (133 x 96 x 96 on
    133 x 2047 x 2047 under a 512 MiB cap) the labelling ran over 36 min
    and did not finish: their faces across x are one page per row."""
    nz, ny, nx = (int(n) for n in shape[2:])
    side = max(1, math.isqrt(max(1, WATERSHED_BLOCK_BYTES // 5 // nx)))
    return (1, 1, min(nz, side), min(ny, side if nz > 1 else side * side), nx)


def _label_markers(
    run: Run, marks: Any, ndim: int, chunks: tuple[int, ...]
) -> Generator[Any, None, Any]:
    """Step 3: the markers labelled as one volume (all neighbours joined,
    as a regional maximum's plateau is connected under h_maxima's
    footprint); its progress counts into ``run``'s."""
    inner = label.run(marks, ndim, block_shape=(chunks[4], chunks[3], chunks[2]))
    steps = inner.steps()
    last = 0
    try:
        while True:
            if run.cancel_event.is_set():
                inner.cancel()
            try:
                done, _total = next(steps)
            except StopIteration as stop:
                return stop.value
            yield run.advance(done - last)
            last = done
    finally:
        steps.close()


def _flood(
    run: Run,
    dt_reader: BoxReader,
    markers: Any,
    target: Any,
    boxes: list[Box],
    halos: list[int],
    conn: int,
    keep: bool,
) -> Generator[tuple[int, int], None, list[int]]:
    import dask

    marker_reader = BoxReader(markers, run.token)
    writer = BlockWriter(target, run.token)
    task = dask.delayed(_flood_block, pure=False)
    tasks = [
        task(dt_reader, marker_reader, writer, box, halo, conn, keep)
        for box, halo in zip(boxes, halos, strict=True)
    ]
    sizes = [math.prod(b - a for a, b in box) * 4 for box in boxes]
    found = yield from run.execute(tasks, sizes)
    return [int(n) for n in found]
