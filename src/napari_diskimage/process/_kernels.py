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
    far = 2 * n + 2  # farther than any zero of the row
    for i in range(n_rows):
        last = -far
        for q in range(n):  # forward: steps since the last 0
            if mask[i, q] == 0:
                last = q
            out[i, q] = q - last
        nxt = n + far
        for q in range(n - 1, -1, -1):  # backward: the nearer 0, squared
            if mask[i, q] == 0:
                nxt = q
            d = min(out[i, q], nxt - q)
            if d > n:
                out[i, q] = inf
            else:
                d = d * spacing
                out[i, q] = d * d


@njit(nogil=True, cache=True)
def envelope(block: np.ndarray, spacing: float, root: bool) -> None:
    """One exact pass of the squared distance along the middle axis, in place.

    ``block`` (a, n, b) float32, C-contiguous, holds squared distances
    found by the previous passes (inf: none yet) on lines ``block[i, :, j]``;
    each value becomes ``min_q ((p - q) * spacing)^2 + f(q)`` over its line
    (the lower envelope of parabolas), or its square root when ``root``.
    A line is gathered into a buffer and scattered back: neighbouring
    lines share cache lines, so a (z, y, x) block is processed along y or
    z without transposing it.
    """
    n_a, n, n_b = block.shape
    inf = np.inf
    f = np.empty(n, np.float64)
    v = np.empty(n, np.int64)
    z = np.empty(n + 1, np.float64)
    for i in range(n_a):
        for j in range(n_b):
            k = -1
            for q in range(n):
                fq = np.float64(block[i, q, j])
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
                block[i, q, j] = np.sqrt(value) if root else value
