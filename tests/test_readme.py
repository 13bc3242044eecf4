"""README's Python walk-through runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_walkthrough(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(b for b in blocks if "ndi.copy(im)" in b)
    rng = np.random.default_rng(3)
    data = rng.integers(0, 1256, (47, 97, 125), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "porosity_125x97x47_UInt16.tif", data)
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("NAPARI_DISKIMAGE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "Is disk image: True" in out.stdout
    first = [255, *data[0, 0, 2:8:2].tolist()]
    assert (
        f"First pixels in the extracted plane: {np.array(first, np.uint16)}"
        in out.stdout
    )
    saved = tifffile.imread(tmp_path / "porosity_edited.tif")
    expected = data.copy()
    expected[0, 0, 0] = 255
    np.testing.assert_array_equal(saved, expected)
    assert list((tmp_path / "disk-images").iterdir()) == []  # the copy was dropped
