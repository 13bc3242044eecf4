"""Connected components of a whole volume, block by block, out of core.

``dask_image.ndmeasure.label`` labels blocks, then relabels them from a
mapping that needs every block's faces: dask keeps all blocks' labels in
memory meanwhile (4 bytes a voxel for the whole volume).  Here the
provisional labels go to the output file instead:

1. each block is labelled with scipy and its labels written into the
   output (uint32), numbered from 1 in each block; the counts come back;
2. the counts give each block an offset; along every block border the two
   facing layers of voxels are read back (in pieces), and each pair of
   foreground voxels that touch across it (under the connectivity) joins
   their labels; ``scipy.sparse.csgraph.connected_components`` merges them;
3. each block is read back and its labels replaced by the merged ones,
   numbered 1..N.

Memory: a few blocks, the faces' pairs, and one id per provisional label.
"""

from __future__ import annotations

import itertools
import math
import numbers
import threading
from typing import Any

import numpy as np

from .._diskimage import DiskImage
from .._geometry import Geometry
from .._steps import Steps
from ..io.stream import read_box
from ._blocks import block_chunks, block_grid, choose_chunks
from ._checks import check_image, check_mask, mask_values, name_of, shape_of
from ._engine import Run
from ._out import align
from ._registry import Parameter, _Block, operation
from ._tasks import BlockWriter, BoxReader, new_output

#: Rows of a border layer read at a time in pass 2.
_FACE_ROWS = 256
#: Voxels' bytes of labels per block (uint32) in pass 1.
LABEL_BLOCK_BYTES = 32 << 20


def _structure(connectivity: Any, ndim: int) -> np.ndarray:
    import scipy.ndimage as ndi

    if isinstance(connectivity, bool) or not isinstance(
        connectivity, (numbers.Integral, np.integer)
    ):
        raise TypeError(f"label: connectivity must be 1, 2 or 3, got {connectivity!r}")
    if not 1 <= int(connectivity) <= ndim:
        raise ValueError(
            f"label: connectivity must be 1 (faces) to {ndim} (all neighbours) "
            f"for a {ndim}D image, got {connectivity}"
        )
    return ndi.generate_binary_structure(ndim, int(connectivity))


@operation(
    "Label connected components",
    [Parameter("connectivity", "int", 1, minimum=1, maximum=3)],
    mask_input=True,
    labels_result=True,
)
def label(
    mask: Any,
    connectivity: int = 1,
    *,
    block_shape: _Block = None,
) -> Run:
    """Connected components of the whole mask, as uint32 labels 1..N.

    One id per component of the whole volume, across block borders; the
    same partition as ``scipy.ndimage.label`` in memory (ids may be
    numbered in another order).  ``connectivity`` 1 joins face neighbours,
    2 also edge neighbours, 3 (3D) all 26 neighbours.

    Raises
    ------
    TypeError
        The mask is a float image.
    ValueError
        It holds values other than 0 and 1 (found while running; the
        output is removed), or ``connectivity`` is out of range.
    """
    check_image(mask, "label")
    check_mask(mask, "label")
    shape = shape_of(mask)
    spatial = 3 if shape[2] > 1 else 2
    structure = _structure(connectivity, spatial)
    if spatial == 2:  # the 2D structure as the middle plane of a 3D one
        structure = np.stack(
            [np.zeros_like(structure), structure, np.zeros_like(structure)]
        )
    if block_shape is None:
        # near-cubic blocks: few borders (pass 2 works on every border's
        # voxels); 4 bytes of labels per voxel in pass 1
        t, c, z, y, x = align(
            choose_chunks(shape, 4, (0, 0, 1, 1, 1), LABEL_BLOCK_BYTES),
            shape,
            keep_size=True,
        )  # whole chunks of an out= store
        chunks = (t, c, z, y, x)
    else:
        chunks = block_chunks(mask, 4, (0,) * 5, block_shape)
    geometry = Geometry.from_shape(shape, np.uint32)
    output = new_output(geometry, f"labels of {name_of(mask)}", mask)
    # pass 1 writes, pass 2 reads faces, pass 3 rewrites: weigh them 1:0:1
    total = 2 * geometry.nbytes

    def plan(run: Run) -> Steps:
        import dask

        yield 0, run.total
        reader = BoxReader(mask, run.token)
        writer = BlockWriter(run.image, run.token)
        boxes = block_grid(shape, chunks)
        sizes = [math.prod(b - a for a, b in box) * 4 for box in boxes]
        # pass 1: provisional labels, numbered per block
        task = dask.delayed(_label_block, pure=False)
        tasks = [task(reader, box, structure, writer) for box in boxes]
        counts = yield from run.execute(tasks, sizes)
        grid = tuple(-(-n // c) for n, c in zip(shape, chunks, strict=True))
        per_block = np.array([int(c) for c in counts], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(per_block)[:-1]]).reshape(grid)
        n_labels = int(per_block.sum())
        if n_labels >= 2**32:
            raise ValueError(
                f"label: {name_of(mask)} has {n_labels} provisional components, "
                "more than uint32 labels can number; label parts of it"
            )
        # pass 2: join labels that touch across block borders
        if run.cancel_event.is_set():
            _raise_cancelled()
        chunk_sizes = tuple(
            tuple(min(c, n - a) for a in range(0, n, c))
            for n, c in zip(shape, chunks, strict=True)
        )
        mapping = _merge(
            run.image, chunk_sizes, offsets, structure, n_labels, run.cancel_event
        )
        # pass 3: final labels, in place (mapping and offsets shipped once)
        out_reader = BoxReader(run.output, run.token)
        shared = dask.delayed(mapping), dask.delayed(offsets)
        task = dask.delayed(_relabel_block, pure=False)
        tasks = [
            task(out_reader, box, index, writer, *shared)
            for index, box in zip(np.ndindex(*grid), boxes, strict=True)
        ]
        yield from run.execute(tasks, sizes)
        run.info["n_labels"] = int(mapping.max()) if mapping.size else 0
        return run.output

    return Run(output, plan, f"label of {name_of(mask)}", total)


def _raise_cancelled() -> None:
    from ._engine import Cancelled

    raise Cancelled("label was cancelled")


def _label_block(
    reader: BoxReader,
    box: tuple[tuple[int, int], ...],
    structure: np.ndarray,
    writer: BlockWriter,
) -> int:
    """Pass 1: label one block, write its labels, return their count."""
    import scipy.ndimage as ndi

    values = mask_values(reader.read(box)[0, 0], box, reader.name, "label")
    labels, n = ndi.label(values, structure=structure, output=np.uint32)
    writer.write(box, labels[None, None])
    return int(n)


def _global(local: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Provisional local labels plus their blocks' offsets (0 stays 0)."""
    out = local.astype(np.uint32)
    out += offsets.astype(np.uint32)
    out[local == 0] = 0
    return out


def _offsets_of(
    offsets: np.ndarray, bounds: list[np.ndarray], t: int, c: int, key: tuple
) -> np.ndarray:
    """Per-voxel block offsets for a region (z, y, x ranges) at (t, c)."""
    blocks = [
        np.searchsorted(b, np.arange(r.start, r.stop), side="right") - 1
        for b, r in zip(bounds, key, strict=True)
    ]
    return offsets[t, c][np.ix_(*blocks)]


def _merge(
    labels: DiskImage,
    chunks: tuple[tuple[int, ...], ...],
    offsets: np.ndarray,
    structure: np.ndarray,
    n_labels: int,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """Final id (1..N, 0 for background) of each provisional label.

    Runs in the caller's thread between two passes of blocks, without
    steps: it checks ``cancel`` (a GUI's Cancel) and lets Python handle
    signals (Ctrl+C, SIGTERM) after each piece of a border, so a cancel
    takes effect within a fraction of a second."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    t_n, c_n, z_n, y_n, x_n = labels.shape
    sizes = (z_n, y_n, x_n)
    bounds = [np.concatenate([[0], np.cumsum(c)]) for c in chunks[2:]]
    pairs: list[np.ndarray] = []
    for t, c in itertools.product(range(t_n), range(c_n)):
        for axis in range(3):  # z, y, x
            for border in bounds[axis][1:-1]:
                found = _border_pairs(
                    labels,
                    offsets,
                    bounds,
                    structure,
                    t,
                    c,
                    axis,
                    int(border),
                    sizes,
                    cancel,
                )
                if found:  # each border's pairs once: less to hold and merge
                    pairs.append(_unique_pairs(np.concatenate(found)))
                _check(cancel)
    if pairs:
        edges = _unique_pairs(np.concatenate(pairs))
    else:
        edges = np.empty((0, 2), np.int64)
    _check(cancel)
    n = n_labels + 1
    graph = coo_matrix(
        (np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n)
    )
    _, component = connected_components(graph, directed=False)
    _check(cancel)
    # renumber components 1..N in order of their first provisional label.
    # scipy numbers them so already (a search from each unvisited node in
    # turn; node 0, the background, touches nothing): checked in one pass,
    # which saves three sorts of every label (seconds for tens of millions)
    running = np.maximum.accumulate(component)
    if component[0] == 0 and np.all(component[1:] <= running[:-1] + 1):
        return component.astype(np.uint32)
    fg = component[1:]
    _, first = np.unique(fg, return_index=True)
    order = np.argsort(first)
    rank = np.empty(len(order), np.uint32)
    rank[order] = np.arange(1, len(order) + 1, dtype=np.uint32)
    mapping = np.zeros(n, np.uint32)
    if len(fg):
        _, inverse = np.unique(fg, return_inverse=True)
        mapping[1:] = rank[inverse]
    return mapping


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        _raise_cancelled()


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """The distinct rows of an (n, 2) array of labels (sorted as one int64:
    several times faster than ``np.unique(axis=0)``)."""
    keys = np.unique(pairs[:, 0].astype(np.int64) << 32 | pairs[:, 1])
    return np.stack([keys >> 32, keys & 0xFFFFFFFF], axis=1)


def _border_pairs(
    labels: DiskImage,
    offsets: np.ndarray,
    bounds: list[np.ndarray],
    structure: np.ndarray,
    t: int,
    c: int,
    axis: int,
    border: int,
    sizes: tuple[int, int, int],
    cancel: threading.Event | None = None,
) -> list[np.ndarray]:
    """Pairs of global labels touching across ``border`` along ``axis``."""
    # neighbour offsets (in the two other axes) from the layer before the
    # border to the layer after it
    sel: list[Any] = [slice(None)] * 3
    sel[axis] = 2
    shifts = np.argwhere(structure[tuple(sel)]) - 1  # (d_a, d_b) in the others
    others = [a for a in range(3) if a != axis]
    long_axis = others[0]  # read the layers in pieces along this axis
    n_long = sizes[long_axis]
    out = []
    for start in range(0, n_long, _FACE_ROWS):
        _check(cancel)
        stop = min(n_long, start + _FACE_ROWS)
        lo, hi = max(0, start - 1), min(n_long, stop + 1)  # one more each side
        layers = []
        for index in (border - 1, border):
            key = [range(0, s) for s in sizes]
            key[axis] = range(index, index + 1)
            key[long_axis] = range(lo, hi)
            box = (t, c, *(slice(r.start, r.stop) for r in key))
            local = read_box(labels, box)
            glob = _global(local, _offsets_of(offsets, bounds, t, c, tuple(key)))
            layers.append(np.squeeze(glob, axis=axis))
        before, after = layers  # rows [lo, hi) of the long axis
        n_other = before.shape[1]
        for d_long, d_other in shifts:
            # after[r, q] touches before[r + d_long, q + d_other]
            r0, r1 = max(start, -d_long), min(stop, n_long - d_long)
            q0, q1 = max(0, -d_other), min(n_other, n_other - d_other)
            if r1 <= r0 or q1 <= q0:
                continue
            x = before[r0 + d_long - lo : r1 + d_long - lo, q0 + d_other : q1 + d_other]
            y = after[r0 - lo : r1 - lo, q0:q1]
            both = (x > 0) & (y > 0)
            if both.any():
                out.append(np.stack([x[both], y[both]], axis=1))
    return out


def _relabel_block(
    reader: BoxReader,
    box: tuple[tuple[int, int], ...],
    index: tuple[int, ...],
    writer: BlockWriter,
    mapping: np.ndarray,
    offsets: np.ndarray,
) -> int:
    """Pass 3: replace a block's provisional labels by the final ones."""
    local = reader.read(box)
    return writer.write(box, mapping[_global(local, offsets[index])])
