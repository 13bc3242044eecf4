"""The TIFFs people have, from several writers, open and read right.

Each case writes a small file with tifffile, Pillow or libtiff's ``tiffcp``
and knows the pixels it holds as a (t, c, z, y, x) array.  Through
``open_tiff`` the pixels read back (``array``, ``load_plane``,
``read_region``) must equal them, and opening must read only the header.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from napari_diskimage.storage import lazy_tiff as _lazy

PIL = pytest.importorskip("PIL.Image", reason="Pillow is in the testing extras")
from PIL import ImageSequence  # noqa: E402

TIFFCP = shutil.which("tiffcp")
needs_tiffcp = pytest.mark.skipif(
    TIFFCP is None,
    reason="tiffcp not found: install Debian package libtiff-tools (.ci/run does)",
)

RNG = np.random.default_rng(6)


def smooth(shape: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    """Compressible but non-trivial pixels (a ramp plus noise)."""
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    ramp = np.indices(shape).sum(axis=0) * 3
    noise = RNG.integers(0, 16, shape)
    data = ramp + noise
    if info is not None:
        data = data % min(info.max, 60000)
    return data.astype(dtype)


def tczyx(data: np.ndarray, axes: str) -> np.ndarray:
    """``data`` with named axes arranged as (t, c, z, y, x), written out by hand."""
    axes = axes.replace("S", "C")  # RGB samples are the channels
    order = [axes.index(a) for a in "TCZYX" if a in axes]
    out = data.transpose(order)
    shape = [data.shape[axes.index(a)] if a in axes else 1 for a in "TCZYX"]
    return out.reshape(shape)


# --- writers -----------------------------------------------------------------
# Each builder writes into ``folder`` and returns (path, expected tczyx pixels).
Case = Callable[[Path], tuple[Path, np.ndarray]]
CASES: dict[str, Case] = {}


def case(name: str, *marks: pytest.MarkDecorator) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = fn
        fn.marks = marks  # type: ignore[attr-defined]
        return fn

    return register


def _tifffile_case(name: str, shape, axes, **kwargs) -> None:
    dtype = kwargs.pop("dtype", "uint16")

    @case(name)
    def build(folder: Path) -> tuple[Path, np.ndarray]:
        data = smooth(shape, dtype)
        path = folder / f"{name}.tif"
        tifffile.imwrite(path, data, metadata={"axes": axes}, **kwargs)
        return path, tczyx(data, axes)


_tifffile_case("tifffile-none-striped", (6, 40, 50), "ZYX", photometric="minisblack")
_tifffile_case(
    "tifffile-none-tiled", (3, 48, 64), "ZYX", tile=(16, 16), photometric="minisblack"
)
_tifffile_case(
    "tifffile-none-strips-of-7-rows",
    (3, 40, 50),
    "ZYX",
    rowsperstrip=7,
    photometric="minisblack",
)
for _codec in ("lzw", "zlib", "zstd", "packbits"):
    _tifffile_case(
        f"tifffile-{_codec}-striped",
        (4, 40, 50),
        "ZYX",
        compression=_codec,
        rowsperstrip=8,
        photometric="minisblack",
        dtype="uint8" if _codec == "packbits" else "uint16",
    )
    _tifffile_case(
        f"tifffile-{_codec}-tiled",
        (2, 3, 48, 64),
        "CZYX",
        compression=_codec,
        tile=(16, 32),
        photometric="minisblack",
        dtype="uint8" if _codec == "packbits" else "uint16",
    )
_tifffile_case(
    "tifffile-lzw-predictor",
    (3, 40, 50),
    "ZYX",
    compression="lzw",
    predictor=True,
    photometric="minisblack",
)
_tifffile_case(
    "tifffile-zlib-float-predictor",
    (3, 40, 50),
    "ZYX",
    compression="zlib",
    predictor=True,
    photometric="minisblack",
    dtype="float32",
)
_tifffile_case(
    "tifffile-zlib-bigendian",
    (3, 40, 50),
    "ZYX",
    compression="zlib",
    byteorder=">",
    photometric="minisblack",
    dtype="int16",
)
_tifffile_case(
    "tifffile-bigtiff-contiguous",
    (5, 40, 50),
    "ZYX",
    bigtiff=True,
    photometric="minisblack",
)
_tifffile_case(
    "tifffile-bigtiff-zstd-tiled",
    (5, 48, 48),
    "ZYX",
    bigtiff=True,
    compression="zstd",
    tile=(16, 16),
    photometric="minisblack",
)
_tifffile_case(
    "tifffile-rgb-contiguous", (30, 40, 3), "YXS", photometric="rgb", dtype="uint8"
)
_tifffile_case(
    "tifffile-rgba-lzw-uint16",
    (30, 40, 4),
    "YXS",
    photometric="rgb",
    extrasamples=["unassalpha"],
    compression="lzw",
)
_tifffile_case(
    "tifffile-rgb-planar-separate",
    (3, 30, 40),
    "SYX",
    photometric="rgb",
    planarconfig="separate",
    compression="zlib",
    dtype="uint8",
)


@case("tifffile-jpeg-rgb")
def _jpeg(folder: Path) -> tuple[Path, np.ndarray]:
    data = smooth((64, 80, 3), "uint8")
    path = folder / "jpeg.tif"
    tifffile.imwrite(path, data, photometric="rgb", compression="jpeg", tile=(32, 32))
    # JPEG is lossy: the reference is tifffile's own decode of the file.
    return path, tczyx(tifffile.imread(path), "YXS")


@case("tifffile-imagej-hyperstack")
def _imagej(folder: Path) -> tuple[Path, np.ndarray]:
    data = smooth((2, 3, 2, 30, 40), "uint16")  # TZCYX
    path = folder / "imagej.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    return path, tczyx(data, "TZCYX")


@case("tifffile-imagej-lzw")
def _imagej_lzw(folder: Path) -> tuple[Path, np.ndarray]:
    data = smooth((2, 3, 2, 30, 40), "uint8")  # TZCYX
    path = folder / "imagej-lzw.tif"
    tifffile.imwrite(
        path, data, imagej=True, compression="lzw", metadata={"axes": "TZCYX"}
    )
    return path, tczyx(data, "TZCYX")


@case("tifffile-ome-zlib")
def _ome(folder: Path) -> tuple[Path, np.ndarray]:
    data = smooth((2, 3, 4, 30, 40), "uint16")
    path = folder / "ome.ome.tif"
    tifffile.imwrite(
        path, data, ome=True, compression="zlib", metadata={"axes": "TCZYX"}
    )
    return path, tczyx(data, "TCZYX")


@case("tifffile-ome-zct-order")
def _ome_order(folder: Path) -> tuple[Path, np.ndarray]:
    data = smooth((2, 3, 4, 30, 40), "uint8")  # stored C slowest, then T, then Z
    path = folder / "ome-ctz.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "CTZYX"})
    return path, tczyx(data, "CTZYX")


@case("tifffile-ome-channels-and-rgb")
def _ome_rgb_channels(folder: Path) -> tuple[Path, np.ndarray]:
    data = smooth((2, 30, 40, 3), "uint8")  # C, Y, X, samples
    path = folder / "ome-crgb.ome.tif"
    tifffile.imwrite(path, data, ome=True, photometric="rgb", metadata={"axes": "CYXS"})
    # the two channels' samples side by side: c = channel * 3 + sample
    expected = data.transpose(0, 3, 1, 2).reshape(1, 6, 1, 30, 40)
    return path, expected


@case("tifffile-bool-bilevel")
def _bilevel(folder: Path) -> tuple[Path, np.ndarray]:
    data = smooth((40, 50), "uint8") > 100
    path = folder / "bilevel.tif"
    tifffile.imwrite(path, data)
    return path, tczyx(data.astype(np.uint8), "YX")


@case("tifffile-float16-zlib")
def _float16(folder: Path) -> tuple[Path, np.ndarray]:
    data = (smooth((40, 50), "uint16") / 7).astype(np.float16)
    path = folder / "half.tif"
    tifffile.imwrite(path, data, compression="zlib")
    return path, tczyx(data.astype(np.float32), "YX")


def _pillow_case(name: str, compression: str | None, mode: str) -> None:
    @case(name)
    def build(folder: Path) -> tuple[Path, np.ndarray]:
        dtype = "uint8" if mode == "L" else "uint16"
        planes = smooth((3, 40, 50), dtype)
        images = [PIL.fromarray(p) for p in planes]
        path = folder / f"{name}.tif"
        kwargs = {} if compression is None else {"compression": compression}
        images[0].save(path, save_all=True, append_images=images[1:], **kwargs)
        # independent decode: Pillow reads its own file back
        with PIL.open(path) as im:
            decoded = np.stack([np.asarray(f) for f in ImageSequence.Iterator(im)])
        np.testing.assert_array_equal(decoded, planes)
        return path, tczyx(planes, "ZYX")


_pillow_case("pillow-multipage-raw", None, "L")
_pillow_case("pillow-multipage-lzw", "tiff_lzw", "L")
_pillow_case("pillow-multipage-deflate-16bit", "tiff_adobe_deflate", "I;16")


def _tiffcp_case(name: str, args: list[str], rgb: bool = False) -> None:
    @case(name, needs_tiffcp)
    def build(folder: Path) -> tuple[Path, np.ndarray]:
        if rgb:
            data = smooth((30, 40, 3), "uint8")
            axes = "YXS"
            kwargs = {"photometric": "rgb"}
        else:
            data = smooth((3, 40, 50), "uint16")
            axes = "ZYX"
            kwargs = {"photometric": "minisblack"}
        src = folder / f"{name}-src.tif"
        tifffile.imwrite(src, data, **kwargs)
        path = folder / f"{name}.tif"
        subprocess.run(
            [TIFFCP, *args, str(src), str(path)], check=True, capture_output=True
        )
        # independent decode: libtiff's output read by Pillow
        with PIL.open(path) as im:
            frames = [np.asarray(f) for f in ImageSequence.Iterator(im)]
        if not rgb:
            np.testing.assert_array_equal(np.stack(frames), data)
        else:
            np.testing.assert_array_equal(frames[0], data)
        return path, tczyx(data, axes)


_tiffcp_case("tiffcp-lzw", ["-c", "lzw"])
_tiffcp_case("tiffcp-zip", ["-c", "zip"])
_tiffcp_case("tiffcp-lzw-predictor", ["-c", "lzw:2"])
_tiffcp_case("tiffcp-tiles", ["-t", "-w", "16", "-l", "16"])
_tiffcp_case("tiffcp-zip-tiles", ["-c", "zip", "-t", "-w", "32", "-l", "16"])
_tiffcp_case("tiffcp-rgb-separate-lzw", ["-p", "separate", "-c", "lzw"], rgb=True)
_tiffcp_case("tiffcp-strips-of-3-rows", ["-r", "3"])


# --- fixtures ----------------------------------------------------------------
@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, np.ndarray]]:
    return {}


def _build(built, tmp_path_factory, name):
    if name not in built:
        folder = tmp_path_factory.mktemp(name)
        built[name] = CASES[name](folder)
    return built[name]


@pytest.fixture(
    params=[pytest.param(n, marks=CASES[n].marks) for n in CASES]  # type: ignore[attr-defined]
)
def tiff_case(request, built, tmp_path_factory):
    path, expected = _build(built, tmp_path_factory, request.param)
    return request.param, path, expected


def _pixel_ranges(path: Path) -> list[tuple[int, int]]:
    """(start, end) of every strip or tile of every page, from tifffile."""
    with tifffile.TiffFile(path) as tif:
        return [
            (o, o + n)
            for page in tif.pages
            for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)
            if n
        ]


@pytest.fixture
def file_reads(monkeypatch):
    """Records (offset, nbytes) of every read the lazy reader makes."""
    reads: list[tuple[int, int]] = []
    cls = _lazy._CountingFile
    read, readinto = cls.read, cls.readinto

    def counted_read(self, size=-1):
        at = self.tell()
        data = read(self, size)
        reads.append((at, len(data)))
        return data

    def counted_readinto(self, buffer):
        at = self.tell()
        n = readinto(self, buffer)
        reads.append((at, n))
        return n

    monkeypatch.setattr(cls, "read", counted_read)
    monkeypatch.setattr(cls, "readinto", counted_readinto)
    return reads


def _overlaps(reads, ranges) -> list[tuple[int, int]]:
    return [
        (at, n)
        for at, n in reads
        if any(at < end and start < at + n for start, end in ranges)
    ]


# --- the matrix --------------------------------------------------------------
def test_pixels_equal_an_independent_decode(tiff_case, file_reads):
    name, path, expected = tiff_case
    with ndi.open_tiff(path) as img:
        assert ndi.is_disk_image(img)
        assert not img.writable
        # opening read the header only: no byte of any strip or tile
        assert file_reads, "the file was not read through the counting handle"
        # (tifffile peeks at the first bytes of a JPEG stream for its
        # colour subsampling: a few bytes, never a strip or tile)
        peeked = _overlaps(file_reads, _pixel_ranges(path))
        assert sum(n for _, n in peeked) <= 16, (name, peeked)
        if img.is_mapped:
            assert img.bytes_read == 0
        else:
            assert img.storage.chunks_decoded == 0
        assert img.shape == expected.shape
        assert img.dtype == expected.dtype
        # the whole image through the array view
        np.testing.assert_array_equal(np.asarray(img.array[...]), expected)
        np.testing.assert_array_equal(np.asarray(img), expected)
        # every plane through load_plane, and a strided part of the last one
        t, c, z = expected.shape[:3]
        for ti, ci, zi in np.ndindex(t, c, z):
            np.testing.assert_array_equal(
                img.load_plane(z=zi, c=ci, t=ti), expected[ti, ci, zi]
            )
        ny, nx = expected.shape[3:]
        got = img.read_region(
            t - 1, c - 1, z - 1, 1, (ny - 2) // 3, 3, 2, (nx - 3) // 2, 2
        )
        np.testing.assert_array_equal(
            got,
            expected[
                t - 1,
                c - 1,
                z - 1,
                1 : 1 + 3 * ((ny - 2) // 3) : 3,
                2 : 2 + 2 * ((nx - 3) // 2) : 2,
            ],
        )
        # slicing the view like numpy (steps, negative steps, ints, Ellipsis)
        for key in [
            (0, slice(None), -1, slice(3, 17, 5), slice(None, None, -3)),
            (Ellipsis, 5, slice(1, None, 7)),
            (slice(None, None, -1), 0, slice(0, 1)),
            (0, 0, 0, slice(5, 5)),
        ]:
            np.testing.assert_array_equal(
                img.array[key], expected[key], err_msg=str(key)
            )
