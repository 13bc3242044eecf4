"""NGFF (OME-Zarr) metadata and Zarr array settings for the writer:
units, axes, ``multiscales``, compressors and chunks."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..storage.zarr import is_zarr_store as is_zarr_store
from .downsample import CHUNK_YX, CHUNK_Z, SLAB_BYTES

#: Compressors by name (Blosc with byte shuffle, or bit shuffle for
#: "lz4-bitshuffle": the fastest to write and read, chunks about 7% larger
#: than zstd's on a noisy scan; None stores raw chunks).
COMPRESSORS = ("zstd", "lz4", "lz4-bitshuffle", "gzip", None)

#: NGFF units (UDUNITS-2 names) of the usual spellings.
_UNITS = {
    "nm": "nanometer",
    "nanometer": "nanometer",
    "um": "micrometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "micron": "micrometer",
    "micrometer": "micrometer",
    "mm": "millimeter",
    "millimeter": "millimeter",
    "cm": "centimeter",
    "centimeter": "centimeter",
    "m": "meter",
    "meter": "meter",
    "angstrom": "angstrom",
    "å": "angstrom",
    "pm": "picometer",
    "picometer": "picometer",
    "inch": "inch",
}


def ngff_unit(unit: str | None) -> str | None:
    """The NGFF (UDUNITS-2) name of ``unit``, or None if NGFF has none."""
    if not unit:
        return None
    return _UNITS.get(unit.strip().lower())


def compressors(name: str | None, zarr_format: int) -> Any:
    if name is None or name == "none":
        return None
    if name not in COMPRESSORS:
        raise ValueError(
            f"unknown compressor {name!r}: use one of 'zstd', 'lz4', "
            "'lz4-bitshuffle', 'gzip' or None"
        )
    cname, _, bits = name.partition("-")
    if zarr_format == 3:
        from zarr.codecs import BloscCodec, GzipCodec

        if name == "gzip":
            return [GzipCodec(level=1)]
        shuffle = "bitshuffle" if bits else "shuffle"
        return [BloscCodec(cname=cname, clevel=1, shuffle=shuffle)]  # type: ignore[arg-type]
    import numcodecs

    if name == "gzip":
        return [numcodecs.GZip(level=1)]
    mode = numcodecs.Blosc.BITSHUFFLE if bits else numcodecs.Blosc.SHUFFLE
    return [numcodecs.Blosc(cname=cname, clevel=1, shuffle=mode)]


def default_chunks(
    shape_zyx: tuple[int, int, int], itemsize: int
) -> tuple[int, int, int]:
    z, y, x = shape_zyx
    plane = max(1, y * x * itemsize)
    cz = 1
    while cz * 2 <= min(z, CHUNK_Z) and cz * 2 * plane <= SLAB_BYTES:
        cz *= 2
    return (cz, min(y, CHUNK_YX), min(x, CHUNK_YX))


def check_chunks(
    chunks: Any, shape_zyx: tuple[int, int, int], itemsize: int
) -> tuple[int, int, int]:
    if chunks is None:
        return default_chunks(shape_zyx, itemsize)
    if isinstance(chunks, (int, np.integer)):
        chunks = (int(chunks),) * 3
    chunks = tuple(chunks)
    if len(chunks) != 3 or not all(
        isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1
        for c in chunks
    ):
        raise ValueError(
            f"chunks must be one positive integer or three (z, y, x), got {chunks!r}"
        )
    return tuple(min(int(c), n) for c, n in zip(chunks, shape_zyx, strict=True))  # type: ignore[return-value]


def ngff_axes(keep_t: bool, keep_c: bool, unit: str | None) -> list[dict[str, Any]]:
    axes: list[dict[str, Any]] = []
    if keep_t:
        axes.append({"name": "t", "type": "time"})
    if keep_c:
        axes.append({"name": "c", "type": "channel"})
    for name in "zyx":
        axis: dict[str, Any] = {"name": name, "type": "space"}
        if unit:
            axis["unit"] = unit
        axes.append(axis)
    return axes


def multiscale(name: str, axes: list[dict[str, Any]], scales: list[list[float]],
                method: str, version: str) -> dict[str, Any]:  # fmt: skip
    ms: dict[str, Any] = {
        "name": name,
        "axes": axes,
        "datasets": [
            {
                "path": str(i),
                "coordinateTransformations": [{"type": "scale", "scale": s}],
            }
            for i, s in enumerate(scales)
        ],
        "type": method,
        "metadata": {
            "method": f"napari_diskimage.io.downsample.reduce_block({method!r})",
            "description": _METHOD_TEXT[method],
        },
    }
    if version == "0.4":
        ms = {"version": "0.4", **ms}
    return ms


_METHOD_TEXT = {
    "mean": "mean of 2x2 (x2 in z) blocks, integers rounded half up",
    "gaussian": "gaussian in y and x (sigma 2/3 px), then mean of 2x2 (x2 in z) blocks",
    "nearest": "first voxel of 2x2 (x2 in z) blocks",
    "mode": "mode of 2x2 (x2 in z) blocks, ties to the smallest label",
}


def write_attrs(group: Any, attrs: dict[str, Any], version: str) -> None:
    group.attrs.update(
        {"ome": {"version": "0.5", **attrs}} if version == "0.5" else attrs
    )
