"""The "Process" tool: run an operation of :mod:`napari_diskimage.process`.

Choose a layer, an operation and its parameters (prefilled: Otsu's value
of a bounded sample for a threshold, the region in view for a crop), then
Run.  The result is a new scratch disk image, or with "write to: OME-Zarr
file..." an OME-Zarr store at a chosen path (``out=``), added as a layer at
once and filled block by block while the run goes on in a worker thread
(napari's progress bar, Cancel here or in the activity dock).  A cancelled
or failed run removes its layer and its file (for an OME-Zarr: its
temporary folder; nothing is left at the path).  The result is itself a disk-image
layer, so steps chain: the next operation takes it as input.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import napari.viewer
import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Layer
from napari.utils.notifications import show_info, show_warning

from .. import _cluster, process
from .._diskimage import DiskImage
from .._napari.labels import KEY as LABELS_KEY
from .._napari.layers import (
    copy_source,
    disk_image_of,
    image_sizes,
    layer_axes,
    level0,
)
from .._napari.notify import error_message, notify_error
from ..display import display_axes, sample_values
from ..process._out import make_run_to
from ._common import (
    NO_IMAGE_LAYER,
    LayerChoice,
    add_disk_image,
    apply_saved_settings,
    elide_middle,
    fit_labels,
    refresh_layer,
    status_label,
    unwrap,
)
from ._job import StepsJob, close_in_background
from .run_on import RunOn

__all__ = ["ProcessImage"]

#: Seconds between refreshes of the result layer while it is written.
REFRESH_SECONDS = 0.3
#: The threshold's phase choice: (shown text, value).
PHASES = [
    ("dark phase (value <= Otsu)", "dark"),
    ("bright phase (value >= Otsu)", "bright"),
]
_MAX_INT = 2**31 - 1
#: Where a result goes: (shown text, value).
WRITE_TO = [
    ("scratch disk image", "scratch"),
    ("OME-Zarr file...", "ome-zarr"),
]


class ProcessImage(Container):
    """Process a layer out of core into a new disk-image layer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(viewer, label="input")
        self.hint = status_label()
        self.hint.visible = False
        self.operation = ComboBox(
            label="operation",
            choices=[(op.title, key) for key, op in process.OPERATIONS.items()],
            value="gaussian",
        )
        elide_middle(self.operation.native)
        self.parameters: Container[Any] = Container(labels=True)
        self.run_on = RunOn()
        self.write_to = ComboBox(label="write to", choices=WRITE_TO, value="scratch")
        self.write_to.tooltip = (
            "a scratch disk image (deleted when closed), or an OME-Zarr store "
            "(multiscale, chunked) that other tools read"
        )
        self.out_path = FileEdit(
            mode=FileDialogMode.OPTIONAL_FILE, label="OME-Zarr", filter="*.zarr"
        )
        self.out_path.tooltip = "the store to write, e.g. result.ome.zarr"
        self.out_path.visible = False
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = status_label()
        # labels above the drop-downs: whole layer and operation names fit
        # the panel's width at napari's default window size
        super().__init__(
            labels=False,
            widgets=[
                Label(value="input"),
                self.layer,
                self.hint,
                Label(value="operation"),
                self.operation,
                self.parameters,
                self.run_on,
                Label(value="write to"),
                self.write_to,
                self.out_path,
                self.run_button,
                self.cancel_button,
                self.status,
            ],
        )
        self.fields: dict[str, Any] = {}
        #: The threshold's "dark phase / bright phase" choice (a prefill:
        #: Otsu's value goes to high for the dark phase, to low for the
        #: bright one); None for other operations.
        self.phase: ComboBox | None = None
        self.job: StepsJob | None = None
        self.run: process.Run | None = None
        #: Block size (x, y, z) of the operations that take one; None: the
        #: engine's choice (scripts and tests set it).
        self.block_shape: tuple[int, int, int] | None = None
        self.result_layers: list[Layer] = []
        self._last_refresh = 0.0
        self.operation.changed.connect(self._build_fields)
        self.write_to.changed.connect(self._fit_write_to)
        self.layer.changed.connect(self._fit_layer)
        self.layer.changed.connect(self._prefill)
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self._build_fields()
        self._fit_layer()

    def _fit_layer(self, _value: Any = None) -> None:
        """Say in one line why nothing can run on the chosen layer, if so."""
        reason = ""
        if self.layer.value is None:
            reason = NO_IMAGE_LAYER
        self.hint.value = reason
        self.hint.visible = bool(reason)
        running = self.job is not None and self.job.running
        self.run_button.enabled = not reason and not running

    def _fit_write_to(self, _value: Any = None) -> None:
        self.out_path.visible = self.write_to.value == "ome-zarr"

    def out(self) -> str | None:
        """The OME-Zarr store chosen to write the result to (None: scratch).

        A name without ``.zarr`` gets ``.ome.zarr`` (what the file dialog
        returns when the suffix was not typed)."""
        if self.write_to.value != "ome-zarr":
            return None
        text = str(self.out_path.line_edit.value or "").strip()
        if not text:
            raise ValueError(
                "write to OME-Zarr: choose the store to write (e.g. "
                "result.ome.zarr) with the file button"
            )
        return text if text.endswith(".zarr") else text + ".ome.zarr"

    # --- fields ----------------------------------------------------------
    def _build_fields(self, _value: Any = None) -> None:
        op = process.OPERATIONS[self.operation.value]
        self.parameters.clear()
        self.fields = {}
        self.phase = None
        if self.operation.value == "threshold":
            self.phase = ComboBox(label="phase", choices=PHASES, value="dark")
            self.phase.tooltip = (
                "which phase the mask keeps: Otsu's value of a sample is "
                "prefilled as high (dark) or low (bright)"
            )
            self.phase.changed.connect(self._prefill)
            self.parameters.append(self.phase)
        for p in op.parameters:
            widget = self._field(p)
            widget.tooltip = p.help or None
            self.fields[p.name] = widget
            self.parameters.append(widget)
        fit_labels(self.parameters.native)
        self._prefill()

    def _field(self, p: process.Parameter) -> Any:
        label = p.name.replace("_", " ")
        if p.kind == "int":
            return SpinBox(
                label=label,
                value=p.default,
                min=int(p.minimum if p.minimum is not None else -_MAX_INT),
                max=int(p.maximum if p.maximum is not None else _MAX_INT),
            )
        if p.kind == "float":
            return FloatSpinBox(
                label=label,
                value=p.default,
                min=p.minimum if p.minimum is not None else -1e300,
                max=p.maximum if p.maximum is not None else 1e300,
                step=0.1,
            )
        if p.kind == "optional float":
            return LineEdit(label=label, value="")
        if p.kind == "choice":
            return ComboBox(label=label, choices=list(p.choices), value=p.default)
        if p.kind == "bool":
            return CheckBox(text=label, value=p.default)
        if p.kind == "image or number":
            return LineEdit(label=label, value=str(p.default))
        raise AssertionError(p.kind)  # pragma: no cover - OPERATIONS is fixed

    def _prefill(self, _value: Any = None) -> None:
        """Sensible values for the selected layer (no full pass over it)."""
        layer = self.layer.value
        if layer is None:
            return
        key = self.operation.value
        if key == "threshold":
            value = self.sample_otsu(layer)
            if value is not None:
                dark = self.phase is None or self.phase.value == "dark"
                self.fields["high" if dark else "low"].value = f"{value:.6g}"
                self.fields["low" if dark else "high"].value = ""
        elif key == "crop":
            sizes = image_sizes(layer)
            for a in "xyz":
                self.fields[f"size_{a}"].max = sizes[a]
                self.fields[a].max = sizes[a] - 1
            box = self._view_box(layer, sizes)
            for a in "xyz":
                self.fields[a].value = box[a][0]
                self.fields[f"size_{a}"].value = box[a][1]

    def sample_otsu(self, layer: Layer) -> float | None:
        """Otsu's threshold of a bounded sample of ``layer`` (a prefill)."""
        from skimage.filters import threshold_otsu

        img = disk_image_of(layer)
        if img is not None and not img.closed:
            values = sample_values(img, layer.metadata.get("channel") or 0)
        else:
            data = np.asarray(level0(layer))
            step = max(1, math.ceil((data.size / (1 << 22)) ** (1 / data.ndim)))
            values = data[(slice(None, None, step),) * data.ndim].ravel()
        if values.size == 0 or values.min() == values.max():
            return None
        return float(threshold_otsu(values))

    def _view_box(self, layer: Layer, sizes: dict[str, int]) -> dict[str, tuple]:
        """(start, size) along x, y, z of the region in view; all of z.

        napari's ``corner_pixels`` are the visible corners at the level
        shown; times that level's downsampling they are full-resolution
        pixels.
        """
        corners = np.asarray(layer.corner_pixels, dtype=float)
        if layer.multiscale:
            corners = corners * np.asarray(layer.downsample_factors[layer.data_level])
        box: dict[str, tuple[int, int]] = {"z": (0, sizes["z"])}
        for axis, (lo, hi) in zip(layer_axes(layer), corners.T, strict=False):
            if axis in "xy":
                start = int(max(0, min(lo, sizes[axis] - 1)))
                stop = int(max(start + 1, min(hi + 1, sizes[axis])))
                box[axis] = (start, stop - start)
        for axis in "xy":
            box.setdefault(axis, (0, sizes[axis]))
        return box

    def parameter_values(self) -> dict[str, Any]:
        """The parameters as the operation takes them."""
        op = process.OPERATIONS[self.operation.value]
        values: dict[str, Any] = {}
        for p in op.parameters:
            widget = self.fields[p.name]
            if p.kind == "optional float":
                text = str(widget.value).strip()
                values[p.name] = None if not text else _number(text, p.name)
            elif p.kind == "image or number":
                values[p.name] = self._image_or_number(str(widget.value))
            else:
                values[p.name] = widget.value
        return values

    def _image_or_number(self, text: str) -> Any:
        text = text.strip()
        if text in self.viewer.layers:
            return copy_source(self.viewer.layers[text])
        return _number(text, "b")

    # --- running ---------------------------------------------------------
    def start(self, _value: Any = None) -> StepsJob | None:
        """Start the run; the result layer appears at once.  Returns the job."""
        layer = self.layer.value
        if layer is None:
            show_warning("Process: choose an input layer first.")
            return None
        if self.job is not None and self.job.running:
            show_warning("Process: a run is going on; wait for it or cancel it.")
            return None
        key = self.operation.value
        op = process.OPERATIONS[key]
        what = f"{op.title} of {layer.name!r}"
        try:
            source = copy_source(layer)
            spec = self.run_on.spec()
            params = self.parameter_values()
            if self.block_shape is not None and op.takes_block_shape:
                params["block_shape"] = self.block_shape
            run = make_run_to(
                op.make_run, (source,), params, self.out(),
                labels=op.labels_result,
            )  # fmt: skip
            output = run.output
            if output is None:  # every operation the tool lists writes an image
                raise TypeError(f"{key} gives no image to show")
        except (OSError, ValueError, TypeError, IndexError) as exc:
            notify_error(what, exc)
            self.status.value = f"not started: {error_message(exc)}"
            return None
        run.close_output_on_failure = False  # see _ended: layer first, then file
        self.run = run
        name = f"{layer.name} {key}"
        self._in_store = self.write_to.value == "ome-zarr"
        self._key = key
        self.result_layers = self._add_result(output, name, layer, key)
        self.cluster_report: list[str] = []
        self.job = StepsJob(
            lambda: _cluster.steps_on(
                spec,
                iter(run),
                paths=[
                    i.path for i in (source, run.output) if isinstance(i, DiskImage)
                ],
                cancelled=run.cancel_event.is_set,
                say=self.cluster_report.append,
            ),
            what,
            self._done,
            self._ended,
            on_step=self._step,
            on_cancel=run.cancel,
        ).start()
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = f"running {op.title}..."
        self._started = time.perf_counter()
        return self.job

    def _add_result(
        self, image: DiskImage, name: str, source: Layer, key: str
    ) -> list[Layer]:
        if process.OPERATIONS[key].labels_result and not self._in_store:
            # ids, not intensities: a labels layer painting into the result's
            # file, as the Labels tool makes (paint, undo, Save labels)
            from .._napari.labels import DiskLabels

            like = source if source.ndim == len(display_axes(image)) else None
            layer = DiskLabels.attach(self.viewer, image, name=name, like=like)
            if source in self.viewer.layers:
                self.viewer.layers.selection.active = source
            return [layer]
        layers = self._add_layers(image, name, key)
        for new in layers:  # hidden until its first block is written: a
            new.visible = False  # result of zeros would cover its input
        for new in layers:
            if new.ndim == source.ndim:
                new.translate = source.translate
                if disk_image_of(source) is None:
                    new.scale = source.scale
        for new in layers:  # the input stays the selected layer
            with contextlib.suppress(Exception):
                self.viewer.layers.selection.discard(new)
        if source in self.viewer.layers:
            self.viewer.layers.selection.active = source
        return layers

    def _add_layers(self, image: DiskImage, name: str, key: str) -> list[Layer]:
        """The layers of a result: ids of a labels operation written to an
        OME-Zarr store are a (read-only) labels layer of the store's
        levels, with label colours; intensities are image layers."""
        if not process.OPERATIONS[key].labels_result:
            return add_disk_image(self.viewer, image, name)
        from .._napari.reader import disk_image_layers

        shown = ("name", "scale", "axis_labels", "units", "metadata")
        layers = []
        for data, kwargs, _ in disk_image_layers(image, name=name):
            # napari 0.9's Labels takes a one-level list with multiscale=True
            # for a stack of 2D levels: one level is given as itself
            levels = data if len(data) > 1 else data[0]
            layers.append(
                self.viewer.add_labels(
                    levels,
                    multiscale=len(data) > 1,
                    **{k: v for k, v in kwargs.items() if k in shown},
                )
            )
        return layers

    def _step(self, step: tuple[int, int]) -> None:
        if step[0] > 0:
            for lay in self.result_layers:
                if not lay.visible and lay in self.viewer.layers:
                    lay.visible = True
        now = time.perf_counter()
        if now - self._last_refresh >= REFRESH_SECONDS:
            self._last_refresh = now
            self._refresh_results()

    def _refresh_results(self) -> None:
        for lay in self.result_layers:
            if lay in self.viewer.layers:
                refresh_layer(lay)
                labels = lay.metadata.get(LABELS_KEY)
                if labels is not None:  # a large plane's overview too
                    labels._refresh_overview()

    def _done(self, result: Any) -> None:
        if isinstance(result, DiskImage) and self.result_layers:
            shown = self.result_layers[0].metadata.get("disk_image")
            if shown is not result:
                # out=: the store was renamed to its name; show it from there
                self._show_saved(result)
        for lay in self.result_layers:
            if lay in self.viewer.layers:
                lay.visible = True
        self._refresh_results()
        seconds = time.perf_counter() - self._started
        run = self.run
        extra = ""
        if run is not None and "n_labels" in run.info:
            extra = f", {run.info['n_labels']} components"
        what = self.job.what if self.job else "run"
        message = f"{what} done in {seconds:.1f} s{extra}"
        self.status.value = "\n".join([message, *self.cluster_report[-1:]])
        show_info(message)

    def _show_saved(self, image: DiskImage) -> None:
        old = self.result_layers
        names = [lay.name for lay in old]
        for lay in old:
            if lay in self.viewer.layers:
                self.viewer.layers.remove(lay)
        self.result_layers = self._add_layers(image, names[0], self._key)
        shown = old[0].metadata.get("disk_image") if old else None
        if isinstance(shown, DiskImage) and shown is not image:
            close_in_background(shown)  # the store as it was written
        source = self.layer.value
        for new in self.result_layers:
            if source is not None and new.ndim == source.ndim:
                new.translate = source.translate
                if disk_image_of(source) is None:
                    new.scale = source.scale
        if source is not None and source in self.viewer.layers:
            self.viewer.layers.selection.active = source

    def cancel(self, _value: Any = None) -> None:
        if self.job is not None:
            self.job.cancel()

    def _ended(self) -> None:
        self.run_button.enabled = not self.hint.value
        self.cancel_button.enabled = False
        job = self.job
        if job is None:
            return
        if job.cancelled or job.error is not None:
            for lay in self.result_layers:  # no result: no layer, then no file
                if lay in self.viewer.layers:
                    self.viewer.layers.remove(lay)
            self.result_layers = []
            if self.run is not None and self.run.output is not None:
                # its name, then its space, away from the GUI: freeing a
                # large file can block for minutes (discard)
                close_in_background(self.run.output)
            if job.cancelled or job.error is None:
                self.status.value = "cancelled; the output file was removed"
            else:
                self.status.value = f"failed: {error_message(job.error)}"
        self.run = None


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"{name}: {text!r} is neither a number nor a layer name; type e.g. "
            "2.5 or the name of a layer of the same size"
        ) from None
