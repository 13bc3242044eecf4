"""The pore-size distribution of a local-thickness map, block by block."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._steps import ProgressCallback, Steps
from ..process._checks import name_of
from ..process._engine import Run, drive
from ..process._generic import reduction_run
from ..process._tasks import BoxReader, reduce_tasks


@dataclass(frozen=True)
class SizeDistribution:
    """A pore-size distribution, as ``porespy.metrics.pore_size_distribution``.

    Sizes are radii times ``voxel_size`` (log10 of them when ``log``).
    """

    #: Centre of each bin (radius, or log10 of it when ``log``).
    bin_centers: np.ndarray
    #: Bin edges, one more than the bins.
    bin_edges: np.ndarray
    bin_widths: np.ndarray
    #: Probability density of the pore volume over the sizes.
    pdf: np.ndarray
    #: Volume fraction of pores of this size or larger.
    cdf: np.ndarray
    #: Volume fraction of pores in each bin (sums to 1).
    satn: np.ndarray
    log: bool

    @property
    def R(self) -> np.ndarray:
        """The bin centres (porespy's ``R``, or ``LogR`` when ``log``)."""
        return self.bin_centers


def size_distribution(
    local_thickness: Any,
    bins: int | Sequence[float] = 10,
    *,
    log: bool = True,
    voxel_size: float = 1.0,
    block_shape: Sequence[int] | None = None,
    progress: ProgressCallback | None = None,
) -> SizeDistribution:
    """Volume fraction per pore size of a local-thickness map.

    The same numbers as ``porespy.metrics.pore_size_distribution(lt, bins,
    log, voxel_size)`` on the whole array, from a block-wise histogram of
    the voxels > 0 (pores): a first pass finds their range when ``bins``
    is a number.

    Parameters
    ----------
    local_thickness : DiskImage or array-like
        Radii per voxel, e.g. from :func:`napari_diskimage.process.local_thickness`.
    bins : int or sequence of float
        A number of equal bins over the range of the sizes, or the bin
        edges (in log10 units when ``log``).
    log : bool
        Bin log10 of the sizes (porespy's default).
    voxel_size : float
        Multiplies the radii (> 0).

    Returns
    -------
    SizeDistribution

    Raises
    ------
    ValueError
        No voxel > 0, a bad ``bins`` or ``voxel_size``.
    """
    if (
        isinstance(voxel_size, bool)
        or not isinstance(voxel_size, (numbers.Real, np.number))
        or not voxel_size > 0
    ):
        raise ValueError(
            f"size_distribution: voxel_size must be > 0, got {voxel_size!r}"
        )
    scale = float(voxel_size)
    if isinstance(bins, (numbers.Integral, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(f"size_distribution: bins must be >= 1, got {bins}")
        edges = None
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) < 0):
            raise ValueError(
                "size_distribution: bins must be a number or increasing edges, "
                f"got {bins!r}"
            )

    def sizes(block: np.ndarray) -> np.ndarray:
        values = block[block > 0].astype(np.float64) * scale
        return np.log10(values) if log else values

    def minmax(block: np.ndarray) -> np.ndarray:
        values = sizes(block)
        if values.size == 0:
            return np.array([np.inf, -np.inf])
        return np.array([values.min(), values.max()])

    def passes(run: Run, reader: BoxReader, chunks: Sequence[int]) -> Steps:
        nonlocal edges
        if edges is None:
            tasks, nbytes = reduce_tasks(reader, minmax, chunks)
            parts = yield from run.execute(tasks, nbytes)
            lo = min(float(p[0]) for p in parts)
            hi = max(float(p[1]) for p in parts)
            if not math.isfinite(lo):
                raise ValueError(
                    f"size_distribution: {name_of(local_thickness)} has no "
                    "voxel > 0 (no pore)"
                )
            edges = np.histogram_bin_edges(np.array([lo, hi]), bins=int(bins))
        found = edges

        def hist(block: np.ndarray) -> np.ndarray:
            return np.histogram(sizes(block), bins=found)[0]

        tasks, nbytes = reduce_tasks(reader, hist, chunks)
        parts = yield from run.execute(tasks, nbytes)
        counts = np.sum(parts, axis=0).astype(np.float64)
        if counts.sum() == 0:
            raise ValueError(
                f"size_distribution: {name_of(local_thickness)} has no voxel > 0 "
                "within the bins"
            )
        widths = np.diff(found)
        pdf = counts / counts.sum() / widths  # numpy's density=True
        satn = pdf * widths
        cdf = np.cumsum(satn[::-1])[::-1]
        return SizeDistribution(
            bin_centers=(found[1:] + found[:-1]) / 2,
            bin_edges=found,
            bin_widths=widths,
            pdf=pdf,
            cdf=cdf,
            satn=satn,
            log=bool(log),
        )

    n_passes = 2 if edges is None else 1
    run = reduction_run(
        local_thickness,
        passes,
        f"size_distribution of {name_of(local_thickness)}",
        n_passes,
        block_shape,
    )
    return drive(run, progress)
