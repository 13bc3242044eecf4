"""Opening files as disk images: one opener per format and :func:`open_any`.

Each storage kind's module opens its files into an
:class:`~napari_diskimage.storage.Opened` (storage, metadata, stored levels)
and never builds a :class:`DiskImage`; the openers here do.  :data:`KINDS`
is the one table of formats: :func:`open_any` (the napari reader, the
command line, :func:`open_labels`) takes the first kind whose ``matches``
accepts the path, so a new format is one new entry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ._diskimage import DiskImage
from ._files import RAW_SUFFIXES, TIFF_SUFFIXES
from ._geometry import Geometry
from ._labels import check_labels
from ._quiet import quieted
from ._sequence import list_sequence
from .storage import mapped, sequence, tiff, zarr
from .storage._base import Opened

__all__ = [
    "KINDS",
    "Kind",
    "kind_of",
    "open_any",
    "open_labels",
    "open_raw",
    "open_tiff",
    "open_tiff_sequence",
    "open_zarr",
]


def _image(opened: Opened) -> DiskImage:
    """The disk image of an opener's result (writable if its storage is)."""
    mode = "r+" if opened.storage.writable else "r"
    return DiskImage(opened.storage, opened.meta, mode=mode, levels=opened.levels)


@quieted
def open_tiff(
    path: str | os.PathLike[str],
    mode: str = "r",
    *,
    series: int = 0,
    cache_bytes: int | None = None,
) -> DiskImage:
    """Open a TIFF file as a disk image without reading its pixels.

    IPSDK: ``PyIPSDK.openTiffImageFile``.  Only the header is parsed, so the
    time does not depend on the file size.  Axes come from the file
    (ImageJ hyperstacks, OME-TIFF dimension order, tifffile's shaped
    metadata; plain multi-page files are z stacks; RGB(A) samples are
    channels, with ``rgb`` true) and are arranged as (t, c, z, y, x).  The
    physical pixel size (ImageJ, OME, resolution tags) becomes ``spacing``
    (z, y, x) and ``unit``.

    Uncompressed contiguous pixels (single and multi-page files, BigTIFF,
    ImageJ hyperstacks past 4 GiB) are memory-mapped (``is_mapped``).
    Other pixels (LZW, Deflate, Zstd, JPEG ... compression, tiles, scattered
    strips, predictors, separate colour planes) are decoded lazily, a strip
    or tile at a time when read, with a bounded cache: the result is a
    read-only disk image (:mod:`napari_diskimage.storage.lazy_tiff`); copy it
    (:func:`copy`) to edit it.

    A pyramidal TIFF (SubIFDs, OME or SVS levels) lists its stored levels in
    ``display_levels``, finest first.

    Parameters
    ----------
    path : str or path-like
        The TIFF file.
    mode : {"r", "r+"}
        ``"r"`` (default): read-only.  ``"r+"``: :meth:`DiskImage.write_pixel`
        edits the user's file in place; use it only when that is intended.
        Only memory-mappable files can be opened ``"r+"``.
    series : int
        Which image series of the file to open (default the first); see
        :func:`tiff_series` for the list.
    cache_bytes : int, optional
        Most bytes of decoded strips or tiles a compressed file keeps
        (default 64 MiB, :data:`~napari_diskimage.storage.lazy_tiff.CACHE_BYTES`;
        0: none).  An image unpickled in a cluster worker uses the default.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The path is missing, a folder, or unreadable; or ``mode="r+"`` for a
        file that is compressed or tiled (PermissionError: copy it instead).
    ValueError
        The file is not a valid TIFF, is truncated, or has an unsupported
        pixel type (complex ...); the message says which; or
        ``cache_bytes`` is negative.
    IndexError
        ``series`` does not exist.
    """
    return _image(tiff.open_tiff(path, mode, series=series, cache_bytes=cache_bytes))


def open_raw(
    path: str | os.PathLike[str],
    geometry: Geometry | None = None,
    offset: int = 0,
    byte_order: str = "<",
    mode: str = "r",
) -> DiskImage:
    """Open a RAW file as a disk image without reading it (IPSDK openRawImageFile).

    Parameters
    ----------
    path : str or path-like
        The file.  Pixels are stored without compression in (t, c, z, y, x)
        order, x fastest, after ``offset`` bytes of header.
    geometry : Geometry, optional
        Pixel type and sizes.  By default parsed from the file name, e.g.
        ``Lena_510x509_UInt8.raw`` (see :meth:`Geometry.from_filename`).
    offset : int
        Header size in bytes before the first pixel.
    byte_order : {"<", ">"}
        Byte order of multi-byte pixels: little-endian (the default) or
        big-endian.
    mode : {"r", "r+"}
        ``"r"`` (default): read-only.  ``"r+"``: :meth:`DiskImage.write_pixel`
        edits the file in place.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The file is missing, a folder, or cannot be read (or written, for
        ``mode="r+"``).
    ValueError
        No geometry was given and the name does not carry one; or the file is
        smaller than ``offset`` + the geometry's size (both sizes are given).

    >>> img = open_raw("Lena_510x509_UInt8.raw")      # doctest: +SKIP
    >>> img.shape                                      # doctest: +SKIP
    (1, 1, 1, 509, 510)
    """
    opened = mapped.open_raw(path, geometry, offset, byte_order, mode)
    return _image(opened)


@quieted
def open_tiff_sequence(
    path: str | os.PathLike[str], pattern: str | None = None, axis: str = "z"
) -> DiskImage:
    """Open a folder of TIFF slices as one read-only disk image.

    ``path`` is a folder (every ``*.tif``, ``*.tiff`` file in it) or a glob
    pattern such as ``"scan/rec_*.tif"`` (or give the folder and
    ``pattern``).  Files are taken in natural order (``slice_2`` before
    ``slice_10``); each file is one plane along ``axis`` (``"z"`` or
    ``"t"``); a multi-page file stacks its pages (along z).  Only the first
    file's header is read at open; the others are listed and their sizes
    checked, and each one's header is checked when it is first read.
    Uncompressed slices are read from their own files; compressed or tiled
    ones are decoded a plane at a time.  ``image.path`` is the folder,
    ``image.files`` the slices.

    Raises
    ------
    FileNotFoundError, NotADirectoryError, PermissionError
        The folder is missing, a file, or unreadable; a slice is unreadable.
    ValueError
        No TIFF slices in the folder (the message counts the other files),
        a slice of another size or type (naming it), an empty slice,
        ``axis`` not "z" or "t".

    Warns
    -----
    SequenceGapWarning
        The numbering has gaps: the warning names the missing numbers.
    """
    folder, files = list_sequence(path, pattern, axis)
    return _image(sequence.open_sequence(folder, files, axis=axis))


def open_zarr(
    path: str | os.PathLike[str], mode: str = "r", *, level: int = 0
) -> DiskImage:
    """Open an OME-Zarr (NGFF 0.4, 0.5) or a plain Zarr v2/v3 array lazily.

    Nothing is decoded when it opens: a read decodes the chunks it touches
    (kept in a bounded cache).  The store's resolution levels are the
    display pyramid (``image.display_levels``).

    Parameters
    ----------
    path : str or os.PathLike
        The store's folder (``.zarr``, ``.ome.zarr``).
    mode : {"r", "r+"}
        ``"r+"`` lets :meth:`DiskImage.write_pixel` write into the store;
        the coarser levels covering a written pixel are updated.
    level : int
        The resolution level to open (0: the finest).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    CorruptFileError
        Not a Zarr store, broken metadata, a listed level missing, or a
        codec that is not installed; the message names the store.

    Examples
    --------
    >>> import napari_diskimage as ndi
    >>> image = ndi.open_zarr("scan.ome.zarr")  # doctest: +SKIP
    """
    return _image(zarr.open_zarr_storage(path, mode, level))


# --- one dispatch ------------------------------------------------------------
class Kind(NamedTuple):
    """A format: its name, whether a path is one, and its opener
    (``open(path, **kw) -> DiskImage``)."""

    name: str
    matches: Callable[[Path], bool]
    open: Callable[..., DiskImage]


def _is_slice_folder(p: Path) -> bool:
    """A folder, or a glob pattern of slices (not an existing file)."""
    return p.is_dir() or (any(ch in p.name for ch in "*?[") and not p.exists())


def _is_zarr(p: Path) -> bool:
    """A folder named ``*.zarr`` or holding Zarr metadata."""
    return p.is_dir() and (p.suffix.lower() == ".zarr" or zarr.is_zarr_store(p))


def _has_suffix(*suffixes: str) -> Callable[[Path], bool]:
    return lambda p: p.suffix.lower() in suffixes


#: The formats :func:`open_any` knows, tried in order.
KINDS: tuple[Kind, ...] = (
    Kind("zarr", _is_zarr, open_zarr),
    Kind("tiff sequence", _is_slice_folder, open_tiff_sequence),
    Kind("tiff", _has_suffix(*TIFF_SUFFIXES), open_tiff),
    Kind("raw", _has_suffix(*RAW_SUFFIXES), open_raw),
)


def kind_of(path: str | os.PathLike[str]) -> Kind:
    """The first of :data:`KINDS` that ``path`` matches (a folder or glob
    pattern is a TIFF sequence; otherwise the suffix decides).

    Raises
    ------
    ValueError
        No kind matches; the message lists the suffixes known.
    """
    p = Path(path)
    for kind in KINDS:
        if kind.matches(p):
            return kind
    suffix = p.suffix.lower()
    raise ValueError(
        f"{str(p)!r} is not a TIFF ({', '.join(TIFF_SUFFIXES)}) or RAW "
        f"({', '.join(RAW_SUFFIXES)}) file, a Zarr store nor a folder of TIFF "
        "slices: "
        f"cannot tell its format from its suffix {suffix or '(none)'}"
    )


def open_any(path: str | os.PathLike[str], **kw: Any) -> DiskImage:
    """Open ``path`` with the opener of its kind (:func:`kind_of`).

    ``kw`` goes to that opener (``mode`` for files, ``geometry`` and
    ``offset`` for RAW, ``pattern`` and ``axis`` for slice folders).

    Raises
    ------
    ValueError
        The format is unknown, or as the opener raises.
    """
    return kind_of(path).open(path, **kw)


def open_labels(
    path: str | os.PathLike[str], image: Any = None, mode: str = "r"
) -> DiskImage:
    """Open a saved labels file (TIFF, or RAW with the geometry in its name),
    checked against ``image`` if given (:func:`check_labels`).  ``mode="r+"``
    paints into the file itself; ``"r"`` opens it read-only (copy it to
    paint, as napari_diskimage.copy does)."""
    p = Path(path)
    if kind_of(p).name == "tiff sequence":
        raise ValueError(
            f"{str(p)!r} is a folder of slices: labels are one TIFF or RAW "
            "file; save them as one first"
        )
    labels = open_any(p, mode=mode)
    try:
        if image is not None:
            check_labels(image, labels)
        else:
            check_labels(labels, labels)
        if not labels.is_mapped:
            raise ValueError(
                f"{str(p)!r} is stored {labels.storage.describe()}: labels are "
                "painted into a mapped file; save it uncompressed first "
                "(napari-diskimage copy FILE labels.tif)"
            )
    except BaseException:
        labels.close()
        raise
    return labels
