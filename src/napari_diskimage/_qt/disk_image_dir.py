"""The "Disk-image directory" tool (IPSDK get/setAllocatedDiskImagePath).

Shows where scratch files go and the free space; chooses another folder,
remembered across napari restarts; warns when the folder is in RAM or
smaller than the largest open image.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import napari.viewer
from magicgui.types import FileDialogMode
from magicgui.widgets import Container, FileEdit, PushButton

import napari_diskimage as ndi

from .. import _settings
from .._files import nearest_existing
from .._napari.layers import folder_warnings
from .._napari.notify import error_message, notify_error, show_info, show_warning
from .._scratch import ENV_VAR, format_bytes
from ._common import apply_saved_settings, chosen_path, status_label, unwrap

__all__ = ["DiskImageDir"]


class DiskImageDir(Container):
    """Where new disk images go: show, choose, remember."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.current = status_label()
        self.folder = FileEdit(
            label="new folder", mode=FileDialogMode.EXISTING_DIRECTORY
        )
        self.use_button = PushButton(text="Use this folder")
        self.warning = status_label()
        super().__init__(
            widgets=[self.current, self.folder, self.use_button, self.warning]
        )
        self.folder.value = ndi.get_disk_image_dir()
        self.use_button.changed.connect(self.use)
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def refresh(self, _event: Any = None) -> list[str]:
        """Show the folder and its free space and warnings; return these."""
        folder = ndi.get_disk_image_dir()
        try:
            free = format_bytes(shutil.disk_usage(nearest_existing(folder)).free)
        except OSError:
            free = "unknown"
        self.current.value = f"disk images go to: {folder}\nfree space: {free}"
        problems = folder_warnings(folder, self.viewer)
        self.warning.value = "\n".join(problems)
        return problems

    def use(self, _value: Any = None) -> Path | None:
        try:
            folder = ndi.set_disk_image_dir(chosen_path(self.folder))
        except OSError as exc:
            notify_error("set the disk-image directory", exc)
            return None
        try:
            _settings.save_disk_image_dir(folder)
        except OSError as exc:
            show_warning(error_message(exc))
        for problem in self.refresh():
            show_warning(problem)
        note = ""
        if os.environ.get(ENV_VAR):
            note = (
                f" (${ENV_VAR} is set: it chooses the folder when napari starts; "
                "the saved choice applies when it is unset)"
            )
        show_info(f"new disk images go to {str(folder)!r}{note}")
        return folder
