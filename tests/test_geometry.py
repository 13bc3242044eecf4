import numpy as np
import pytest

from napari_diskimage import Geometry


def test_sizes_and_numpy_shape():
    g = Geometry("UInt16", 125, 97, 47)
    assert g.dtype == np.uint16
    assert g.sizes == (125, 97, 47, 1, 1)
    assert g.shape == (1, 1, 47, 97, 125)  # (t, c, z, y, x)
    assert g.nbytes == 125 * 97 * 47 * 2


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("uint8", np.uint8),
        (np.uint16, np.uint16),
        ("UInt8", np.uint8),
        ("real32", np.float32),
        ("Real64", np.float64),
        ("Float32", np.float32),
        (">u2", np.uint16),  # byte order belongs to the file, not the geometry
        ("int64", np.int64),
    ],
)
def test_dtype_names(dtype, expected):
    assert Geometry(dtype, 2, 3).dtype == np.dtype(expected)


@pytest.mark.parametrize(
    "dtype", ["complex64", "bool", "float16", "U5", "object", "Real16"]
)
def test_unsupported_dtype_is_a_clear_error(dtype):
    with pytest.raises(ValueError, match="pixel type"):
        Geometry(dtype, 2, 3)


@pytest.mark.parametrize(("field", "value"), [("size_x", 0), ("size_z", -1)])
def test_sizes_must_be_positive(field, value):
    kwargs = {"dtype": "uint8", "size_x": 2, "size_y": 2, field: value}
    with pytest.raises(ValueError, match=field):
        Geometry(**kwargs)


@pytest.mark.parametrize(
    ("name", "dtype", "sizes"),
    [
        ("Lena_510x509_UInt8.raw", np.uint8, (510, 509, 1, 1, 1)),
        ("porosity_125x97x47_UInt16.raw", np.uint16, (125, 97, 47, 1, 1)),
        ("a_b_c_4x5x6x2x3_real32.RAW", np.float32, (4, 5, 6, 2, 3)),
        ("/some/dir/x_7x8_Float64.raw", np.float64, (7, 8, 1, 1, 1)),
        ("cells_10x20x30_INT32.raw", np.int32, (10, 20, 30, 1, 1)),
    ],
)
def test_from_filename(name, dtype, sizes):
    g = Geometry.from_filename(name)
    assert g.dtype == dtype
    assert g.sizes == sizes


@pytest.mark.parametrize(
    "name",
    [
        "Lena.raw",
        "Lena_510_UInt8.raw",  # one size only
        "Lena_510x509_UInt8.tif",
        "Lena_510x509.raw",
        "Lena_510x509x1x1x1x1_UInt8.raw",  # six sizes
        "Lena_510x0_UInt8.raw",
        "510x509_UInt8.raw",  # no name part
    ],
)
def test_malformed_names_say_what_was_expected(name):
    with pytest.raises(ValueError, match="expected '<name>_<X>x<Y>"):
        Geometry.from_filename(name)


def test_unknown_type_in_name():
    with pytest.raises(ValueError, match="unknown pixel type 'UInt12'"):
        Geometry.from_filename("Lena_510x509_UInt12.raw")


def test_filename_round_trip():
    g = Geometry("uint16", 125, 97, 47)
    assert g.filename("porosity") == "porosity_125x97x47_UInt16.raw"
    assert Geometry.from_filename(g.filename("p")) == g
    g5 = Geometry("float32", 4, 5, 1, 2, 3)
    assert Geometry.from_filename(g5.filename("p")) == g5
