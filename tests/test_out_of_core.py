"""Copy and save a volume several times larger than the process's memory cap.

The capped process opens a TIFF, copies it, writes a pixel, loads planes and
saves to TIFF and RAW; every result is checked pixel for pixel, streaming.
"""

import sys
import textwrap

import numpy as np
import pytest
import tifffile

from _memcap import run_capped, unavailable_reason

CAP = 192 << 20
Z, Y, X = 96, 2048, 2048  # uint16: 768 MiB, 4 x the cap

GENERATE = """
def plane(z):
    yy, xx = np.mgrid[0:Y, 0:X]
    return ((yy * 7 + xx * 3 + z * 11) % 65521).astype(np.uint16)
"""

SCRIPT = textwrap.dedent(
    f"""
    import sys, numpy as np, tifffile
    import napari_diskimage as ndi
    Z, Y, X = {Z}, {Y}, {X}
    {textwrap.indent(GENERATE, "    ").strip()}
    def check(array3d, label):
        for z in range(0, Z, 8):
            expected = plane(z)
            if label == "copy" and z == 0:
                expected[0, 0] = 255
            if not np.array_equal(np.asarray(array3d[z]), expected):
                sys.exit(f"{{label}}: plane {{z}} differs")

    src, folder = sys.argv[1], sys.argv[2]
    ndi.set_disk_image_dir(folder + "/scratch")
    img = ndi.open_tiff(src)
    out = ndi.copy(img)
    out.write_pixel(255, 0, 0, 0, 0, 0)
    check(out.array[0, 0], "copy")
    p = out.load_plane(z=Z - 1, stride_x=16, stride_y=16)
    assert np.array_equal(p, plane(Z - 1)[::16, ::16]), "load_plane"
    img.save_tiff(folder + "/saved.tif")
    img.save_raw(folder + "/saved_be.raw", byte_order=">")  # the block path
    out = None
    saved = ndi.open_tiff(folder + "/saved.tif")
    check(saved.array[0, 0], "save_tiff")
    geometry = ndi.Geometry("uint16", X, Y, Z)
    be = ndi.open_raw(folder + "/saved_be.raw", geometry, byte_order=">")
    check(be.array[0, 0], "save_raw")
    print("ok")
    """
)


@pytest.mark.slow
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_copy_and_save_four_times_the_memory_cap(tmp_path):
    ns = {"np": np, "Y": Y, "X": X}
    exec(GENERATE, ns)
    src = tmp_path / "big.tif"
    # written plane by plane: the test process stays small too
    with tifffile.TiffWriter(src) as tw:
        for z in range(Z):
            tw.write(ns["plane"](z), contiguous=True)
    assert src.stat().st_size > 4 * CAP
    result = run_capped(
        CAP,
        [sys.executable, "-c", SCRIPT, str(src), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 137, "killed by the memory cap"
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"
    assert list((tmp_path / "scratch").iterdir()) == []


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_the_cap_is_real(tmp_path):
    """The same cap kills a process that loads the data instead."""
    code = f"import numpy as np; a = np.ones({2 * CAP}, np.uint8); print(a.sum())"
    result = run_capped(CAP, [sys.executable, "-c", code], capture_output=True)
    assert result.returncode in (137, -9)
