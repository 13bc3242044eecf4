"""Qt widgets of the napari plugin: one module per tool, and the panel.

Each tool is thin: it builds its fields, calls the GUI-free core
(:mod:`napari_diskimage`, :mod:`napari_diskimage.process`) and shows the
result as layers; long work runs through :class:`._job.StepsJob` (a worker
thread, napari's progress bar, Cancel).  Logic that needs no Qt lives in
:mod:`napari_diskimage._napari`.  Adding a tool: a module here, a line in
:data:`TOOLS` (the panel shows it) and one in ``napari.yaml``.
"""

from __future__ import annotations

from ._common import LayerChoice, add_disk_image, refresh_layer
from ._job import JobTool, StepsJob, cancel_all_jobs
from .box3d import Box3D
from .copy import CopyToDiskImage, start_copy
from .disk_image_dir import DiskImageDir
from .extract_plane import ExtractPlane
from .image_info import ImageInfo
from .labels import LabelsTool
from .measure import MeasureLabels
from .open_raw import OpenRaw
from .process import ProcessImage
from .save import SaveImage
from .write_pixel import WritePixel

__all__ = [
    "TOOLS",
    "Box3D",
    "CopyToDiskImage",
    "DiskImageDir",
    "ExtractPlane",
    "ImageInfo",
    "JobTool",
    "LabelsTool",
    "LayerChoice",
    "MeasureLabels",
    "OpenRaw",
    "ProcessImage",
    "SaveImage",
    "StepsJob",
    "WritePixel",
    "add_disk_image",
    "cancel_all_jobs",
    "refresh_layer",
    "start_copy",
]

#: The tools, in the order the "Disk images" panel shows them: (full name,
#: widget class).  The names are those of the Plugins menu.
TOOLS = (
    ("Image info", ImageInfo),
    ("Process (out of core)", ProcessImage),
    ("Labels (paint on disk)", LabelsTool),
    ("Measure (objects, porosity)", MeasureLabels),
    ("Copy to disk image", CopyToDiskImage),
    ("Write pixel", WritePixel),
    ("Extract plane", ExtractPlane),
    ("3D box (full resolution)", Box3D),
    ("Save as TIFF / RAW", SaveImage),
    ("Open RAW", OpenRaw),
    ("Disk-image directory", DiskImageDir),
)
