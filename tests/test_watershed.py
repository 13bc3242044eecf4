"""watershed_split against skimage's watershed of the whole mask in memory.

Agreement is the adjusted Rand index (Hubert and Arabie 1985: 1 for the
same partition whatever the ids, ~0 for chance) over the mask's voxels,
computed here from the contingency table (scikit-learn is not installed);
skimage's ``adapted_rand_error`` is another quantity (an F-score of pairs).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as sndi
from scipy.sparse import coo_matrix
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

import napari_diskimage as ndi
from napari_diskimage import process

porespy = pytest.importorskip("porespy")


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    a = np.unique(a, return_inverse=True)[1].ravel()
    b = np.unique(b, return_inverse=True)[1].ravel()
    table = coo_matrix((np.ones(a.size), (a, b))).tocsr()

    def pairs(v) -> float:
        v = np.asarray(v, np.float64)
        return float((v * (v - 1) / 2).sum())

    both = pairs(table.data)
    ra = pairs(np.asarray(table.sum(1)).ravel())
    rb = pairs(np.asarray(table.sum(0)).ravel())
    expected = ra * rb / pairs([a.size])
    return (both - expected) / ((ra + rb) / 2 - expected)


def in_memory(mask: np.ndarray, h: float, connectivity: int) -> np.ndarray:
    dt = sndi.distance_transform_edt(mask)
    full = np.ones((3,) * mask.ndim)
    markers = sndi.label(h_maxima(dt, h), structure=full)[0]
    return watershed(-dt, markers, mask=mask > 0, connectivity=connectivity)


def test_adjusted_rand_index_is_one_for_renamed_ids_only():
    a = np.array([1, 1, 2, 2, 3, 3])
    assert adjusted_rand_index(a, a * 7 + 1) == pytest.approx(1.0)
    assert adjusted_rand_index(a, np.array([1, 2, 1, 2, 1, 2])) < 0.1


@pytest.mark.parametrize(
    ("shape", "blocks", "seed", "blobiness"),
    [
        ((40, 50, 60), (16, 12, 10), 1, 1),  # pores cross many borders
        ((48, 80, 80), (30, 30, 24), 2, 2),
        ((160, 200), (40, 30, 1), 3, 1),  # 2D
    ],
)
def test_watershed_split_agrees_with_skimage(shape, blocks, seed, blobiness):
    mask = porespy.generators.blobs(
        shape, porosity=0.6, blobiness=blobiness, seed=seed
    ).astype(np.uint8)
    out = process.watershed_split(mask, 1.0, block_shape=blocks)
    assert out.dtype == np.uint32
    got = np.asarray(ndi.open_raw(out.path, out.geometry).array[0, 0]).reshape(shape)
    ref = in_memory(mask, 1.0, 1)
    inside = mask > 0
    assert np.array_equal(got > 0, ref > 0)  # the same pores are split
    assert adjusted_rand_index(got[inside], ref[inside]) >= 0.98
    # one id per region: as many regions as skimage finds, give or take
    # the few markers that differ where blocks meet
    n_got, n_ref = len(np.unique(got)) - 1, len(np.unique(ref)) - 1
    assert abs(n_got - n_ref) <= max(2, n_ref // 20)
    out.close()


def test_small_pores_far_from_a_large_one_get_small_halos():
    # small pores everywhere but one large ball in a corner: blocks far
    # from it take halos from their own small distances, not the ball's
    mask = porespy.generators.blobs(
        (32, 64, 128), porosity=0.5, blobiness=3, seed=5
    ).astype(np.uint8)
    zz, yy, xx = np.ogrid[:32, :64, :128]
    mask[(zz - 12) ** 2 + (yy - 14) ** 2 + (xx - 14) ** 2 <= 10**2] = 1
    run = process.watershed_split.run(mask, 1.0, block_shape=(16, 16, 16))
    for _ in run.steps():
        pass
    got = np.asarray(run.image.array[0, 0])
    ref = in_memory(mask, 1.0, 1)
    inside = mask > 0
    assert np.array_equal(got > 0, ref > 0)
    assert adjusted_rand_index(got[inside], ref[inside]) >= 0.98
    halos = run.info["halos"]  # per block, in file order
    far = [h for h, box in zip(halos, run.info["boxes"], strict=True)
           if box[4][0] >= 96]  # fmt: skip
    assert max(halos) == 40  # 6 x the ball's radius + 2, at most 40
    assert max(far) <= 20, far  # 16 here
    run.image.close()


def test_one_block_is_the_in_memory_result():
    mask = porespy.generators.blobs((30, 40, 50), porosity=0.6, seed=4).astype(np.uint8)
    for h, connectivity in ((1.0, 1), (0.5, 3)):
        out = process.watershed_split(mask, h, connectivity=connectivity)
        got = np.asarray(out.array[0, 0])
        ref = in_memory(mask, h, connectivity)
        inside = mask > 0
        assert adjusted_rand_index(got[inside], ref[inside]) == pytest.approx(1.0)
        assert np.array_equal(got > 0, ref > 0)
        out.close()


def test_h_maxima_is_skimages_on_plateaus_and_ties():
    """The union-find h-maxima of the markers step keeps skimage's voxels,
    on images of few values (plateaus, equal peaks) and smooth ones."""
    from napari_diskimage.process._hmaxima import h_maxima as ours

    rng = np.random.default_rng(0)
    for t in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 10, 3))
        if t % 3 == 0:
            image = rng.integers(0, 5, shape).astype(np.float32)
        elif t % 3 == 1:
            image = sndi.gaussian_filter(rng.random(shape), 1).astype(np.float32)
        else:  # distances: square roots of integers, 1.0 apart often
            image = np.sqrt(rng.integers(0, 30, shape)).astype(np.float32)
        for h in (0.01, 0.5, 1.0, 2.0):
            ref = h_maxima(image.astype(np.float64), h)
            assert np.array_equal(ours(image, h), ref), (t, h)


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_flood_is_skimages_watershed(connectivity):
    """The numba flood of each block gives skimage's labels voxel for voxel
    (same keys, ages, heap and neighbour order), equal heights included."""
    from napari_diskimage.process._flood import flood

    mask = porespy.generators.blobs((30, 40, 50), porosity=0.6, seed=4)
    dt = sndi.distance_transform_edt(mask).astype(np.float32)
    for h in (1.0, 0.5):
        full = np.ones((3, 3, 3))
        markers = sndi.label(h_maxima(dt.astype(np.float64), h), structure=full)[0]
        ref = watershed(-dt.astype(np.float64), markers, mask=mask,
                        connectivity=connectivity)  # fmt: skip
        labels = markers.astype(np.uint32)
        flood(np.where(mask, -dt, np.float32(np.nan)), labels, connectivity)
        assert np.array_equal(labels, ref)
