"""Bad files and bad input: each gives a specific exception, never a crash.

Risky reads (files truncated while mapped, absurd headers) run in a
subprocess, so that a SIGBUS or an out-of-memory kill fails the test instead
of killing pytest.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_diskimage as ndi
from _subprocess import run_python

# --- paths that are not readable files ---------------------------------------
OPENERS = {
    "tiff": (ndi.open_tiff, "img.tif"),
    "raw": (ndi.open_raw, "img_4x4_UInt8.raw"),
}


@pytest.mark.parametrize("kind", OPENERS)
def test_missing_path_raises_file_not_found(data_dir, kind):
    opener, name = OPENERS[kind]
    path = data_dir / name
    with pytest.raises(FileNotFoundError, match="no such file") as info:
        opener(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", OPENERS)
def test_folder_raises_is_a_directory(data_dir, kind):
    opener, name = OPENERS[kind]
    folder = data_dir / name
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="folder") as info:
        opener(folder)
    assert str(folder) in str(info.value)


@pytest.fixture
def world_readable_dir():
    """A folder outside pytest's private (0700) tmp tree, for other users."""
    folder = Path(tempfile.mkdtemp(prefix="ndi-perm-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_unreadable_file_raises_permission_error(world_readable_dir):
    tif = world_readable_dir / "secret.tif"
    raw = world_readable_dir / "secret_4x4_UInt8.raw"
    tifffile.imwrite(tif, np.zeros((4, 4), np.uint8))
    raw.write_bytes(bytes(16))
    for p in (tif, raw):
        p.chmod(0o000)
    code = f"""
        import json, os
        import napari_diskimage as ndi
        if os.geteuid() == 0:
            # root reads anything: drop to 'nobody' to see what a user sees
            os.setgid(65534)
            os.setuid(65534)
        out = {{}}
        for name, opener, path in (("tiff", ndi.open_tiff, {str(tif)!r}),
                                   ("raw", ndi.open_raw, {str(raw)!r})):
            try:
                opener(path)
                out[name] = ["opened", ""]
            except Exception as exc:
                out[name] = [type(exc).__name__, str(exc)]
        print(json.dumps(out))
    """
    out = run_python(code)
    for name, p in (("tiff", tif), ("raw", raw)):
        kind, message = out[name]
        assert kind == "PermissionError", out
        assert str(p) in message and "permission" in message


def test_zero_length_files_raise_value_error(data_dir):
    tif = data_dir / "empty.tif"
    raw = data_dir / "empty_4x4_UInt8.raw"
    tif.touch()
    raw.touch()
    with pytest.raises(ValueError, match=r"empty \(0 bytes\)"):
        ndi.open_tiff(tif)
    with pytest.raises(ValueError, match="has 0 bytes but") as info:
        ndi.open_raw(raw)
    assert "16 bytes" in str(info.value)


# --- corrupt TIFF files ------------------------------------------------------
TIFF_KINDS = {
    "classic": {},
    "bigtiff": {"bigtiff": True},
    # the layout save_tiff writes: one header, all pixels after it
    "imagej": {"imagej": True, "metadata": {"axes": "ZYX"}},
}


@pytest.mark.parametrize("kind", TIFF_KINDS)
def test_truncated_tiff_is_refused_never_shown_in_part(data_dir, kind):
    """The file cut at 25 points from the header to the end.

    Each cut either raises ValueError naming the file or, when only trailing
    metadata was cut and every pixel is still there, opens to all the
    original pixels: never a part of the image passed off as the whole.
    """
    pixels = np.arange(5 * 30 * 40, dtype=np.uint16).reshape(5, 30, 40)
    path = data_dir / "cut.tif"
    tifffile.imwrite(path, pixels, **TIFF_KINDS[kind])
    full = path.read_bytes()
    refused = 0
    for cut in np.linspace(8, len(full) - 1, 25).astype(int):
        path.write_bytes(full[:cut])
        try:
            img = ndi.open_tiff(path)
        except ValueError as exc:
            assert str(path) in str(exc)
            refused += 1
            continue
        with img:
            assert img.shape == (1, 1, 5, 30, 40), cut
            np.testing.assert_array_equal(img.load_plane(z=4), pixels[4])
    assert refused >= 20  # the pixel data are 92 % of the file


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("header", [b"", b"II*\x00", b"MM\x00*", b"II+\x00"])
def test_random_bytes_named_tif_raise_value_error(data_dir, seed, header):
    path = data_dir / "noise.tif"
    rng = np.random.default_rng(seed)
    path.write_bytes(header + rng.integers(0, 256, 4000, np.uint8).tobytes())
    with pytest.raises(ValueError) as info:
        ndi.open_tiff(path)
    assert str(path) in str(info.value)


def craft_tiff(
    path: Path, tags: dict[int, int], description: str | None = None
) -> None:
    """A classic little-endian TIFF with one IFD of LONG tags and 64 bytes."""
    entries = dict(tags)
    desc = b""
    n = len(entries) + (description is not None)
    data_offset = 8 + 2 + 12 * n + 4
    if description is not None:
        desc = description.encode() + b"\0"
    parts = [b"II*\x00", struct.pack("<IH", 8, n)]
    for code in sorted({*entries, *([270] if desc else [])}):
        if code == 270:
            parts.append(struct.pack("<HHII", 270, 2, len(desc), data_offset))
        else:
            value = entries[code]
            if value == -1:  # placeholder: offset of the pixel data
                value = data_offset + len(desc)
            parts.append(struct.pack("<HHII", code, 4, 1, value))
    parts.append(struct.pack("<I", 0))
    path.write_bytes(b"".join(parts) + desc + bytes(64))


MEGA = 10**6
ABSURD = {  # ImageWidth, ImageLength, BitsPerSample, StripOffsets, ...
    256: MEGA,
    257: MEGA,
    258: 16,
    259: 1,
    262: 1,
    273: -1,
    277: 1,
    278: MEGA,
    279: 2**32 - 1,
}


@pytest.mark.parametrize(
    ("variant", "tags", "description"),
    [
        ("plane", ABSURD, None),
        ("depth", {**ABSURD, 32997: MEGA}, None),  # SGI ImageDepth
        ("imagej", ABSURD, f"ImageJ=1.11a\nimages={MEGA}\nslices={MEGA}\n"),
        ("shaped", ABSURD, json.dumps({"shape": [MEGA, MEGA, MEGA]})),
        (  # a valid 4 x 4 page whose description declares 10^18 pixels
            "shaped-small-page",
            {**ABSURD, 256: 4, 257: 4, 278: 4, 279: 32},
            json.dumps({"shape": [MEGA, MEGA, MEGA]}),
        ),
    ],
)
def test_absurd_tiff_sizes_are_refused_without_allocating(
    data_dir, variant, tags, description
):
    """A header declaring 10^6 x 10^6 (x 10^6) pixels in a 200-byte file.

    Opened in a subprocess limited to 1 GiB of address space: any attempt to
    allocate the declared size fails there (or gets it killed), and its peak
    memory is reported back.
    """
    path = data_dir / f"{variant}.tif"
    craft_tiff(path, tags, description)
    out = run_python(
        f"""
        import json, resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        import napari_diskimage as ndi
        try:
            ndi.open_tiff({str(path)!r})
            result = ["opened", ""]
        except Exception as exc:
            result = [type(exc).__name__, str(exc)]
        # VmHWM: this program's own peak (ru_maxrss would include pytest's,
        # inherited through fork)
        status = open("/proc/self/status").read()
        print(json.dumps(result + [int(status.split("VmHWM:")[1].split()[0])]))
        """
    )
    kind, message, peak_kib = out
    assert kind == "CorruptFileError", out  # a ValueError
    assert "1000000" in message and str(path) in message
    assert peak_kib < 300 * 1024, f"peak memory {peak_kib} KiB"


# --- RAW files ---------------------------------------------------------------
def test_raw_smaller_than_its_geometry_names_both_sizes(data_dir):
    path = data_dir / "vol_10x10x3_UInt16.raw"
    path.write_bytes(bytes(599))  # needs 600
    with pytest.raises(ValueError) as info:
        ndi.open_raw(path)
    message = str(info.value)
    assert "599 bytes" in message and "600" in message and str(path) in message
    path.write_bytes(bytes(600))
    with pytest.raises(ValueError, match="needs 601 bytes"):
        ndi.open_raw(path, offset=1)
    with ndi.open_raw(path) as img:
        assert img.shape == (1, 1, 3, 10, 10)


@pytest.mark.parametrize(
    "name",
    [
        "vol_10x10_UInt12.raw",  # unknown type
        "vol_10x10_Float16.raw",  # unsupported type
        "vol_10x10_UInt8.tif",  # not .raw
        "vol_10x10_UInt8.raw.gz",
        "vol_10x10_UInt8raw",
        "vol_10_UInt8.raw",  # one size only
        "vol_10x10x1x1x1x1_UInt8.raw",  # six sizes
        "vol_10x10x_UInt8.raw",
        "vol_10xx10_UInt8.raw",
        "vol_0x10_UInt8.raw",  # size 0
        "vol_10x10UInt8.raw",
        "vol_10x10_.raw",
        "vol-10x10-UInt8.raw",
        "vol_10*10_UInt8.raw",
        "vol_-10x10_UInt8.raw",
        "vol_10.5x10_UInt8.raw",
        "vol_10x10_UInt8.raw\n",
    ],
)
def test_almost_raw_names_explain_the_convention(data_dir, name):
    path = data_dir / name
    path.write_bytes(bytes(100))
    with pytest.raises(ValueError, match="expected '<name>_<X>x<Y>") as info:
        ndi.open_raw(path)
    message = str(info.value)
    assert "open_raw(path, Geometry(" in message  # the other way out
    with pytest.raises(ValueError):
        ndi.Geometry.from_filename(name)


@pytest.mark.parametrize(
    ("name", "shape", "dtype"),
    [
        ("vol_4x3_uint8.raw", (1, 1, 1, 3, 4), "uint8"),
        ("VOL_4X3X2_REAL32.RAW", (1, 1, 2, 3, 4), "float32"),
        ("a_b_c_4x3x1x2_Int16.raw", (1, 2, 1, 3, 4), "int16"),
        ("_4x3_Float64.raw", (1, 1, 1, 3, 4), "float64"),
        ("x\nline_4x3_UInt8.raw", (1, 1, 1, 3, 4), "uint8"),
    ],
)
def test_raw_names_that_do_follow_the_convention(data_dir, name, shape, dtype):
    geometry = ndi.Geometry.from_filename(name)
    assert geometry.shape == shape and geometry.dtype == np.dtype(dtype)
    path = data_dir / name
    path.write_bytes(bytes(geometry.nbytes))
    with ndi.open_raw(path) as img:
        assert img.shape == shape and img.dtype == np.dtype(dtype)


# --- files that shrink while they are open ----------------------------------
SHRINK = """
import json, os, subprocess, sys
import numpy as np, tifffile
import napari_diskimage as ndi

folder = sys.argv[1]
results = {}

def attempt(name, fn):
    try:
        fn()
        results[name] = ["ok", ""]
    except Exception as exc:
        results[name] = [type(exc).__name__, str(exc)]

pixels = np.arange(4 * 64 * 64, dtype=np.uint16).reshape(4, 64, 64)
raw_le = os.path.join(folder, "le_64x64x4_UInt16.raw")
raw_be = os.path.join(folder, "be_64x64x4_UInt16.raw")
tif = os.path.join(folder, "ij.tif")
pixels.astype("<u2").tofile(raw_le)
pixels.astype(">u2").tofile(raw_be)
tifffile.imwrite(tif, pixels, imagej=True, metadata={"axes": "ZYX"})
images = {
    "raw_le": ndi.open_raw(raw_le, mode="r+"),
    "raw_be": ndi.open_raw(raw_be, byte_order=">", mode="r+"),
    "tiff": ndi.open_tiff(tif, mode="r+"),
}
deflate = os.path.join(folder, "deflate.tif")
noise = np.random.default_rng(0).integers(0, 2**16, (4, 64, 64), np.uint16)
tifffile.imwrite(deflate, noise, compression="zlib", photometric="minisblack")
images["deflate"] = ndi.open_tiff(deflate)  # decoded lazily, read-only
for name, img in images.items():
    # another program cuts the file to half its first plane
    subprocess.run(["truncate", "-s", "4000", str(img.path)], check=True)
    attempt(name + ".load_plane", lambda: img.load_plane(z=3))
    attempt(name + ".load_plane_first_rows", lambda: img.load_plane(size_y=2))
    attempt(name + ".read_region", lambda: img.read_region(0, 0, 2, 0, 8, 8, 0, 8, 8))
    attempt(name + ".write_pixel", lambda: img.write_pixel(1, 63, 63, 3))
    attempt(name + ".copy", lambda: ndi.copy(img))
    target = os.path.join(folder, name + "-saved.tif")
    attempt(name + ".save_tiff", lambda: ndi.save_tiff(img, target))
    attempt(name + ".save_raw", lambda: ndi.save_raw(img, target + ".raw"))
    results[name + ".size_after"] = os.path.getsize(img.path)
    results[name + ".path"] = str(img.path)
    img.close()
results["files"] = sorted(os.listdir(folder))
scratch_dir = os.environ["NAPARI_DISKIMAGE_DIR"]
has_scratch = os.path.isdir(scratch_dir)
results["scratch"] = sorted(os.listdir(scratch_dir)) if has_scratch else []
print(json.dumps(results))
"""


def test_file_truncated_while_open_raises_clear_oserror(data_dir, disk_image_dir):
    """Reading, writing, copying, saving a file that another program cut short.

    Each must raise OSError naming the file, never SIGBUS, never grow the
    file back, and leave no scratch or partial file behind.
    """
    out = run_python(SHRINK, str(data_dir))
    for name in ("raw_le", "raw_be", "tiff", "deflate"):
        for op in (
            "load_plane",
            "read_region",
            "write_pixel",
            "copy",
            "save_tiff",
            "save_raw",
        ):
            kind, message = out[f"{name}.{op}"]
            if (name, op) == ("deflate", "write_pixel"):
                assert kind == "PermissionError", message  # read-only anyway
                continue
            assert kind == "OSError", (name, op, kind, message)
            assert "truncated" in message, (name, op, message)
            assert out[f"{name}.path"] in message, (name, op, message)
        # rows still in the file stay readable (raw: bytes 0..4000 hold them)
        if name.startswith("raw"):
            assert out[f"{name}.load_plane_first_rows"] == ["ok", ""]
        assert out[f"{name}.size_after"] == 4000
    assert not [f for f in out["files"] if "saved" in f or f.endswith(".part")]
    assert out["scratch"] == []
