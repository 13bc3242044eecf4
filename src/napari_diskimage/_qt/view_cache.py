"""The view cache in napari: build it in a worker thread, switch the layers
to it, clear the caches.  Shown as a small block of the Image info tool.

The build is :func:`napari_diskimage.display.view_cache.iter_view_cache`
driven by a :class:`StepsJob` (napari's progress bar, Cancel); its size is
shown on the button and the free space checked before it starts.  When it
is ready the layers of the image get new display levels (the 3D overview
on the grid of the cache's mean levels) and are refreshed: YZ / XZ views
and 3D read the cache from then on (:mod:`napari_diskimage.display.cached_views`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import napari.viewer
from magicgui.widgets import Container, FloatSpinBox, PushButton
from napari.layers import Image

from .. import _settings
from .._diskimage import DiskImage
from .._napari.layers import disk_image_of
from .._napari.notify import error_message, notify_error, show_info
from .._napari.view_cache_offer import AUTO_KEY, auto_build_bytes
from .._scratch import (
    _check_writable,
    check_free_space,
    format_bytes,
    get_disk_image_dir,
)
from ..display import display_levels
from ..display.cached_views import valid_view_cache
from ..display.view_cache import clear_view_caches, iter_view_cache, view_cache_size
from ._common import status_label
from ._job import StepsJob

__all__ = ["ViewCacheActions", "start_view_cache_build", "use_view_cache"]

#: The build running for each image: a second request joins it.
_building: weakref.WeakKeyDictionary[DiskImage, StepsJob] = weakref.WeakKeyDictionary()
GiB = 1 << 30


def _can_have_cache(image: DiskImage | None) -> bool:
    return image is not None and image.kind != "zarr" and image.shape[2] > 1


def use_view_cache(viewer: napari.viewer.Viewer, image: DiskImage | None = None) -> int:
    """Give the layers of ``image`` (every disk image if None) new display
    levels, which read the view cache when it is valid, and refresh them;
    returns how many layers changed."""
    changed = 0
    for layer in list(viewer.layers):
        shown = disk_image_of(layer)
        if shown is None or (image is not None and shown is not image):
            continue
        if not isinstance(layer, Image) or not layer.multiscale:
            continue
        channel = layer.metadata.get("channel")
        if channel is None:  # an RGB(A) layer: every channel
            channel = tuple(range(shown.shape[1]))
        layer.data = display_levels(shown, channel)
        layer.refresh()
        changed += 1
    return changed


def start_view_cache_build(
    viewer: napari.viewer.Viewer,
    image: DiskImage,
    on_end: Callable[[], None] | None = None,
) -> StepsJob | None:
    """Build the view cache of ``image`` in a worker thread (progress bar,
    Cancel), then switch its layers to it.  None, with a notification, when
    it exists already or the disk-image directory lacks the space."""
    name = image.path.name
    running = _building.get(image)
    if running is not None and running.running:
        return running
    if valid_view_cache(image) is not None:
        use_view_cache(viewer, image)
        show_info(f"{name} has a view cache already: its views use it.")
        return None
    what = f"Building the view cache of {name}"
    try:
        folder = get_disk_image_dir()
        _check_writable(folder)  # creates it, or says why it cannot
        check_free_space(folder, view_cache_size(image), what)
    except OSError as exc:
        notify_error(what, exc)
        return None

    def done(cache: DiskImage) -> None:
        cache.close()  # the display opens its own
        use_view_cache(viewer, image)
        show_info(f"The view cache of {name} is ready: YZ / XZ views and 3D use it.")

    job = StepsJob(
        lambda: iter_view_cache(image),
        what,
        done,
        on_end,
        cancelled_message="the partial cache was removed",
    )
    _building[image] = job
    return job.start()


class ViewCacheActions(Container):
    """ "Build view cache (size)" and "Clear view caches" for the selected
    layer's image, with a status line."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.build_button = PushButton(text="Build view cache")
        self.build_button.tooltip = (
            "a chunked, averaged copy in the disk-image directory: YZ / XZ "
            "views read a few chunks instead of every row, 3D shows block means"
        )
        self.clear_button = PushButton(text="Clear view caches")
        self.auto = FloatSpinBox(
            label="Auto-build over",
            value=auto_build_bytes() / GiB,
            min=0,
            max=1 << 20,
            step=1,
            tooltip="build the view cache of every volume at least this large "
            "as soon as it is opened (0: never, offer it instead); remembered",
        )
        # "0.00" alone said neither the unit nor that 0 means never
        self.auto.native.setSuffix(" GiB")
        self.auto.native.setSpecialValueText("never")  # 0: offered instead (tooltip)
        self.status = status_label()
        self.job: StepsJob | None = None
        super().__init__(
            widgets=[self.build_button, self.clear_button, self.auto, self.status]
        )
        self.build_button.changed.connect(lambda _v=None: self.build())
        self.clear_button.changed.connect(lambda _v=None: self.clear_caches())
        self.auto.changed.connect(self._save_auto)

    def _save_auto(self, gib: float) -> None:
        # a failure to save the choice must not disturb the user's work
        _settings.save_setting(AUTO_KEY, round(gib * GiB), quiet=True)

    def image(self) -> DiskImage | None:
        """The selected image layer's disk image (labels have no view cache:
        a mean of labels is no label)."""
        layer = self.viewer.layers.selection.active
        if not isinstance(layer, Image):
            return None
        return disk_image_of(layer)

    def refresh(self) -> None:
        """The button shows the size of the selected image's cache."""
        image = self.image()
        running = self.job is not None and self.job.running
        if not _can_have_cache(image):
            self.build_button.text = "Build view cache"
            self.build_button.enabled = False
            return
        assert image is not None
        if valid_view_cache(image) is not None:
            self.build_button.text = "View cache ready"
            self.build_button.enabled = False
            return
        self.build_button.text = (
            f"Build view cache ({format_bytes(view_cache_size(image))})"
        )
        self.build_button.enabled = not running

    def build(self, image: DiskImage | None = None) -> StepsJob | None:
        """Build the cache of ``image`` (the selected layer's by default)."""
        image = image or self.image()
        if not _can_have_cache(image):
            self.status.value = (
                "select the image layer of a disk-image volume (not OME-Zarr)"
            )
            return None
        assert image is not None
        if self.job is not None and self.job.running:
            self.status.value = f"{self.job.what} is still running"
            return None
        job = start_view_cache_build(self.viewer, image, self._ended)
        if job is None:
            self.refresh()
            return None
        self.job = job
        self.build_button.enabled = False
        self.status.value = f"{job.what}..."
        return job

    def _ended(self) -> None:
        job = self.job
        if job is not None:
            if job.cancelled:
                self.status.value = "cancelled; the partial cache was removed"
            elif job.error is not None:
                self.status.value = f"failed: {error_message(job.error)}"
            else:
                self.status.value = "view cache ready"
        self.refresh()

    def clear_caches(self) -> int:
        """Remove every view cache; the layers read the files again."""
        if self.job is not None and self.job.running:
            self.status.value = f"{self.job.what} is running: cancel it first"
            return 0
        try:
            freed = clear_view_caches()
        except OSError as exc:
            notify_error("Clearing the view caches", exc)
            return 0
        use_view_cache(self.viewer)
        self.status.value = f"view caches cleared: {format_bytes(freed)} freed"
        self.refresh()
        return freed
