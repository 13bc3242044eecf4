"""Process disk images out of core: each operation writes a new disk image.

IPSDK has disk images so that large images can be processed: each step
writes its result into a new disk image instead of memory.  Here every
operation reads its input block by block, computes each block with the
halo its filter needs, and writes the result into a new scratch disk image
in the disk-image directory, which is returned.  Memory holds a few blocks
(tens of MiB each) whatever the size of the image; results equal the same
scipy / scikit-image call on the whole array in memory.

Sizes and per-axis parameters are given as x, y, z (a number applies to
all three); 2D images ignore z.  3D operations work on (z, y, x) for each
channel c and frame t: c and t are never mixed.

The work is scheduled by dask: its threaded scheduler on this machine, or
the cluster of an active ``distributed.Client`` (dask's convention: create
one and every call here runs on it).  On a cluster, every worker must see
the input files and the disk-image directory at the same paths (a shared
file system): a :class:`~napari_diskimage.DiskImage` travels as a
reference, workers read their blocks from the input file and write them
into the output file themselves.

Every function takes ``progress(done_bytes, total_bytes)`` (raise from it
to cancel) and ``block_shape=(x, y, z)`` to override the block size.  A
failed or cancelled run removes its output file; inputs are never changed.

>>> import napari_diskimage as ndi
>>> from napari_diskimage import process
>>> img = ndi.copy(np.arange(64, dtype=np.uint8).reshape(8, 8))
>>> mask = process.threshold(img, 32)
>>> int(np.asarray(mask).sum())
32
>>> process.otsu(img) > 0
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._diskimage import DiskImage
from . import _distance, _label, _ops, _watershed
from ._engine import Run, stats

__all__ = [
    "OPERATIONS",
    "Run",
    "apply",
    "arithmetic",
    "bin",
    "closing",
    "convert",
    "crop",
    "dilate",
    "distance",
    "erode",
    "gaussian",
    "label",
    "local_thickness",
    "mean",
    "median",
    "opening",
    "otsu",
    "stats",
    "threshold",
    "watershed_split",
]

ProgressCallback = Callable[[int, int], Any]
_Block = Sequence[int] | None


def apply(
    func: Callable[..., Any],
    image: Any,
    *images: Any,
    depth: Any = 0,
    dtype: Any = None,
    boundary: Any = "reflect",
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
    """Run ``func`` on blocks of images and write the result to a disk image.

    ``func(block, *blocks)`` receives numpy arrays of one block of each
    image, indexed (z, y, x) (2D images: z of size 1), each with a halo of
    ``depth`` pixels on every side that is trimmed from what it returns;
    it must return an array of the same shape.  The halo is read from the
    neighbouring blocks, and at the image's edges made by ``boundary``.

    Parameters
    ----------
    func : callable
        numpy in, numpy out, same shape; called once per block, in several
        threads (or cluster workers) at once.
    image, *images : DiskImage or array-like
        Inputs of the same size (numpy, dask or zarr arrays of 1 to 5 axes
        are right-aligned to (t, c, z, y, x)).
    depth : int or (x, y, z)
        Halo in pixels; at most the image's size along each axis.
    dtype : optional
        Pixel type of the result (default: that of ``image``); ``func``'s
        values must cast to it safely ("same kind").
    boundary : {"reflect", "nearest", "periodic", "none"} or number
        How the halo is filled beyond the image's edges: dask's
        ``map_overlap`` boundaries ("reflect" mirrors the edge pixel, as
        scipy's ``mode="reflect"``; "none": no halo there).

    Returns
    -------
    DiskImage
        A new scratch disk image (deleted when dropped; save it to keep it).

    Raises
    ------
    ValueError, TypeError
        Bad parameters, images of different sizes, a halo larger than the
        image, or ``func`` returning another shape or an unsafe type.
    Exception
        Whatever ``func`` raised, with a note naming the run; the output
        file is removed.

    >>> out = apply(lambda b: b * 2, np.ones((4, 5), np.uint8))
    >>> int(np.asarray(out).max())
    2
    """
    run = _ops.apply_run(
        func,
        image,
        *images,
        depth=depth,
        dtype=dtype,
        boundary=boundary,
        block_shape=block_shape,
    )
    return _ops.drive(run, progress)


def gaussian(
    image: Any,
    sigma: Any,
    *,
    truncate: float = 4.0,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
    """Gaussian smoothing (``scipy.ndimage.gaussian_filter``, mode "reflect").

    ``sigma`` in pixels, > 0: a number or (x, y, z).  The halo is
    ``int(truncate * sigma + 0.5)`` pixels.  Same pixel type as the input
    (integers as scipy rounds them).

    Raises
    ------
    ValueError
        ``sigma`` is not greater than 0.
    """
    return _ops.drive(
        _ops.gaussian_run(image, sigma, truncate=truncate, block_shape=block_shape),
        progress,
    )


def median(
    image: Any,
    size: Any,
    *,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
    """Median filter (``scipy.ndimage.median_filter``) over a box of ``size``
    pixels (a whole number >= 1, or (x, y, z)); any pixel type."""
    return _ops.drive(_ops.median_run(image, size, block_shape=block_shape), progress)


def mean(
    image: Any,
    size: Any,
    *,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
    """Mean over a box of ``size`` pixels (``scipy.ndimage.uniform_filter``);
    same pixel type as the input."""
    return _ops.drive(_ops.mean_run(image, size, block_shape=block_shape), progress)


def threshold(
    image: Any,
    low: float | None,
    high: float | None = None,
    *,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
    """A uint8 mask: 1 where ``low <= value <= high``, else 0.

    ``low`` None: no lower bound, ``high`` None: no upper bound (not both).
    With Otsu's value ``t`` (:func:`otsu`), ``threshold(image, None, t)``
    is the dark phase (e.g. the pores of a scan), ``threshold(image, t)``
    the bright one."""
    return _ops.drive(
        _ops.threshold_run(image, low, high, block_shape=block_shape), progress
    )


def otsu(
    image: Any,
    *,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> float:
    """Otsu's threshold of the whole image, from a block-wise histogram.

    Equals ``skimage.filters.threshold_otsu(image)``: integer images get
    one bin per value, float images 256 bins over their finite range.
    Returns the threshold value: :func:`threshold`'s ``high`` for the dark
    phase, its ``low`` for the bright one.
    """
    return _ops.drive(_ops.otsu_run(image, block_shape=block_shape), progress)


def label(
    mask: Any,
    connectivity: int = 1,
    *,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
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
    return _ops.drive(
        _label.label_run(mask, connectivity, block_shape=block_shape), progress
    )


def _morph(name: str) -> Callable[..., DiskImage]:
    make = getattr(_ops, f"{name}_run")
    scipy_name = {
        "dilate": "binary_dilation",
        "erode": "binary_erosion",
        "opening": "binary_opening",
        "closing": "binary_closing",
    }[name]

    def operation(
        mask: Any,
        radius: int,
        *,
        block_shape: _Block = None,
        progress: ProgressCallback | None = None,
    ) -> DiskImage:
        return _ops.drive(make(mask, radius, block_shape=block_shape), progress)

    operation.__name__ = operation.__qualname__ = name
    operation.__doc__ = (
        f"Binary {name} of a mask (nonzero = foreground) with a ball (3D) or "
        f"disk (2D) of ``radius`` pixels, as ``scipy.ndimage.{scipy_name}`` "
        "with ``skimage.morphology.ball/disk(radius)``; a uint8 mask 0/1."
    )
    return operation


dilate = _morph("dilate")
erode = _morph("erode")
opening = _morph("opening")
closing = _morph("closing")


def arithmetic(
    a: Any,
    op: str,
    b: Any,
    *,
    dtype: Any = None,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
    """``a op b`` pixel by pixel: ``op`` is one of + - * / min max.

    ``b`` is an image of the same size or a number.  Computed in float64,
    then stored as ``dtype`` (default: ``a``'s type): for integer types
    rounded to the nearest integer and clipped to the type's range (200 +
    100 in uint8 is 255, 3 - 5 is 0; x / 0 is the type's largest value,
    0 / 0 is 0); float types keep the values.
    """
    return _ops.drive(
        _ops.arithmetic_run(a, op, b, dtype=dtype, block_shape=block_shape),
        progress,
    )


def convert(
    image: Any,
    dtype: Any,
    rescale: bool = True,
    *,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
    """The image in another pixel type.

    ``rescale=True`` (default) maps the image's own range (min..max, from a
    first pass) linearly to the whole range of an integer type, or to 0..1
    for a float type.  ``rescale=False`` keeps the values: rounded and
    clipped to an integer type's range.
    """
    return _ops.drive(
        _ops.convert_run(image, dtype, rescale, block_shape=block_shape), progress
    )


def bin(
    image: Any,
    factor: Any,
    *,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
    """Mean over blocks of ``factor`` pixels (a number or (x, y, z)).

    The result has ``size // factor`` pixels along each axis (pixels
    beyond the last whole block are left out), the same pixel type
    (integers rounded), and its spacing multiplied by the factors.
    """
    return _ops.drive(_ops.bin_run(image, factor, block_shape=block_shape), progress)


def crop(
    image: Any,
    x: int,
    y: int,
    z: int = 0,
    size_x: int | None = None,
    size_y: int | None = None,
    size_z: int | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> DiskImage:
    """The box from (x, y, z) of ``size_x`` x ``size_y`` x ``size_z`` pixels
    (default: to the far edge), all channels and frames.  Whole rows of a
    mapped file are copied by the kernel.

    Raises
    ------
    IndexError
        The box reaches outside the image.
    """
    return _ops.drive(_ops.crop_run(image, x, y, z, size_x, size_y, size_z), progress)


def distance(
    mask: Any,
    *,
    spacing: Any = None,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
    """The distance map of a mask: float32, for every nonzero voxel the exact
    Euclidean distance to the nearest zero voxel (0 on zeros).

    Equals ``scipy.ndimage.distance_transform_edt(mask, sampling=spacing)``
    (within 1e-3, float32) at any block size and any volume size; the
    volume's edge is not background, as in scipy.  Computed in separable
    passes (Felzenszwalb and Huttenlocher 2012): the squared distance
    along x on every row, then the lower envelope of parabolas along y,
    then along z, each pass streaming tiles of whole lines along its axis
    through the output file (which holds the squared distances between
    passes), so memory is a few tiles whatever the size.  IPSDK calls it a
    distance map.

    Parameters
    ----------
    mask : DiskImage or array-like
        0 = background (solid), 1 = foreground (pores); integer or bool.
    spacing : float or (z, y, x) floats, optional
        Voxel size per axis (scipy's ``sampling`` order; (y, x) for a 2D
        image); default: the image's own spacing (1 for arrays).
    block_shape : (x, y, z), optional
        Tile size across the lines of each pass; a pass always reads whole
        lines along its own axis.

    Returns
    -------
    DiskImage
        float32 distances, in the unit of ``spacing``.

    Raises
    ------
    TypeError
        The mask holds floats.
    ValueError
        It holds values other than 0 and 1 (found while running; the
        output is removed: make a mask with :func:`threshold`), it has no 0
        at all (no distance is defined), or a spacing is zero, negative or
        not finite.
    OSError
        The disk-image directory has no room for the output (before any
        work).
    """
    return _ops.drive(
        _distance.distance_run(mask, spacing=spacing, block_shape=block_shape),
        progress,
    )


def local_thickness(
    mask: Any,
    *,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
    """The local thickness (pore-size map) of a mask, float32 radii in pixels.

    Each foreground voxel gets the radius of the largest ball inside the
    foreground that covers it, over every integer radius with "smooth"
    balls: ``porespy.filters.local_thickness(mask)`` with its defaults
    (for each radius r, largest first, the voxels closer than r to a voxel
    whose distance to the background is at least r get r).  Its histogram
    is the pore-size distribution (:func:`napari_diskimage.measure.
    size_distribution`).  The distance map (exact, see :func:`distance`,
    in pixels: spacing is not used, as in porespy) is written first into
    a scratch file; then each block is computed on itself plus a halo of
    the largest radius found, so memory is bounded by blocks of that
    margin (the blocks' size shrinks as that radius grows).

    Where it may differ from porespy: nowhere by construction (both use
    the exact distance map and the same radii and balls; measured equal
    on every voxel in the tests).  A voxel can differ only where a
    distance is within float32 rounding of a whole number and the two
    distance maps round it to different sides (porespy's ``edt`` package
    and this one both take the square root of an exact integer squared
    distance, so it has not been seen).

    Raises
    ------
    TypeError, ValueError
        As :func:`distance` (not a 0/1 mask, no background).
    """
    return _ops.drive(
        _distance.local_thickness_run(mask, block_shape=block_shape), progress
    )


def watershed_split(
    mask: Any,
    h: float = 1.0,
    *,
    connectivity: int = 1,
    block_shape: _Block = None,
    progress: ProgressCallback | None = None,
) -> DiskImage:
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
    largest distance + 2 (at most 40 pixels, for memory), blocks of at
    least twice the halo; markers get one id across block borders, and
    foreground voxels whose marker lies beyond their block's halo are
    flooded from their neighbours' labels afterwards.  Where blocks meet,
    a pore's boundary can move by a few voxels, when the flooding path in
    memory leaves the block's halo: measured on porespy blobs, the
    adjusted Rand index against the in-memory result inside the mask is
    >= 0.98 (1.0 with one block).  Ids are the markers' ids (1..N in file
    order of the markers), not skimage's numbering.

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
    return _ops.drive(
        _watershed.watershed_split_run(
            mask, h, connectivity=connectivity, block_shape=block_shape
        ),
        progress,
    )


# --- for the napari widget -------------------------------------------------
class Parameter:
    """One parameter of an operation, as a widget shows it."""

    def __init__(
        self,
        name: str,
        kind: str,
        default: Any,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        choices: Sequence[Any] = (),
        help: str = "",
    ) -> None:
        self.name, self.kind, self.default = name, kind, default
        self.minimum, self.maximum = minimum, maximum
        self.choices = tuple(choices)
        self.help = help


class Operation:
    """An operation the "Process" widget offers: its title, parameters and
    the function that makes its :class:`Run`."""

    def __init__(
        self,
        title: str,
        make_run: Callable[..., Run],
        parameters: Sequence[Parameter],
        *,
        mask_input: bool = False,
        second_image: bool = False,
        labels_result: bool = False,
    ) -> None:
        self.title = title
        self.make_run = make_run
        self.parameters = tuple(parameters)
        self.mask_input = mask_input
        self.second_image = second_image
        #: The result is labels (ids, not intensities): a viewer shows it as
        #: a paintable labels layer.
        self.labels_result = labels_result


_TYPES = ("uint8", "uint16", "uint32", "int16", "int32", "float32", "float64")

#: Operations by key, in the order the widget lists them.
OPERATIONS: dict[str, Operation] = {
    "gaussian": Operation(
        "Gaussian smoothing",
        _ops.gaussian_run,
        [Parameter("sigma", "float", 2.0, minimum=0.1, maximum=1000, help="pixels")],
    ),
    "median": Operation(
        "Median filter",
        _ops.median_run,
        [Parameter("size", "int", 3, minimum=1, maximum=255, help="box side, pixels")],
    ),
    "mean": Operation(
        "Mean filter",
        _ops.mean_run,
        [Parameter("size", "int", 3, minimum=1, maximum=255, help="box side, pixels")],
    ),
    "threshold": Operation(
        "Threshold (mask 0/1)",
        _ops.threshold_run,
        [
            Parameter("low", "optional float", None, help="empty: no lower bound"),
            Parameter("high", "optional float", None, help="empty: no upper bound"),
        ],
    ),
    "label": Operation(
        "Label connected components",
        _label.label_run,
        [Parameter("connectivity", "int", 1, minimum=1, maximum=3)],
        mask_input=True,
        labels_result=True,
    ),
    "dilate": Operation(
        "Dilate mask",
        _ops.dilate_run,
        [Parameter("radius", "int", 1, minimum=0, maximum=100)],
        mask_input=True,
    ),
    "erode": Operation(
        "Erode mask",
        _ops.erode_run,
        [Parameter("radius", "int", 1, minimum=0, maximum=100)],
        mask_input=True,
    ),
    "opening": Operation(
        "Opening of mask",
        _ops.opening_run,
        [Parameter("radius", "int", 1, minimum=0, maximum=100)],
        mask_input=True,
    ),
    "closing": Operation(
        "Closing of mask",
        _ops.closing_run,
        [Parameter("radius", "int", 1, minimum=0, maximum=100)],
        mask_input=True,
    ),
    "arithmetic": Operation(
        "Arithmetic (+ - * / min max)",
        _ops.arithmetic_run,
        [
            Parameter("op", "choice", "+", choices=("+", "-", "*", "/", "min", "max")),
            Parameter("b", "image or number", 0.0, help="a layer or a number"),
        ],
        second_image=True,
    ),
    "convert": Operation(
        "Convert pixel type",
        _ops.convert_run,
        [
            Parameter("dtype", "choice", "uint8", choices=_TYPES),
            Parameter("rescale", "bool", True, help="map min..max to the new range"),
        ],
    ),
    "bin": Operation(
        "Bin (mean of blocks)",
        _ops.bin_run,
        [Parameter("factor", "int", 2, minimum=1, maximum=1024)],
    ),
    "distance": Operation(
        "Distance map (exact EDT)",
        _distance.distance_run,
        [],
        mask_input=True,
    ),
    "local_thickness": Operation(
        "Local thickness (pore sizes)",
        _distance.local_thickness_run,
        [],
        mask_input=True,
    ),
    "watershed_split": Operation(
        "Watershed split of pores (labels)",
        _watershed.watershed_split_run,
        [
            Parameter("h", "float", 1.0, minimum=0.01, maximum=1000, help="pixels"),
            Parameter("connectivity", "int", 1, minimum=1, maximum=3),
        ],
        mask_input=True,
        labels_result=True,
    ),
    "crop": Operation(
        "Crop",
        _ops.crop_run,
        [
            Parameter("x", "int", 0, minimum=0),
            Parameter("y", "int", 0, minimum=0),
            Parameter("z", "int", 0, minimum=0),
            Parameter("size_x", "int", 1, minimum=1),
            Parameter("size_y", "int", 1, minimum=1),
            Parameter("size_z", "int", 1, minimum=1),
        ],
    ),
}
