"""The "Open RAW" tool (IPSDK openRawImageFile) with a typed geometry.

Path, pixel type, sizes x, y, z, c, t, header bytes, byte order; prefilled
from names like ``scan_512x512x100_UInt16.raw``; shows expected against
actual file size before opening.
"""

from __future__ import annotations

import contextlib
from typing import Any

import napari.viewer
from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Layer

import napari_diskimage as ndi

from .._geometry import Geometry
from .._napari.notify import notify_error
from ._common import (
    MAX_INT,
    add_disk_image,
    apply_saved_settings,
    chosen_path,
    status_label,
    unwrap,
)
from .save import BYTE_ORDERS

__all__ = ["OpenRaw"]


_TYPE_CHOICES = [
    ("UInt8", "uint8"),
    ("Int8", "int8"),
    ("UInt16", "uint16"),
    ("Int16", "int16"),
    ("UInt32", "uint32"),
    ("Int32", "int32"),
    ("UInt64", "uint64"),
    ("Int64", "int64"),
    ("Real32 (float32)", "float32"),
    ("Real64 (float64)", "float64"),
]


class OpenRaw(Container):
    """Open a RAW file with a geometry typed in (IPSDK openRawImageFile)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.path = FileEdit(
            label="RAW file",
            mode=FileDialogMode.EXISTING_FILE,
            filter="RAW files (*.raw);;All files (*)",
        )
        self.dtype = ComboBox(label="pixel type", choices=_TYPE_CHOICES, value="uint8")
        self.sizes = {
            a: SpinBox(label=f"size {a}", min=1, max=MAX_INT, value=1) for a in "xyzct"
        }
        self.offset = SpinBox(label="header bytes", min=0, max=MAX_INT, value=0)
        self.byte_order = ComboBox(label="byte order", choices=BYTE_ORDERS)
        self.writable = CheckBox(text="edit the file in place (r+)", value=False)
        self.size_check = status_label()
        self.open_button = PushButton(text="Open")
        super().__init__(
            widgets=[
                self.path,
                self.dtype,
                *self.sizes.values(),
                self.offset,
                self.byte_order,
                self.writable,
                self.size_check,
                self.open_button,
            ]
        )
        self.path.changed.connect(self._path_changed)
        for w in (self.dtype, self.offset, *self.sizes.values()):
            w.changed.connect(self.check_size)
        self.open_button.changed.connect(self.open)

    def geometry(self) -> Geometry:
        return Geometry(self.dtype.value, *(self.sizes[a].value for a in "xyzct"))

    def _path_changed(self, _value: Any = None) -> None:
        with contextlib.suppress(ValueError):
            g = Geometry.from_filename(chosen_path(self.path).name)
            self.dtype.value = g.dtype.name
            for a, n in zip("xyzct", g.sizes, strict=True):
                self.sizes[a].value = min(n, MAX_INT)
        self.check_size()

    def check_size(self, _value: Any = None) -> None:
        """Show expected vs actual file size when they differ."""
        path = chosen_path(self.path)
        try:
            actual = path.stat().st_size if path.is_file() else None
        except OSError:
            actual = None
        if actual is None:
            self.size_check.value = ""
            return
        g = self.geometry()
        expected = self.offset.value + g.nbytes
        if expected == actual:
            self.size_check.value = f"file size matches: {actual} bytes"
        else:
            more = "smaller" if actual < expected else "larger"
            self.size_check.value = (
                f"size mismatch: expected {expected} bytes "
                f"({self.offset.value} header + {g.nbytes} pixels), file has "
                f"{actual} bytes ({more}); check sizes, type and header"
            )

    def open(self, _value: Any = None) -> list[Layer]:
        path = chosen_path(self.path)
        try:
            image = ndi.open_raw(
                path,
                self.geometry(),
                offset=self.offset.value,
                byte_order=self.byte_order.value,
                mode="r+" if self.writable.value else "r",
            )
        except (OSError, ValueError, TypeError) as exc:
            notify_error(f"open RAW {str(path)!r}", exc)
            return []
        return add_disk_image(self.viewer, image, path.stem)
