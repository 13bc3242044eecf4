"""open_raw, open_tiff, write_pixel, load_plane and the DiskImage surface."""

import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from napari_diskimage import Geometry


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    return rng.integers(0, 1256, size=(47, 97, 125), dtype=np.uint16)


@pytest.fixture
def raw_file(data_dir, volume):
    path = data_dir / "porosity_125x97x47_UInt16.raw"
    volume.tofile(path)
    return path


@pytest.fixture
def tiff_file(data_dir, volume):
    path = data_dir / "porosity.tif"
    tifffile.imwrite(path, volume)
    return path


def test_open_raw_parses_geometry_from_name(raw_file, volume):
    with ndi.open_raw(raw_file) as img:
        assert img.geometry == Geometry("UInt16", 125, 97, 47)
        assert img.shape == (1, 1, 47, 97, 125)
        assert isinstance(img.array, np.memmap) or isinstance(img.array.base, np.memmap)
        np.testing.assert_array_equal(img.array[0, 0], volume)
        assert img.mode == "r" and not img.writable and not img.is_scratch
        assert img.path == raw_file


def test_open_raw_with_geometry_offset_and_big_endian(data_dir, volume):
    path = data_dir / "scan.bin"
    header = b"H" * 512
    path.write_bytes(header + volume.astype(">u2").tobytes())
    img = ndi.open_raw(
        path, Geometry("uint16", 125, 97, 47), offset=512, byte_order=">"
    )
    np.testing.assert_array_equal(img.array[0, 0], volume)
    np.testing.assert_array_equal(img.load_plane(z=3), volume[3])
    assert img.load_plane(z=3).dtype == np.dtype("uint16")  # native in memory
    assert img.byte_order == ">"
    img.close()


def test_open_raw_too_small_states_both_sizes(data_dir):
    path = data_dir / "cut_10x10x10_UInt16.raw"
    path.write_bytes(b"\0" * 1999)
    with pytest.raises(ValueError, match=r"1999 bytes.*2000 bytes"):
        ndi.open_raw(path)
    with pytest.raises(ValueError, match=r"2100 bytes"):
        ndi.open_raw(path, Geometry("uint16", 10, 10, 10), offset=100)


def test_open_raw_errors(data_dir):
    with pytest.raises(FileNotFoundError, match=r"nope_2x2_UInt8\.raw"):
        ndi.open_raw(data_dir / "nope_2x2_UInt8.raw")
    plain = data_dir / "plain.raw"
    plain.write_bytes(b"\0" * 4)
    with pytest.raises(ValueError, match="pass the geometry"):
        ndi.open_raw(plain)
    with pytest.raises(ValueError, match="mode"):
        ndi.open_raw(plain, Geometry("uint8", 2, 2), mode="w")
    with pytest.raises(ValueError, match="byte_order"):
        ndi.open_raw(plain, Geometry("uint8", 2, 2), byte_order="middle")
    with pytest.raises(ValueError, match="offset"):
        ndi.open_raw(plain, Geometry("uint8", 2, 2), offset=-1)


def test_open_tiff_maps_without_reading(tiff_file, volume):
    img = ndi.open_tiff(tiff_file)
    assert img.shape == (1, 1, 47, 97, 125)
    assert img.kind == "tiff"
    assert img.bytes_read == 0
    np.testing.assert_array_equal(np.asarray(img)[0, 0], volume)
    img.close()
    assert img.closed
    with pytest.raises(ValueError, match="closed"):
        img.array  # noqa: B018


def test_open_tiff_hyperstack_axes(data_dir):
    data = np.arange(2 * 3 * 4 * 5 * 6, dtype=np.uint16).reshape(2, 3, 4, 5, 6)  # TZCYX
    path = data_dir / "hyper.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    with ndi.open_tiff(path) as img:
        assert img.geometry.sizes == (6, 5, 3, 4, 2)  # x, y, z, c, t
        np.testing.assert_array_equal(img.array, data.transpose(0, 2, 1, 3, 4))
        np.testing.assert_array_equal(img.load_plane(z=2, c=1, t=1), data[1, 2, 1])


def test_open_tiff_bigtiff_multipage(data_dir):
    data = np.arange(5 * 8 * 9, dtype=np.float32).reshape(5, 8, 9)
    path = data_dir / "big.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for plane in data:
            tw.write(plane, contiguous=True)
    with ndi.open_tiff(path) as img:
        assert img.shape == (1, 1, 5, 8, 9)
        np.testing.assert_array_equal(img.array[0, 0], data)


def test_open_tiff_compressed_says_why(data_dir):
    path = data_dir / "lzw.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), compression="zlib")
    try:
        img = ndi.open_tiff(path)
    except ValueError as exc:  # until compressed files are read lazily
        assert "compressed" in str(exc) and "lzw.tif" in str(exc)
    else:  # read lazily (TIFF-coverage issue): must be read-only and right
        with img:
            assert not img.writable
            np.testing.assert_array_equal(img.load_plane(), np.zeros((64, 64)))


def test_open_tiff_not_a_tiff(data_dir):
    bad = data_dir / "random.tif"
    bad.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ValueError, match=r"random\.tif"):
        ndi.open_tiff(bad)
    empty = data_dir / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        ndi.open_tiff(empty)
    with pytest.raises(FileNotFoundError):
        ndi.open_tiff(data_dir / "missing.tif")
    with pytest.raises(IsADirectoryError):
        ndi.open_tiff(data_dir)


def test_is_disk_image(tiff_file, volume):
    with ndi.open_tiff(tiff_file) as img:
        assert ndi.is_disk_image(img)
    assert not ndi.is_disk_image(volume)
    assert not ndi.is_disk_image(np.memmap)


# --- write_pixel ---------------------------------------------------------
def test_write_pixel_lands_in_the_file_at_once(raw_file, volume):
    img = ndi.open_raw(raw_file, mode="r+")
    img.write_pixel(1234, x=3, y=2, z=1)
    # another process reading the file sees the value without flush()
    offset = ((1 * 97 + 2) * 125 + 3) * 2
    code = (
        "import sys,numpy as np;"
        f"b=open(sys.argv[1],'rb').read()[{offset}:{offset + 2}];"
        "print(int(np.frombuffer(b, '<u2')[0]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(raw_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "1234"
    assert img.array[0, 0, 1, 2, 3] == 1234
    assert img.load_plane(z=1)[2, 3] == 1234
    img.flush()
    img.close()
    expected = volume.copy()
    expected[1, 2, 3] = 1234
    np.testing.assert_array_equal(
        np.fromfile(raw_file, "<u2").reshape(volume.shape), expected
    )


def test_write_pixel_first_pixel_255_in_a_copy(tiff_file):
    # the IPSDK walk-through: out.writePixel(255, 0, 0, 0, 0, 0)
    with ndi.open_tiff(tiff_file) as img:
        out = ndi.copy(img)
    out.write_pixel(255, 0, 0, 0, 0, 0)
    assert out.array[0, 0, 0, 0, 0] == 255
    out.close()


def test_write_pixel_read_only_says_what_to_do(tiff_file):
    with ndi.open_tiff(tiff_file) as img, pytest.raises(PermissionError) as info:
        img.write_pixel(1, 0, 0)
    assert "copy it first" in str(info.value) and "mode='r+'" in str(info.value)
    assert "porosity.tif" in str(info.value)


@pytest.mark.parametrize(
    ("coords", "axis", "size"),
    [
        ((125, 0, 0), "x", 125),
        ((-1, 0, 0), "x", 125),
        ((0, 97, 0), "y", 97),
        ((0, 0, 47), "z", 47),
        ((0, 0, 0, 1), "c", 1),
        ((0, 0, 0, 0, -3), "t", 1),
    ],
)
def test_write_pixel_out_of_range_names_axis(raw_file, coords, axis, size):
    with (
        ndi.open_raw(raw_file, mode="r+") as img,
        pytest.raises(IndexError, match=rf"size_{axis} is {size}"),
    ):
        img.write_pixel(1, *coords)


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        ("uint8", 300),
        ("uint8", -1),
        ("uint8", 1.5),
        ("int16", float("nan")),
        ("uint16", float("inf")),
        ("int64", 2**63),
        ("uint64", -1),
        ("float32", 1e300),
    ],
)
def test_write_pixel_value_must_fit(dtype, value):
    with ndi.new_disk_image(Geometry(dtype, 4, 4)) as img:
        with pytest.raises(ValueError, match="value"):
            img.write_pixel(value, 1, 1)
        assert img.array[0, 0, 0, 1, 1] == 0  # nothing wrapped into the file


@pytest.mark.parametrize(
    ("dtype", "value", "stored"),
    [
        ("uint8", 255, 255),
        ("uint8", 7.0, 7),
        ("int8", -128, -128),
        ("uint64", 2**64 - 1, 2**64 - 1),
        ("float32", 0.1, np.float32(0.1)),
        ("float64", float("nan"), None),
        ("float32", True, 1),
    ],
)
def test_write_pixel_values_that_fit(dtype, value, stored):
    with ndi.new_disk_image(Geometry(dtype, 4, 4)) as img:
        img.write_pixel(value, 3, 2)
        got = img.array[0, 0, 0, 2, 3]
        if stored is None:
            assert np.isnan(got)
        else:
            assert got == stored


def test_write_pixel_on_closed_image(raw_file):
    img = ndi.open_raw(raw_file, mode="r+")
    img.close()
    with pytest.raises(ValueError, match="closed"):
        img.write_pixel(1, 0, 0)


# --- load_plane ----------------------------------------------------------
def test_load_plane_matches_numpy(raw_file, volume):
    with ndi.open_raw(raw_file) as img:
        plane = img.load_plane(5, 0, 0, 10, 7, 3, 4, 6, 9)
        assert plane.shape == (7, 10)
        np.testing.assert_array_equal(
            plane, volume[5, 4 : 4 + 7 * 9 : 9, 3 : 3 + 10 * 6 : 6]
        )
        # None sizes: as many as fit
        np.testing.assert_array_equal(
            img.load_plane(z=46, offset_x=1, stride_x=4, stride_y=16),
            volume[46, ::16, 1::4],
        )
        full = img.load_plane(z=0)
        np.testing.assert_array_equal(full, volume[0])
        assert not isinstance(full, np.memmap)


def test_load_plane_is_in_memory_copy(raw_file, volume):
    img = ndi.open_raw(raw_file)
    plane = img.load_plane(z=1)
    img.close()
    np.testing.assert_array_equal(plane, volume[1])  # still valid after close
    plane[0, 0] = 9  # writable, and does not touch the file
    assert np.fromfile(raw_file, "<u2")[125 * 97] == volume[1, 0, 0]


def test_load_plane_reads_only_the_rows_it_needs(raw_file):
    with ndi.open_raw(raw_file) as img:
        img.load_plane(z=0, stride_y=8, stride_x=1)
        rows = -(-97 // 8)
        assert img.bytes_read == rows * 125 * 2


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"z": 47}, IndexError, "size_z is 47"),
        ({"c": 1}, IndexError, "size_c is 1"),
        ({"t": -1}, IndexError, "t = -1"),
        ({"offset_x": 125}, IndexError, "offset_x"),
        ({"size_x": 126}, IndexError, "reaches x = 125"),
        ({"size_y": 10, "offset_y": 90}, IndexError, "reaches y = 99"),
        ({"size_x": 20, "stride_x": 7}, IndexError, "size_x <= 18"),
        ({"stride_x": 0}, ValueError, "stride_x must be at least 1"),
        ({"size_y": 0}, ValueError, "size_y must be at least 1"),
        ({"z": 1.0}, TypeError, "z must be an integer"),
    ],
)
def test_load_plane_bad_requests(raw_file, kwargs, exc, match):
    with ndi.open_raw(raw_file) as img, pytest.raises(exc, match=match):
        img.load_plane(**kwargs)


# --- lifecycle -------------------------------------------------------------
def test_user_files_are_never_deleted(raw_file, tiff_file):
    for opener, path in ((ndi.open_raw, raw_file), (ndi.open_tiff, tiff_file)):
        img = opener(path)
        img.close()
        img = opener(path, mode="r+")
        del img
        gc.collect()
        assert path.exists()


def test_repr_and_array_protocol(raw_file):
    with ndi.open_raw(raw_file) as img:
        assert "porosity_125x97x47_UInt16.raw" in repr(img)
        assert np.asarray(img).shape == img.shape
        assert img[0, 0, 0, 0, :3].shape == (3,)
        assert len(img) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping the page cache needs root")
def resident_pages(path: Path) -> np.ndarray:
    """Which pages of ``path`` are in the page cache (``mincore`` on a mapping
    of it: looking does not read anything, unlike a non-blocking read)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    vec = ctypes.create_string_buffer(pages)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        failed = (None, ctypes.c_void_p(-1).value)
        assert addr not in failed, os.strerror(ctypes.get_errno())
        try:
            ok = libc.mincore(addr, size, vec) == 0
            assert ok, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return np.frombuffer(vec.raw, np.uint8) & 1 == 1


def test_first_rows_read_no_more_than_asked(data_dir):
    """Opening the header must not leave read-ahead that later pulls in
    megabytes of pixel data nobody asked for (the first view of a huge plane
    reads only the rows it shows)."""
    path = data_dir / "plane.tif"
    tifffile.imwrite(path, np.zeros((256, 32768), np.uint16))  # 16 MiB, 64 KiB rows
    for _ in range(20):  # pages under writeback survive a drop: sync and retry
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        if not resident_pages(path).any():
            break
        time.sleep(0.1)
    assert not resident_pages(path).any(), "the page cache could not be emptied"
    with ndi.open_tiff(path) as img:
        img.load_plane(size_y=1)  # row 0 only
        resident = resident_pages(path)
    assert resident.any(), "row 0 was not read from the file"
    beyond = np.flatnonzero(resident[(1 << 20) // 4096 :])
    assert beyond.size == 0, f"{beyond.size} pages beyond the first MiB were read ahead"


def test_a_box_of_planes_is_announced_to_the_kernel_at_once(data_dir, monkeypatch):
    """The file is read without read-ahead; a box of several planes (a view
    cache's build block, a processing block) asks the kernel for all its
    planes' bytes before reading them, and for nothing else."""
    import os as _os

    data = np.arange(12 * 40 * 50, dtype=np.uint16).reshape(12, 40, 50)
    path = data_dir / "stack.tif"
    tifffile.imwrite(path, data)
    asked: list[tuple[int, int]] = []
    fadvise = _os.posix_fadvise

    def spy(fd, offset, length, advice):
        if advice == _os.POSIX_FADV_WILLNEED:
            asked.append((offset, length))
        return fadvise(fd, offset, length, advice)

    monkeypatch.setattr(_os, "posix_fadvise", spy)
    with ndi.open_tiff(path) as img:
        storage = img.storage
        base = storage.offset_of(0, 0, 0, 0, 0)
        rows = storage.read_box(
            [range(1), range(1), range(2, 7), range(5, 25), range(50)]
        )
        np.testing.assert_array_equal(rows[0, 0], data[2:7, 5:25])
        plane, row = 40 * 50 * 2, 50 * 2
        assert asked == [(base + z * plane + 5 * row, 20 * row) for z in range(2, 7)]
        asked.clear()  # a tile: each of its rows, not the gaps between them
        tile = storage.read_box(
            [range(1), range(1), range(3, 5), range(8, 11), range(10, 20)]
        )
        np.testing.assert_array_equal(tile[0, 0], data[3:5, 8:11, 10:20])
        assert asked == [
            (base + z * plane + y * row + 20, 20) for z in (3, 4) for y in (8, 9, 10)
        ]
        asked.clear()  # one plane: a single read, nothing to announce
        storage.read_box([range(1), range(1), range(3, 4), range(40), range(50)])
        assert asked == []


UNPICKLE_OPENS_NOTHING = """
import json, os, pickle, sys
import numpy as np

def open_files():
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return out

with open(sys.argv[1], "rb") as fh:
    images = pickle.load(fh)
watched = [os.path.realpath(p) for p in sys.argv[2:]]
def held():
    return sorted({p for p in open_files() for w in watched if p.startswith(w)})
result = {"after_unpickle": held(), "kinds": [img.kind for img in images]}
result["values"] = [img.load_plane(z=1).tolist() for img in images]
result["levels"] = [len(img.display_levels) for img in images]
result["spacing"] = [list(img.spacing) for img in images]
result["after_read"] = held()
print(json.dumps(result))
"""


def test_unpickling_opens_no_file_until_read(data_dir):
    """A dask scheduler that unpickles a task holds no descriptor: each storage
    kind reopens its file(s) at the first read, and reads the same pixels."""
    import pickle

    from _subprocess import run_python

    volume = (np.arange(5 * 40 * 30) % 251).astype(np.uint8).reshape(5, 40, 30)
    raw = data_dir / "v_30x40x5_UInt8.raw"
    volume.tofile(raw)
    mapped = data_dir / "mapped.tif"
    tifffile.imwrite(mapped, volume, resolution=(2.0, 4.0), photometric="minisblack")
    lazy = data_dir / "lazy.tif"
    with tifffile.TiffWriter(lazy) as tif:  # compressed, with a stored level
        kw = {"tile": (16, 16), "compression": "zlib", "photometric": "minisblack"}
        tif.write(volume, subifds=1, **kw)
        tif.write(volume[:, ::2, ::2], subfiletype=1, **kw)
    folder = data_dir / "slices"
    folder.mkdir()
    for z in range(5):
        tifffile.imwrite(folder / f"s_{z:02d}.tif", volume[z])
    images = [
        ndi.open_raw(raw),
        ndi.open_tiff(mapped),
        ndi.open_tiff(lazy),
        ndi.open_tiff_sequence(folder),
    ]
    try:
        assert len(images[2].display_levels) == 2
        spacing = [list(img.spacing) for img in images]
        assert spacing[1] != [1.0, 1.0, 1.0]  # from the resolution tags
        saved = data_dir / "images.pickle"
        saved.write_bytes(pickle.dumps(images))
        assert saved.stat().st_size < 4096  # references, never the pixels
        result = run_python(
            UNPICKLE_OPENS_NOTHING, str(saved), str(raw), str(mapped), str(lazy),
            str(folder),
        )  # fmt: skip
    finally:
        for image in images:
            image.close()
    assert result["after_unpickle"] == []
    assert result["kinds"] == ["raw", "tiff", "tiff", "tiff sequence"]
    assert result["values"] == [volume[1].tolist()] * 4
    assert result["levels"] == [1, 1, 2, 1]
    assert result["spacing"] == spacing
    assert result["after_read"] != []  # the first read opened the file(s)


def test_meta_is_frozen_and_carried_whole(tiff_file):
    """Metadata is one frozen ImageMeta: copying an image carries it whole."""
    import dataclasses

    with ndi.open_tiff(tiff_file) as img:
        assert isinstance(img.meta, ndi.ImageMeta) and img.meta.kind == "tiff"
        with pytest.raises(dataclasses.FrozenInstanceError):
            img.meta.unit = "mm"  # type: ignore[misc]
        copied = ndi.copy(img)
    assert copied.meta == dataclasses.replace(img.meta, kind="raw")
    assert img.meta.binned((1, 2, 4)).spacing == (
        img.spacing[0],
        img.spacing[1] * 2,
        img.spacing[2] * 4,
    )
    copied.close()


def test_open_any_dispatches_by_kind(raw_file, tiff_file, data_dir):
    from napari_diskimage._open import KINDS, kind_of

    assert [k.name for k in KINDS] == ["zarr", "tiff sequence", "tiff", "raw"]
    with ndi.open_any(raw_file) as raw, ndi.open_any(tiff_file, mode="r") as tif:
        assert (raw.kind, tif.kind) == ("raw", "tiff")
    assert kind_of(data_dir).name == "tiff sequence"
    store = ndi.save_ome_zarr(np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
                              data_dir / "small.ome.zarr")  # fmt: skip
    with ndi.open_any(store) as zarr_image:
        assert zarr_image.kind == "zarr"
        assert np.asarray(zarr_image)[0, 0, 1, 2, 3] == 23
    with pytest.raises(ValueError, match=r"\.tif"):
        ndi.open_any(data_dir / "image.png")
