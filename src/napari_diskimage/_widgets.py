"""napari widgets: every disk-image operation of the Python API, in napari.

Each widget is a thin magicgui :class:`~magicgui.widgets.Container` over the
core: it reads its fields, calls :mod:`napari_diskimage` and shows the
result as a layer.  Long operations (copy, save) run the core's step
generators in a worker thread with a napari progress bar and a cancel
button, so napari stays responsive.  Errors from the core name the file and
the fix; they are shown as napari notifications, never swallowed.

napari finds the widgets through ``napari.yaml``; napari passes the viewer
to the constructors.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, ClassVar

import napari.viewer
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Layer
from napari.utils.notifications import (
    Notification,
    NotificationSeverity,
    notification_manager,
    show_error,
    show_info,
    show_warning,
)
from napari.utils.progress import cancelable_progress
from napari.viewer import Viewer
from superqt.utils import create_worker

import napari_diskimage as ndi

from . import _settings
from ._diskimage import DiskImage
from ._geometry import Geometry
from ._scratch import ENV_VAR, format_bytes, sweep_orphans
from ._writer import layer_source

__all__ = [
    "CopyToDiskImage",
    "DiskImageDir",
    "ExtractPlane",
    "ImageInfo",
    "OpenRaw",
    "SaveImage",
    "WritePixel",
]

#: Largest side, in pixels, of a plane extracted with the default stride.
EXTRACT_TARGET = 1024
_MAX_INT = 2**31 - 1  # Qt spin boxes hold 32-bit ints
_AXES = "tczyx"


# --- helpers shared by the widgets ------------------------------------------
def error_message(exc: BaseException) -> str:
    """The user-facing text of ``exc``: the core's message, without noise."""
    if isinstance(exc, OSError) and exc.strerror:
        msg = exc.strerror
        if exc.filename and str(exc.filename) not in msg:
            msg = f"{msg}: {str(exc.filename)!r}"
        return msg
    return str(exc) or type(exc).__name__


def notify_error(what: str, exc: BaseException) -> None:
    """Show ``exc`` from the core as a napari error notification."""
    show_error(f"{what} failed: {error_message(exc)}")


def unwrap(viewer: Any) -> Viewer:
    """The viewer itself, not the proxy napari hands to dock widgets.

    napari passes plugin widgets a proxy that refuses private attributes;
    the core works on the real layers and disk images.
    """
    return getattr(viewer, "__wrapped__", viewer)


def _status_label() -> Label:
    """A label for long messages and paths that wraps instead of widening the
    dock (a long file path would otherwise squeeze napari's canvas)."""
    from qtpy.QtWidgets import QSizePolicy

    label = Label(value="")
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.native.setTextInteractionFlags(
        label.native.textInteractionFlags() | _selectable()
    )
    return label


def _selectable() -> Any:
    from qtpy.QtCore import Qt

    return Qt.TextInteractionFlag.TextSelectableByMouse


def apply_saved_settings() -> None:
    """Use the saved disk-image directory (unless $NAPARI_DISKIMAGE_DIR is set),
    and remove scratch files left there by napari sessions that were killed."""
    problem = _settings.apply_saved_disk_image_dir()
    if problem:
        show_warning(problem)
    sweep_orphans()  # never raises; spares files of running processes


def disk_image_of(layer: Layer | None) -> DiskImage | None:
    """The :class:`DiskImage` behind ``layer``, or None for in-memory layers."""
    if layer is None:
        return None
    img = layer.metadata.get("disk_image")
    return img if isinstance(img, DiskImage) else None


def level0(layer: Layer) -> Any:
    """The full-resolution data of ``layer``."""
    return layer.data[0] if layer.multiscale else layer.data


def layer_axes(layer: Layer) -> tuple[str, ...]:
    """Which of t, c, z, y, x each data axis of ``layer`` is.

    Taken from the layer's axis labels when they are axis letters (the
    reader sets them), else from the disk image's sizes: channel layers
    (``metadata["channel"]``) have no c axis, and axes of size 1 may have
    been left out; plain layers are right-aligned to (t, c, z, y, x).
    """
    ndim = layer.ndim
    labels = tuple(str(a).lower() for a in getattr(layer, "axis_labels", ()))
    if len(labels) == ndim and len(set(labels)) == ndim and set(labels) <= set(_AXES):
        return labels
    img = disk_image_of(layer)
    candidates = _AXES
    if img is not None and layer.metadata.get("channel") is not None:
        candidates = "tzyx"
    if img is not None and len(candidates) > ndim:
        sizes = dict(zip(_AXES, img.shape, strict=True))
        kept = tuple(a for a in candidates if sizes[a] > 1 or a in "yx")
        if len(kept) == ndim:
            return kept
    if ndim > len(candidates):
        return (("?",) * (ndim - len(candidates))) + tuple(candidates)
    return tuple(candidates[-ndim:])


def data_voxel(layer: Layer, data_coords: Any) -> dict[str, int]:
    """Voxel (x, y, z, c, t) of ``layer`` at data coordinates (pixel centres)."""
    voxel = dict.fromkeys(_AXES, 0)
    for axis, v in zip(layer_axes(layer), data_coords, strict=False):
        if axis in voxel:
            voxel[axis] = math.floor(float(v) + 0.5)
    channel = layer.metadata.get("channel")
    if channel is not None:
        voxel["c"] = int(channel)
    return voxel


def world_voxel(layer: Layer, world: Any) -> dict[str, int]:
    """Voxel of ``layer`` at world coordinates (e.g. a click, ``dims.point``)."""
    return data_voxel(layer, layer.world_to_data(np.asarray(world, dtype=float)))


def image_sizes(layer: Layer) -> dict[str, int]:
    """Sizes x, y, z, c, t of the image behind ``layer``."""
    img = disk_image_of(layer)
    if img is not None:
        return dict(zip(_AXES, img.shape, strict=True))
    sizes = dict.fromkeys(_AXES, 1)
    for axis, n in zip(layer_axes(layer), level0(layer).shape, strict=False):
        if axis in sizes:
            sizes[axis] = int(n)
    return sizes


def refresh_layer(layer: Layer) -> None:
    """Re-read what ``layer`` shows from its file, at every pyramid level.

    napari (0.7+) keeps the coarsest level of a 2D multiscale layer in
    memory (``_level_materializer``, an ``lru_cache``) and ``refresh()``
    does not clear it, so a written pixel would not show when zoomed out
    nor in the thumbnail.
    """
    materializer = getattr(layer, "_level_materializer", None)
    if materializer is not None and hasattr(materializer, "cache_clear"):
        materializer.cache_clear()
    layer.refresh()


def add_disk_image(viewer: Viewer, image: DiskImage, name: str) -> list[Layer]:
    """Add the layers of ``image`` (one per channel) to ``viewer``."""
    from ._reader import disk_image_layers

    return [
        viewer.add_image(data, **kwargs)
        for data, kwargs, _ in disk_image_layers(image, name=name)
    ]


class LayerChoice(ComboBox):
    """A drop-down of the viewer's image layers that follows the selection.

    ``disk_images_only`` lists only layers backed by a disk image.
    """

    def __init__(
        self, viewer: Viewer, label: str = "layer", disk_images_only: bool = False
    ) -> None:
        self._viewer = viewer
        self._disk_images_only = disk_images_only
        super().__init__(label=label, choices=self._choices, nullable=True)
        events = viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self._refresh)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        self._follow_selection()

    def _accepts(self, layer: Any) -> bool:
        if not isinstance(layer, Image):
            return False
        return not self._disk_images_only or disk_image_of(layer) is not None

    def _choices(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return [(lay.name, lay) for lay in self._viewer.layers if self._accepts(lay)]

    def _refresh(self, _event: Any = None) -> None:
        self.reset_choices()
        if self.value is None:
            self._follow_selection()

    def _follow_selection(self, _event: Any = None) -> None:
        active = self._viewer.layers.selection.active
        if self._accepts(active) and active in self._viewer.layers:
            self.reset_choices()
            self.value = active


def _percent(done: int, total: int) -> int:
    return 100 if total <= 0 else min(100, int(100 * done / total))


class _CancelableProgress(cancelable_progress):
    """napari progress bar whose Cancel button (activity dock) cancels a job."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()


_CANCELLED = object()


def _drive(make_steps: Callable[[], Any], cancel: threading.Event) -> Generator:
    """Run core steps in the worker thread; stop (and clean up) on cancel."""
    steps = make_steps()
    try:
        while True:
            if cancel.is_set():
                return _CANCELLED
            try:
                step = next(steps)
            except StopIteration as stop:
                return stop.value
            except Exception:
                if cancel.is_set():  # the blocks stopped because of the cancel
                    return _CANCELLED
                raise
            yield step
    finally:
        # Closing the core generator removes its partial file.
        steps.close()


class StepsJob:
    """Runs a core step generator in a worker thread with progress and cancel.

    ``on_done(result)`` runs in the GUI thread when it succeeds; failure and
    cancellation are notified (the core has removed the partial file).
    """

    #: Jobs still running (see :func:`cancel_all_jobs`).
    running_jobs: ClassVar[set[StepsJob]] = set()

    def __init__(
        self,
        make_steps: Callable[[], Any],
        what: str,
        on_done: Callable[[Any], None] | None,
        on_end: Callable[[], None] | None = None,
        *,
        on_step: Callable[[tuple[int, int]], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self.what = what
        self._on_done = on_done
        self._on_end = on_end
        self._on_step = on_step
        self._on_cancel = on_cancel
        self._cancel = threading.Event()
        self.cancelled = False
        self.error: BaseException | None = None
        self.done = False
        self.pbar = _CancelableProgress(
            total=100, desc=what, cancel_callback=self.cancel
        )
        self.worker = create_worker(
            _drive,
            make_steps,
            self._cancel,
            _start_thread=False,
            _connect={
                "yielded": self._on_yield,
                "returned": self._on_returned,
                "errored": self._on_error,  # a notification, not a re-raise
                "finished": self._on_finished,
            },
        )

    def start(self) -> StepsJob:
        if not StepsJob.running_jobs:
            _cancel_on_quit()
        StepsJob.running_jobs.add(self)
        self.worker.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next step; its partial file is removed."""
        self._cancel.set()
        if self._on_cancel is not None:
            self._on_cancel()  # e.g. stop a run's blocks at once

    @property
    def running(self) -> bool:
        return not self.done

    def _on_yield(self, step: tuple[int, int]) -> None:
        done, total = step
        if self.pbar.n != _percent(done, total):
            self.pbar.update(_percent(done, total) - self.pbar.n)
        self.pbar.set_description(
            f"{self.what}: {format_bytes(done)} of {format_bytes(total)}"
        )
        if self._on_step is not None:
            self._on_step(step)

    def _on_returned(self, value: Any) -> None:
        if value is _CANCELLED:
            self.cancelled = True
            show_info(f"{self.what} cancelled; the partial file was removed.")
            return
        if self._on_done is None:
            return
        try:
            self._on_done(value)
        except Exception as exc:
            self.error = exc
            notify_error(self.what, exc)

    def _on_error(self, exc: BaseException) -> None:
        self.error = exc
        notify_error(self.what, exc)

    def _on_finished(self) -> None:
        self.done = True
        StepsJob.running_jobs.discard(self)
        self.pbar.close()
        on_end = self._on_end
        # Drop the callbacks: they hold layers and images, and a finished job
        # kept by its widget must not keep a removed layer's file alive.
        self._on_done = self._on_end = self._on_step = self._on_cancel = None
        if on_end is not None:
            on_end()


def _cancel_on_quit() -> None:
    """Quitting napari cancels running jobs, so their partial files go."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None and not getattr(app, "_ndi_cancel_on_quit", False):
        app.aboutToQuit.connect(cancel_all_jobs)
        app._ndi_cancel_on_quit = True


def cancel_all_jobs(timeout: float = 10.0) -> None:
    """Cancel running copies and saves and wait for their threads to end."""
    for job in list(StepsJob.running_jobs):
        job.cancel()
    deadline = time.monotonic() + timeout
    from qtpy.QtCore import QThreadPool

    QThreadPool.globalInstance().waitForDone(int(timeout * 1000))
    while StepsJob.running_jobs and time.monotonic() < deadline:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()
    StepsJob.running_jobs.clear()


def copy_source(layer: Layer) -> Any:
    """What copying ``layer`` copies: its whole disk image, or its data."""
    if layer.rgb:
        raise ValueError(
            f"layer {layer.name!r} is RGB: disk images hold one value per "
            "pixel; split the colours into channels first"
        )
    img = disk_image_of(layer)
    if img is not None:
        if img.closed:
            raise ValueError(
                f"the disk image of layer {layer.name!r} ({str(img.path)!r}) "
                "is closed; reopen the file"
            )
        return img
    return level0(layer)


def start_copy(
    viewer: Viewer,
    layer: Layer,
    on_done: Callable[[DiskImage, list[Layer]], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> StepsJob:
    """Copy ``layer`` into a scratch disk image in a worker; add its layers."""
    source = copy_source(layer)
    name = f"{layer.name} (disk image)"

    def done(image: DiskImage) -> None:
        new_layers = add_disk_image(viewer, image, name)
        if not isinstance(source, DiskImage):
            for new in new_layers:  # keep the placement of the in-memory layer
                if new.ndim == layer.ndim:
                    new.scale = layer.scale
                    new.translate = layer.translate
                    new.contrast_limits = layer.contrast_limits
        show_info(
            f"copied {layer.name!r} to the disk image {str(image.path)!r} "
            f"({format_bytes(image.nbytes)})"
        )
        if on_done is not None:
            on_done(image, new_layers)

    return StepsJob(
        lambda: ndi.iter_copy(source), f"copy {layer.name!r}", done, on_end
    ).start()


# --- Copy to disk image -----------------------------------------------------
class CopyToDiskImage(Container):
    """Copy an image layer into a scratch disk image (IPSDK util.copyImg)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(viewer)
        self.copy_button = PushButton(text="Copy to disk image")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = _status_label()
        super().__init__(
            widgets=[self.layer, self.copy_button, self.cancel_button, self.status]
        )
        self.job: StepsJob | None = None
        self.copy_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)

    def start(self, _value: Any = None) -> StepsJob | None:
        layer = self.layer.value
        if layer is None:
            show_warning("Copy to disk image: choose an image layer first.")
            return None
        try:
            self.job = start_copy(self.viewer, layer, on_end=self._ended)
        except (OSError, ValueError) as exc:
            notify_error(f"copy {layer.name!r}", exc)
            return None
        self.copy_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = f"copying {layer.name!r}..."
        return self.job

    def cancel(self, _value: Any = None) -> None:
        if self.job is not None:
            self.job.cancel()

    def _ended(self) -> None:
        self.copy_button.enabled = True
        self.cancel_button.enabled = False
        job = self.job
        if job is None:
            return
        if job.cancelled:
            self.status.value = "cancelled"
        elif job.error is not None:
            self.status.value = f"failed: {error_message(job.error)}"
        else:
            self.status.value = "done"


# --- Write pixel ------------------------------------------------------------
def parse_value(text: str) -> int | float:
    """``"12"`` -> 12, ``"1.5"`` -> 1.5; ValueError naming the text otherwise."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"pixel value {text!r} is not a number; type e.g. 255 or 0.5"
        ) from None


class WritePixel(Container):
    """Write one value into a disk image (IPSDK writePixel), typed or clicked."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(viewer)
        self.value = LineEdit(label="value", value="0")
        self.coords = {
            a: SpinBox(label=a, min=0, max=_MAX_INT, value=0) for a in "xyzct"
        }
        self.follow = CheckBox(text="follow the cursor", value=True)
        self.write_button = PushButton(text="Write pixel")
        self.click = CheckBox(text="click to write", value=False)
        super().__init__(
            widgets=[
                self.layer,
                self.value,
                *self.coords.values(),
                self.follow,
                self.write_button,
                self.click,
            ]
        )
        self.write_button.changed.connect(self.write)
        self.click.changed.connect(self._toggle_click)
        self.layer.changed.connect(self._from_slice)
        viewer.cursor.events.position.connect(self._from_cursor)
        viewer.dims.events.current_step.connect(self._from_slice)
        self._from_slice()

    # prefilling
    def _set_voxel(self, voxel: dict[str, int], axes: str) -> None:
        layer = self.layer.value
        sizes = image_sizes(layer)
        for a in axes:
            if 0 <= voxel[a] < sizes[a]:
                self.coords[a].value = voxel[a]

    def _from_cursor(self, _event: Any = None) -> None:
        layer = self.layer.value
        if layer is None or not self.follow.value:
            return
        self._set_voxel(world_voxel(layer, self.viewer.cursor.position), "xyzct")

    def _from_slice(self, _event: Any = None) -> None:
        layer = self.layer.value
        if layer is None:
            return
        self._set_voxel(world_voxel(layer, self.viewer.dims.point), "zct")

    # writing
    def write(self, _value: Any = None) -> bool:
        """Write the typed value at the typed voxel; True if written."""
        voxel = {a: w.value for a, w in self.coords.items()}
        return self.write_at(voxel)

    def write_at(self, voxel: dict[str, int]) -> bool:
        layer = self.layer.value
        if layer is None:
            show_warning("Write pixel: choose an image layer first.")
            return False
        try:
            value = parse_value(self.value.value)
        except ValueError as exc:
            notify_error("write pixel", exc)
            return False
        img = disk_image_of(layer)
        if img is None or not img.writable:
            self._offer_copy(layer, img, value, voxel)
            return False
        try:
            img.write_pixel(
                value, voxel["x"], voxel["y"], voxel["z"], voxel["c"], voxel["t"]
            )
        except (OSError, ValueError, IndexError, TypeError) as exc:
            notify_error(f"write pixel into {str(img.path)!r}", exc)
            return False
        self._refresh(img)
        return True

    def _refresh(self, img: DiskImage) -> None:
        for lay in self.viewer.layers:
            if disk_image_of(lay) is img:
                refresh_layer(lay)

    def _offer_copy(
        self, layer: Layer, img: DiskImage | None, value: Any, voxel: dict[str, int]
    ) -> None:
        if img is None:
            why = f"layer {layer.name!r} is in memory, not a disk image"
        else:
            why = f"{str(img.path)!r} is open read-only"
        message = (
            f"Cannot write a pixel: {why}. Copy it to a new disk image and "
            "write there? (Your file is not changed.)"
        )

        # napari keeps every notification: hold the layer weakly, so an
        # offer nobody answered does not keep a removed layer's data alive.
        layer_ref = weakref.ref(layer)

        def accept(_toast: Any = None) -> None:
            source = layer_ref()
            if source is None or source not in self.viewer.layers:
                show_warning("Copy and write: the layer was removed meanwhile.")
                return
            self.copy_and_write(source, value, voxel)

        notification_manager.dispatch(
            Notification(
                message,
                severity=NotificationSeverity.WARNING,
                actions=[("Copy and write", accept)],
            )
        )

    def copy_and_write(
        self, layer: Layer, value: Any, voxel: dict[str, int]
    ) -> StepsJob | None:
        """Copy ``layer`` to a scratch disk image, then write into the copy."""

        def done(image: DiskImage, new_layers: list[Layer]) -> None:
            target = next(
                (
                    lay
                    for lay in new_layers
                    if lay.metadata.get("channel", 0) == voxel["c"]
                ),
                new_layers[0],
            )
            self.layer.reset_choices()
            self.layer.value = target
            self.viewer.layers.selection.active = target
            image.write_pixel(
                value, voxel["x"], voxel["y"], voxel["z"], voxel["c"], voxel["t"]
            )
            self._refresh(image)

        try:
            self.job = start_copy(self.viewer, layer, on_done=done)
        except (OSError, ValueError) as exc:
            notify_error(f"copy {layer.name!r}", exc)
            return None
        return self.job

    # click to write
    def _toggle_click(self, on: bool) -> None:
        callbacks = self.viewer.mouse_drag_callbacks
        if on and self._on_click not in callbacks:
            callbacks.append(self._on_click)
        elif not on and self._on_click in callbacks:
            callbacks.remove(self._on_click)

    def _on_click(self, viewer: Viewer, event: Any) -> None:
        if event.type != "mouse_press" or getattr(event, "button", 1) != 1:
            return
        try:
            layer = self.layer.value
        except RuntimeError:  # the widget was closed: stop listening
            viewer.mouse_drag_callbacks.remove(self._on_click)
            return
        if layer is None:
            show_warning("Click to write: choose an image layer first.")
            return
        if viewer.dims.ndisplay != 2:
            show_warning(
                "Click to write works in the 2D view, where a click names one "
                "voxel: switch to 2D (the 2D/3D button) or type the coordinates."
            )
            return
        data = layer.world_to_data(np.asarray(event.position, dtype=float))
        voxel = data_voxel(layer, data)
        sizes = image_sizes(layer)
        if not all(0 <= voxel[a] < sizes[a] for a in "xy"):
            return  # a click beside the image: nothing to write
        for a, w in self.coords.items():
            w.value = voxel[a]
        self.write_at(voxel)


# --- Extract plane ----------------------------------------------------------
def default_stride(size_x: int, size_y: int, target: int = EXTRACT_TARGET) -> int:
    """Smallest stride keeping both sides of a plane at most ``target`` px."""
    return max(1, -(-max(size_x, size_y) // target))


class ExtractPlane(Container):
    """Read a strided part of a plane into memory (IPSDK loadPlan)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(viewer, disk_images_only=True)
        self.fields = {
            name: SpinBox(label=name.replace("_", " "), min=lo, max=_MAX_INT)
            for name, lo in (
                ("z", 0), ("c", 0), ("t", 0),
                ("size_x", 1), ("size_y", 1),
                ("offset_x", 0), ("offset_y", 0),
                ("stride_x", 1), ("stride_y", 1),
            )
        }  # fmt: skip
        self.fields["size_x"].tooltip = "width of the region in image pixels"
        self.fields["size_y"].tooltip = "height of the region in image pixels"
        self.reset_button = PushButton(text="Current slice, whole plane")
        self.extract_button = PushButton(text="Extract plane")
        self.status = _status_label()
        super().__init__(
            widgets=[
                self.layer,
                *self.fields.values(),
                self.reset_button,
                self.extract_button,
                self.status,
            ]
        )
        self.layer.changed.connect(self.prefill)
        self.reset_button.changed.connect(self.prefill)
        self.extract_button.changed.connect(self.extract)
        viewer.dims.events.current_step.connect(self._slice_changed)
        for name in ("size_x", "size_y", "stride_x", "stride_y"):
            self.fields[name].changed.connect(self._show_result_size)
        self.prefill()

    def _slice_changed(self, _event: Any = None) -> None:
        layer = self.layer.value
        if layer is not None:
            voxel = world_voxel(layer, self.viewer.dims.point)
            sizes = image_sizes(layer)
            for a in "zct":
                if 0 <= voxel[a] < sizes[a]:
                    self.fields[a].value = voxel[a]

    def prefill(self, _value: Any = None) -> None:
        """Current slice, the whole plane, a stride keeping <= ~1024 px."""
        layer = self.layer.value
        if layer is None:
            return
        sizes = image_sizes(layer)
        stride = default_stride(sizes["x"], sizes["y"])
        f = self.fields
        f["size_x"].value, f["size_y"].value = sizes["x"], sizes["y"]
        f["offset_x"].value = f["offset_y"].value = 0
        f["stride_x"].value = f["stride_y"].value = stride
        self._slice_changed()
        self._show_result_size()

    def _out_size(self) -> tuple[int, int]:
        f = {k: w.value for k, w in self.fields.items()}
        return (
            -(-f["size_x"] // f["stride_x"]),
            -(-f["size_y"] // f["stride_y"]),
        )

    def _show_result_size(self, _value: Any = None) -> None:
        nx, ny = self._out_size()
        self.status.value = f"result: {nx} x {ny} pixels"

    def extract(self, _value: Any = None) -> Image | None:
        layer = self.layer.value
        if layer is None:
            show_warning("Extract plane: choose an image layer first.")
            return None
        img = disk_image_of(layer)
        if img is None:
            show_warning(
                f"Extract plane: layer {layer.name!r} is not a disk image, its "
                "pixels are already in memory. Open the file with this plugin "
                "or copy the layer to a disk image first."
            )
            return None
        f = {k: w.value for k, w in self.fields.items()}
        nx, ny = self._out_size()
        try:
            plane = img.load_plane(
                z=f["z"], c=f["c"], t=f["t"], size_x=nx, size_y=ny,
                offset_x=f["offset_x"], offset_y=f["offset_y"],
                stride_x=f["stride_x"], stride_y=f["stride_y"],
            )  # fmt: skip
        except (OSError, ValueError, IndexError, TypeError) as exc:
            notify_error(f"extract a plane of {str(img.path)!r}", exc)
            return None
        scale = np.asarray(layer.scale[-2:], dtype=float)
        translate = np.asarray(layer.translate[-2:], dtype=float)
        offset = np.array([f["offset_y"], f["offset_x"]], dtype=float)
        stride = np.array([f["stride_y"], f["stride_x"]], dtype=float)
        name = (
            f"{layer.name} z={f['z']} c={f['c']} t={f['t']}"
            f" (stride {f['stride_x']}x{f['stride_y']})"
        )
        new = self.viewer.add_image(
            plane,
            name=name,
            scale=tuple(stride * scale),
            translate=tuple(translate + offset * scale),
            colormap=layer.colormap,
            contrast_limits=layer.contrast_limits,
        )
        self.status.value = f"extracted {plane.shape[1]} x {plane.shape[0]} pixels"
        return new


# --- Save as TIFF / RAW -----------------------------------------------------
def iter_save(source: Any, path: str | os.PathLike[str], byte_order: str = "<") -> Any:
    """Core steps saving ``source`` to ``path`` as TIFF or RAW, by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".tif", ".tiff"):
        return ndi.iter_save_tiff(source, path)
    if suffix == ".raw":
        return ndi.iter_save_raw(source, path, byte_order)
    raise ValueError(
        f"cannot save to {str(path)!r}: unknown format {suffix or '(no suffix)'}; "
        "end the name with .tif, .tiff or .raw"
    )


_BYTE_ORDERS = [("little-endian (<)", "<"), ("big-endian (>)", ">")]


class SaveImage(Container):
    """Save a layer to an uncompressed TIFF or a RAW file, streaming."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(viewer)
        self.path = FileEdit(
            label="save as", mode="w", filter="Images (*.tif *.tiff *.raw)"
        )
        self.byte_order = ComboBox(label="RAW byte order", choices=_BYTE_ORDERS)
        self.save_button = PushButton(text="Save")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = _status_label()
        super().__init__(
            widgets=[
                self.layer,
                self.path,
                self.byte_order,
                self.save_button,
                self.cancel_button,
                self.status,
            ]
        )
        self.job: StepsJob | None = None
        self.save_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.layer.changed.connect(self._suggest_name)

    def _suggest_name(self, _value: Any = None) -> None:
        layer = self.layer.value
        img = disk_image_of(layer)
        if img is not None and not img.is_scratch and str(self.path.value) in ("", "."):
            self.path.value = img.path.with_name(img.path.stem + "-copy.tif")

    def start(self, _value: Any = None) -> StepsJob | None:
        layer = self.layer.value
        if layer is None:
            show_warning("Save: choose an image layer first.")
            return None
        path = Path(self.path.value).expanduser()
        if str(self.path.value) in ("", "."):
            show_warning("Save: choose a file name ending in .tif, .tiff or .raw.")
            return None
        attributes = {
            "name": layer.name,
            "metadata": layer.metadata,
            "rgb": layer.rgb,
            "multiscale": layer.multiscale,
        }
        try:
            source = layer_source(layer.data, attributes)
        except ValueError as exc:
            notify_error(f"save {layer.name!r}", exc)
            return None
        what = f"save {layer.name!r} to {str(path)!r}"
        try:
            iter_save(source, path).close()  # checks the suffix early
        except ValueError as exc:
            notify_error(what, exc)
            return None
        byte_order = self.byte_order.value

        def done(saved: Path) -> None:
            show_info(f"saved {layer.name!r} to {str(saved)!r}")
            self.status.value = f"saved {saved.name}"

        self.job = StepsJob(
            lambda: iter_save(source, path, byte_order), what, done, self._ended
        ).start()
        self.save_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "saving..."
        return self.job

    def cancel(self, _value: Any = None) -> None:
        if self.job is not None:
            self.job.cancel()

    def _ended(self) -> None:
        self.save_button.enabled = True
        self.cancel_button.enabled = False
        if self.job is not None and self.job.cancelled:
            self.status.value = "cancelled"
        elif self.job is not None and self.job.error is not None:
            self.status.value = f"failed: {error_message(self.job.error)}"


# --- Open RAW ---------------------------------------------------------------
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
            label="RAW file", mode="r", filter="RAW files (*.raw);;All files (*)"
        )
        self.dtype = ComboBox(label="pixel type", choices=_TYPE_CHOICES, value="uint8")
        self.sizes = {
            a: SpinBox(label=f"size {a}", min=1, max=_MAX_INT, value=1) for a in "xyzct"
        }
        self.offset = SpinBox(label="header bytes", min=0, max=_MAX_INT, value=0)
        self.byte_order = ComboBox(label="byte order", choices=_BYTE_ORDERS)
        self.writable = CheckBox(text="edit the file in place (r+)", value=False)
        self.size_check = _status_label()
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
            g = Geometry.from_filename(Path(self.path.value).name)
            self.dtype.value = g.dtype.name
            for a, n in zip("xyzct", g.sizes, strict=True):
                self.sizes[a].value = min(n, _MAX_INT)
        self.check_size()

    def check_size(self, _value: Any = None) -> None:
        """Show expected vs actual file size when they differ."""
        path = Path(self.path.value)
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
        path = Path(self.path.value)
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


# --- Disk-image directory ---------------------------------------------------
def mount_fstype(folder: Path, mounts: str = "/proc/mounts") -> str | None:
    """File-system type of the mount holding ``folder`` (from /proc/mounts)."""
    p = Path(folder).absolute()
    base = p
    while not base.exists() and base != base.parent:
        base = base.parent
    p = base.resolve() / p.relative_to(base)  # symlinks of what exists
    best, fstype = "", None
    try:
        with open(mounts, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                if (
                    str(p) == point
                    or str(p).startswith(point.rstrip("/") + "/")
                    or point == "/"
                ) and len(point) >= len(best):
                    best, fstype = point, parts[2]
    except OSError:
        return None
    return fstype


def open_disk_images(viewer: Viewer) -> list[DiskImage]:
    seen: dict[int, DiskImage] = {}
    for lay in viewer.layers:
        img = disk_image_of(lay)
        if img is not None and not img.closed:
            seen[id(img)] = img
    return list(seen.values())


def folder_warnings(folder: Path, viewer: Viewer) -> list[str]:
    """Why ``folder`` is a poor disk-image directory (RAM, too little space)."""
    out = []
    if mount_fstype(folder) in ("tmpfs", "ramfs"):
        out.append(
            f"{str(folder)!r} is in RAM (tmpfs): disk images there use memory, "
            "not disk. Choose a folder on a disk."
        )
    images = open_disk_images(viewer)
    if images:
        largest = max(images, key=lambda i: i.nbytes)
        try:
            p = folder
            while not p.exists() and p != p.parent:
                p = p.parent
            free = shutil.disk_usage(p).free
        except OSError:
            free = None
        if free is not None and free < largest.nbytes:
            out.append(
                f"{str(folder)!r} has {format_bytes(free)} free, less than the "
                f"largest open image ({format_bytes(largest.nbytes)}, "
                f"{largest.path.name}): a copy of it would not fit. Free some "
                "space or choose another folder."
            )
    return out


class DiskImageDir(Container):
    """Where new disk images go: show, choose, remember."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.current = _status_label()
        self.folder = FileEdit(label="new folder", mode="d")
        self.use_button = PushButton(text="Use this folder")
        self.warning = _status_label()
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
        p = folder
        while not p.exists() and p != p.parent:
            p = p.parent
        try:
            free = format_bytes(shutil.disk_usage(p).free)
        except OSError:
            free = "unknown"
        self.current.value = f"disk images go to: {folder}\nfree space: {free}"
        problems = folder_warnings(folder, self.viewer)
        self.warning.value = "\n".join(problems)
        return problems

    def use(self, _value: Any = None) -> Path | None:
        try:
            folder = ndi.set_disk_image_dir(self.folder.value)
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


# --- Image info -------------------------------------------------------------
def describe_layer(layer: Layer | None) -> str:
    """What a user wants to know about the image behind ``layer``."""
    if layer is None:
        return "no layer selected"
    img = disk_image_of(layer)
    if img is None:
        data = level0(layer)
        nbytes = math.prod(data.shape) * np.dtype(data.dtype).itemsize
        return "\n".join(
            [
                f"layer: {layer.name}",
                "disk image: no (pixels in memory)",
                f"type: {type(data).__name__}",
                f"shape: {tuple(data.shape)}",
                f"dtype: {np.dtype(data.dtype)}",
                f"size in memory: {format_bytes(nbytes)}",
            ]
        )
    if img.closed:
        return f"layer: {layer.name}\ndisk image: closed ({img.path})"
    try:
        on_disk = format_bytes(img.path.stat().st_size)
    except OSError as exc:
        on_disk = f"unknown ({error_message(exc)})"
    if img.is_scratch:
        owner = "scratch (made by this plugin; deleted when closed)"
    else:
        access = "writable" if img.writable else "read-only"
        owner = f"your {img.kind.upper()} file, {access}"
    lines = [
        f"layer: {layer.name}",
        f"file: {img.path}",
        "disk image: yes",
        f"kind: {owner}",
        f"geometry: {img.geometry}",
        f"dtype: {img.dtype} ({'big' if img.byte_order == '>' else 'little'}-endian"
        " in the file)",
        f"pixels: {format_bytes(img.nbytes)}, size on disk: {on_disk}",
    ]
    if layer.metadata.get("channel") is not None and img.shape[1] > 1:
        lines.append(f"channel: {layer.metadata['channel']} of {img.shape[1]}")
    return "\n".join(lines)


class ImageInfo(Container):
    """File, kind, geometry and size of the selected layer's image."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.info = _status_label()
        super().__init__(widgets=[self.info])
        viewer.layers.selection.events.active.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        self.refresh()

    def refresh(self, _event: Any = None) -> str:
        self.info.value = describe_layer(self.viewer.layers.selection.active)
        return self.info.value
