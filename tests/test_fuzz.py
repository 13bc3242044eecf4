"""Property-based tests: random geometries, file names, offsets, strides,
coordinates and values.

Each call either raises one of its documented exceptions or returns what a
plain numpy reference computed from the file's bytes returns.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import napari_diskimage as ndi

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
DTYPES = [
    np.dtype(t)
    for t in (
        "uint8",
        "int8",
        "uint16",
        "int16",
        "uint32",
        "int32",
        "uint64",
        "int64",
        "float32",
        "float64",
    )
]

sizes = st.tuples(
    *[st.integers(1, 5) for _ in range(3)], st.integers(1, 2), st.integers(1, 2)
)  # x, y, z, c, t (x, y, z up to 5)
geometries = st.builds(
    lambda dt, s: ndi.Geometry(dt, *s), st.sampled_from(DTYPES), sizes
)


@pytest.fixture(scope="module")
def scratch_folder():
    with tempfile.TemporaryDirectory(prefix="ndi-fuzz-") as folder:
        yield Path(folder)


# --- Geometry.from_filename ----------------------------------------------
names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
    max_size=30,
)


@FUZZ
@given(name=st.one_of(names, names.map(lambda s: s + ".raw")))
def test_from_filename_raises_only_value_error(name):
    try:
        g = ndi.Geometry.from_filename(name)
    except ValueError as exc:
        assert "expected '<name>_<X>x<Y>" in str(exc) or "sizes" in str(exc)
        return
    # it parsed: the name really carries these sizes and type
    assert name.lower().endswith(
        f"_{g.type_name.lower()}.raw"
    ) or name.lower().endswith(".raw")
    assert all(str(s) in name for s in g.sizes[:2])


@FUZZ
@given(
    geometry=st.builds(
        lambda dt, s: ndi.Geometry(dt, *s),
        st.sampled_from(DTYPES),
        st.tuples(*[st.integers(1, 10**12) for _ in range(5)]),
    ),
    name=names,
)
def test_filename_round_trips_for_any_name(geometry, name):
    filename = geometry.filename(name)
    assert ndi.Geometry.from_filename(filename) == geometry
    assert ndi.Geometry.from_filename("/some/folder/" + filename) == geometry


@FUZZ
@given(
    name=names,
    parts=st.lists(
        st.one_of(st.integers(-3, 10**6), st.text("0123456789xX-. ", max_size=4)),
        min_size=0,
        max_size=7,
    ),
    type_name=st.sampled_from(
        [
            "UInt8",
            "uint16",
            "Real32",
            "Float64",
            "UInt12",
            "Int",
            "Float16",
            "",
            "Int64 ",
        ]
    ),
    ext=st.sampled_from([".raw", ".RAW", ".Raw", ".raw ", ".tif", ""]),
)
def test_almost_raw_names(name, parts, type_name, ext):
    filename = f"{name}_{'x'.join(map(str, parts))}_{type_name}{ext}"
    try:
        g = ndi.Geometry.from_filename(filename)
    except ValueError:
        return
    assert ext.lower() == ".raw"
    assert ndi.Geometry(type_name, *g.sizes) == g
    # the sizes are the x-separated numbers between the last "_" and the type
    field = filename[: -len(f"_{type_name}{ext}")].rsplit("_", 1)[1]
    numbers_ = [int(n) for n in field.lower().split("x")]
    assert 2 <= len(numbers_) <= 5
    assert g.sizes == (*numbers_, *[1] * (5 - len(numbers_)))


# --- open_raw and load_plane -----------------------------------------------
@FUZZ
@given(
    geometry=geometries,
    offset=st.integers(0, 40),
    extra=st.integers(-3, 3),
    byte_order=st.sampled_from(["<", ">"]),
    by_name=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_open_raw_matches_numpy(
    scratch_folder, geometry, offset, extra, byte_order, by_name, seed
):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, offset + geometry.nbytes + max(extra, 0), np.uint8)
    data = data[: offset + geometry.nbytes + extra].tobytes()
    path = scratch_folder / (geometry.filename("fuzz") if by_name else "fuzz.bin")
    path.write_bytes(data)
    try:
        kwargs = {} if by_name else {"geometry": geometry}
        if extra < 0:
            with pytest.raises(ValueError, match="too small"):
                ndi.open_raw(path, offset=offset, byte_order=byte_order, **kwargs)
            return
        img = ndi.open_raw(path, offset=offset, byte_order=byte_order, **kwargs)
        with img:
            dtype = geometry.dtype.newbyteorder(byte_order)
            ref = np.frombuffer(data, dtype, geometry.size, offset).reshape(
                geometry.shape
            )
            assert img.shape == geometry.shape and img.dtype == geometry.dtype
            np.testing.assert_array_equal(np.asarray(img), ref)
            t, c, z = (int(rng.integers(n)) for n in geometry.shape[:3])
            np.testing.assert_array_equal(img.load_plane(z, c, t), ref[t, c, z])
    finally:
        path.unlink()


def _bad(value, size, minimum=0):
    """Error type a coordinate/size/stride ``value`` must give, or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return TypeError
    if value < minimum or value >= size:
        return IndexError if minimum == 0 else ValueError
    return None


coords = st.one_of(st.integers(-2, 7), st.sampled_from([True, 1.0, "1", None]))


@pytest.fixture(scope="module")
def tiff_image(scratch_folder):
    """An ImageJ hyperstack (T, Z, C, Y, X on disk): axis strides that are
    not in (t, c, z) order, as save_tiff writes them."""
    pixels = np.random.default_rng(5).integers(
        0, 2**16, (2, 3, 2, 7, 9), np.uint16
    )  # t, z, c, y, x
    path = scratch_folder / "hyper.tif"
    tifffile.imwrite(path, pixels, imagej=True, metadata={"axes": "TZCYX"})
    return path, pixels.transpose(0, 2, 1, 3, 4)  # t, c, z, y, x


@FUZZ
@given(
    source=st.sampled_from(["raw<", "raw>", "tiff"]),
    z=coords,
    c=coords,
    t=coords,
    offset_x=coords,
    offset_y=coords,
    size_x=st.one_of(st.none(), st.integers(-1, 10), st.just(2.0)),
    size_y=st.one_of(st.none(), st.integers(-1, 8)),
    stride_x=st.one_of(st.integers(-1, 10), st.just(1.5)),
    stride_y=st.integers(0, 9),
)
def test_load_plane_matches_numpy_or_raises_documented_errors(
    scratch_folder,
    tiff_image,
    source,
    z,
    c,
    t,
    offset_x,
    offset_y,
    size_x,
    size_y,
    stride_x,
    stride_y,
):
    if source == "tiff":
        img = ndi.open_tiff(tiff_image[0])
        ref = tiff_image[1]
    else:
        ref = np.random.default_rng(9).integers(
            -(2**31), 2**31, (2, 2, 3, 7, 9), np.int32
        )
        path = scratch_folder / "plane_9x7x3x2x2_Int32.raw"
        ref.astype(source[3] + "i4").tofile(path)
        img = ndi.open_raw(path, byte_order=source[3])
    T, C, Z, Y, X = ref.shape
    with img:
        problems = [
            _bad(z, Z),
            _bad(c, C),
            _bad(t, T),
            _bad(offset_x, X),
            _bad(offset_y, Y),
            _bad(stride_x, math.inf, 1),
            _bad(stride_y, math.inf, 1),
        ]
        if not any(problems):
            nx = -(-(X - offset_x) // stride_x) if size_x is None else size_x
            ny = -(-(Y - offset_y) // stride_y) if size_y is None else size_y
            for n, o, s, full in (
                (nx, offset_x, stride_x, X),
                (ny, offset_y, stride_y, Y),
            ):
                problem = _bad(n, math.inf, 1)
                if problem is None and o + (n - 1) * s >= full:
                    problem = IndexError
                problems.append(problem)
        expected = [p for p in problems if p]
        kwargs = dict(
            z=z,
            c=c,
            t=t,
            size_x=size_x,
            size_y=size_y,
            offset_x=offset_x,
            offset_y=offset_y,
            stride_x=stride_x,
            stride_y=stride_y,
        )
        if expected:
            with pytest.raises((TypeError, ValueError, IndexError)) as info:
                img.load_plane(**kwargs)
            assert type(info.value) in expected, (type(info.value), expected)
            return
        plane = img.load_plane(**kwargs)
        want = ref[t, c, z][offset_y::stride_y, offset_x::stride_x][:ny, :nx]
        assert plane.shape == (ny, nx)
        np.testing.assert_array_equal(plane, want)
        assert plane.dtype == want.dtype and plane.dtype.isnative


# --- write_pixel ---------------------------------------------------------------
values = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-300, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-300, 300).map(round).map(float),
    st.sampled_from(
        [
            True,
            np.int64(-5),
            np.uint64(2**64 - 1),
            np.float32(2.5),
            np.float64(1e39),
            2**2000,
            "7",
            None,
            1j,
        ]
    ),
)


def _stored(value, dtype):
    """What ``value`` becomes in a ``dtype`` image, or the error type."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, numbers.Real):
        return TypeError
    if dtype.kind in "iu":
        if isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                return ValueError
            value = int(value)
        info = np.iinfo(dtype)
        return dtype.type(value) if info.min <= value <= info.max else ValueError
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond any float
        return ValueError
    with np.errstate(over="ignore"):
        result = dtype.type(as_float)
    if math.isfinite(as_float) and not np.isfinite(result):
        return ValueError  # a finite value that numpy would make infinite
    return result


@FUZZ
@example(  # a Python int beyond any float
    geometry=ndi.Geometry("float32", 2, 2),
    kind="scratch",
    writes=[(2**2000, 0, 0, 0, 0, 0), (-(2**1100), 1, 1, 0, 0, 0)],
)
@example(
    geometry=ndi.Geometry("uint64", 2, 2),
    kind="raw r+ >",
    writes=[
        (2**64 - 1, 1, 0, 0, 0, 0),
        (2**64, 0, 0, 0, 0, 0),
        (float(2**63), 0, 1, 0, 0, 0),
        (-1, 0, 0, 0, 0, 0),
    ],
)
@given(
    geometry=geometries,
    kind=st.sampled_from(["scratch", "raw r+ <", "raw r+ >", "raw r"]),
    writes=st.lists(
        st.tuples(values, coords, coords, coords, coords, coords),
        min_size=1,
        max_size=12,
    ),
)
def test_write_pixel_matches_numpy_or_raises_documented_errors(
    scratch_folder, geometry, kind, writes
):
    ref = np.zeros(geometry.shape, geometry.dtype)
    if kind == "scratch":
        img = ndi.new_disk_image(geometry)
    else:
        order = kind[-1] if kind.startswith("raw r+") else "<"
        path = scratch_folder / geometry.filename("w")
        ref.astype(geometry.dtype.newbyteorder(order)).tofile(path)
        img = ndi.open_raw(path, byte_order=order, mode=kind.split()[1])
    with img:
        X, Y, Z, C, T = geometry.sizes
        for value, x, y, z, c, t in writes:
            problems = [
                _bad(v, n)
                for v, n in zip((x, y, z, c, t), (X, Y, Z, C, T), strict=True)
            ]
            stored = _stored(value, geometry.dtype)
            if any(problems):
                allowed = {p for p in problems if p}
            elif not img.writable:
                allowed = {PermissionError}
            elif isinstance(stored, type):
                allowed = {stored}
            else:
                img.write_pixel(value, x, y, z, c, t)
                ref[t, c, z, y, x] = stored
                continue
            with pytest.raises(Exception) as info:
                img.write_pixel(value, x, y, z, c, t)
            assert type(info.value) in allowed, (value, type(info.value), allowed)
        np.testing.assert_array_equal(np.asarray(img), ref)
        for z in range(geometry.size_z):
            np.testing.assert_array_equal(img.load_plane(z=z), ref[0, 0, z])
    if kind != "scratch":
        path.unlink()


EDGES = [
    # (dtype, value, stored value or error)
    ("uint8", 255, 255),
    ("uint8", 256, ValueError),
    ("uint8", -1, ValueError),
    ("uint8", 2.0, 2),
    ("uint8", 2.5, ValueError),
    ("uint8", float("nan"), ValueError),
    ("uint8", float("inf"), ValueError),
    ("uint8", True, 1),
    ("uint8", "7", TypeError),
    ("uint8", None, TypeError),
    ("uint8", 1j, TypeError),
    ("uint8", np.uint8(9), 9),
    ("int8", -128, -128),
    ("int8", 128, ValueError),
    ("int8", np.int64(-129), ValueError),
    ("uint16", 65535, 65535),
    ("uint16", 65536, ValueError),
    ("int32", 2**31, ValueError),
    ("int32", -(2**31), -(2**31)),
    ("uint64", 2**64 - 1, 2**64 - 1),
    ("uint64", 2**64, ValueError),
    ("int64", float(2**63), ValueError),
    ("int64", -(2**63), -(2**63)),
    ("uint32", 2**2000, ValueError),
    ("uint32", np.array(5), 5),
    ("float32", 1e39, ValueError),
    ("float32", -1e39, ValueError),
    ("float32", 2**2000, ValueError),
    ("float32", float("inf"), np.inf),
    ("float32", 0.1, np.float32(0.1)),
    ("float64", 1e308, 1e308),
    ("float64", 2**1024, ValueError),
    ("float64", float("nan"), np.nan),
]


@pytest.mark.parametrize(
    ("dtype", "value", "expected"),
    EDGES,
    ids=[f"{e[0]}-{i}" for i, e in enumerate(EDGES)],
)
def test_values_that_do_not_fit_the_pixel_type(dtype, value, expected):
    with ndi.new_disk_image(ndi.Geometry(dtype, 3, 2)) as img:
        if isinstance(expected, type):
            with pytest.raises(expected):
                img.write_pixel(value, 1, 1)
            assert not img.load_plane().any()  # nothing was written
            return
        img.write_pixel(value, 1, 1)
        got = img.load_plane()
        np.testing.assert_array_equal(got[1, 1], np.array(expected, dtype))
        got[1, 1] = 0
        assert not got.any()


def test_read_only_images_and_out_of_range_coordinates(data_dir):
    path = data_dir / "ro_3x2_UInt8.raw"
    path.write_bytes(bytes(range(6)))
    with ndi.open_raw(path) as img:
        with pytest.raises(PermissionError, match=r"read-only.*copy it first"):
            img.write_pixel(1, 0, 0)
        with pytest.raises(ValueError, match="read-only"):
            img.array[0, 0, 0, 0, 0] = 1  # the memory map refuses too
        for coords, error in (
            ((3, 0), IndexError),
            ((0, 2), IndexError),
            ((-1, 0), IndexError),
            ((0, 0, 1), IndexError),
            ((0, 0, 0, 0, 1), IndexError),
            ((1.0, 0), TypeError),
            ((True, 0), TypeError),
        ):
            with pytest.raises(error) as info:
                img.write_pixel(1, *coords)
            if error is IndexError:
                assert "outside the image" in str(info.value)
    assert path.read_bytes() == bytes(range(6))
    with (
        ndi.open_raw(path, mode="r+") as img,
        pytest.raises(IndexError, match="size_x is 3"),
    ):
        img.write_pixel(1, 3, 0)
    assert path.read_bytes() == bytes(range(6))
    img.close()
    with pytest.raises(ValueError, match="closed"):
        img.write_pixel(1, 0, 0)


# --- corrupt TIFF headers ----------------------------------------------------
TIFF_VARIANTS = {
    "imagej": {"imagej": True, "metadata": {"axes": "ZYX"}},
    "shaped": {"photometric": "minisblack"},
    "rgb": {"photometric": "rgb"},
    "deflate": {"photometric": "minisblack", "compression": "zlib"},  # lazy
    "tiled": {"photometric": "minisblack", "tile": (16, 16)},  # lazy
}


@pytest.fixture(scope="module")
def tiff_bytes():
    out = {}
    for kind, kwargs in TIFF_VARIANTS.items():
        shape = (6, 5, 3) if kind == "rgb" else (3, 6, 5)
        pixels = np.arange(math.prod(shape), dtype=np.uint16).reshape(shape)
        path = Path(tempfile.mkdtemp()) / "t.tif"
        tifffile.imwrite(path, pixels, **kwargs)
        out[kind] = path.read_bytes()
        os.unlink(path)
        os.rmdir(path.parent)
    return out


@FUZZ
@given(
    kind=st.sampled_from(list(TIFF_VARIANTS)),
    edits=st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6
    ),
)
def test_corrupt_tiff_header_raises_value_error_or_reads_consistently(
    scratch_folder, tiff_bytes, kind, edits
):
    """Random bytes of the header (the first 400 bytes) overwritten: open
    either raises ValueError naming the file, or gives an image whose planes
    read back, or report the damage (OSError naming the file) when read."""
    data = bytearray(tiff_bytes[kind])
    for pos, byte in edits:
        data[pos] = byte
    assume(bytes(data) != tiff_bytes[kind])
    path = scratch_folder / "corrupt.tif"
    path.write_bytes(bytes(data))
    try:
        img = ndi.open_tiff(path)
    except ValueError as exc:
        assert str(path) in str(exc)
        return
    with img:
        T, C, Z, Y, X = img.shape
        assert img.size == T * C * Z * Y * X
        if Y * X > 1 << 22:
            return  # a huge plane may be real: do not allocate it here
        for t in range(T):
            for c in range(C):
                for z in range(min(Z, 4)):
                    try:
                        plane = img.load_plane(z, c, t)
                    except OSError as exc:  # pixels beyond the end of file
                        assert str(path) in str(exc)
                        continue
                    assert plane.shape == (Y, X)
