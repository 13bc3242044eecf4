"""numba kernels of the distance transform: 1D passes over whole lines.

The squared Euclidean distance transform is separable (Felzenszwalb and
Huttenlocher, "Distance transforms of sampled functions", Theory of
Computing 8, 2012): a 1D pass along x gives each voxel's squared distance
to the nearest zero of its row; a pass along y then takes, for every
voxel, the lower envelope of the parabolas ``(y - q)^2 + f(q)`` over its
column, and a pass along z the same over its z line.  Each pass needs
whole lines along its axis and nothing else, so the passes stream tiles of
whole lines out of core.

The kernels release the GIL (``nogil``): the engine's threads run them on
different blocks at once.  Compiled code is cached next to this module
(``cache=True``), so the JIT compile (a few seconds) happens once per
installation.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def rows_from_mask(mask: np.ndarray, out: np.ndarray, spacing: float) -> None:
    """Squared distance along each row (last axis) to the row's nearest 0.

    ``mask`` (n_rows, n) uint8, 0 = background; ``out`` (n_rows, n)
    float32 gets ``(distance * spacing)^2``, inf on a row without a 0.
    """
    n_rows, n = mask.shape
    inf = np.inf
    for i in range(n_rows):
        last = -1
        for q in range(n):
            if mask[i, q] == 0:
                last = q
                out[i, q] = 0.0
            elif last >= 0:
                out[i, q] = q - last
            else:
                out[i, q] = inf
        nxt = -1
        for q in range(n - 1, -1, -1):
            if mask[i, q] == 0:
                nxt = q
            elif nxt >= 0 and nxt - q < out[i, q]:
                out[i, q] = nxt - q
        for q in range(n):
            d = out[i, q]
            if d != inf:
                d = d * spacing
                out[i, q] = d * d


@njit(nogil=True, cache=True)
def envelope(lines: np.ndarray, spacing: float, root: bool) -> None:
    """One exact pass of the squared distance along the last axis, in place.

    ``lines`` (n_lines, n) float32 holds squared distances found by the
    previous passes (inf: none yet); each becomes
    ``min_q ((p - q) * spacing)^2 + f(q)`` over its line (the lower
    envelope of parabolas), or its square root when ``root``.
    """
    n_lines, n = lines.shape
    inf = np.inf
    f = np.empty(n, np.float64)
    v = np.empty(n, np.int64)
    z = np.empty(n + 1, np.float64)
    for i in range(n_lines):
        k = -1
        for q in range(n):
            fq = np.float64(lines[i, q])
            f[q] = fq
            if fq == inf:
                continue
            pq = q * spacing
            if k < 0:
                k = 0
                v[0] = q
                z[0] = -inf
                z[1] = inf
                continue
            while True:
                p = v[k] * spacing
                s = ((fq + pq * pq) - (f[v[k]] + p * p)) / (2.0 * (pq - p))
                if s <= z[k]:
                    k -= 1
                else:
                    break
            k += 1
            v[k] = q
            z[k] = s
            z[k + 1] = inf
        if k < 0:  # no finite value on this line: it stays inf
            continue
        k = 0
        for q in range(n):
            pq = q * spacing
            while z[k + 1] < pq:
                k += 1
            d = pq - v[k] * spacing
            value = d * d + f[v[k]]
            lines[i, q] = np.sqrt(value) if root else value


@njit(nogil=True, cache=True)
def thickness_at_radius(
    squared: np.ndarray, result: np.ndarray, radius: float, core: np.ndarray
) -> int:
    """Give ``radius`` to the voxels of the core box whose squared distance
    to a seed is below ``radius^2`` and that have no value yet.

    ``squared`` and ``result`` are 3D; ``core`` is (z0, z1, y0, y1, x0, x1).
    Returns how many voxels got the value.
    """
    r2 = radius * radius
    n = 0
    for i in range(core[0], core[1]):
        for j in range(core[2], core[3]):
            for k in range(core[4], core[5]):
                if result[i, j, k] == 0 and squared[i, j, k] < r2:
                    result[i, j, k] = radius
                    n += 1
    return n
