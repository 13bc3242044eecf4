"""The "Measure" tool: a table of every labelled object, out of core.

Choose a labels layer (a disk image or in-memory labels), optionally an
intensity layer, and the properties; Measure runs
:func:`napari_diskimage.measure.regionprops_table` in a worker thread
(napari's progress bar, Cancel), with the voxel size taken from the
layer's scale.  The table becomes the labels layer's ``features`` (napari
shows an object's values in the status bar under the mouse), is shown
sortable (a click on a row centres the view on that object, at its plane,
and selects its label), as a histogram of any column (by default the
volume-weighted distribution of equivalent diameters) and can be exported
to CSV.  A 0/1 mask also gets its porosity and its per-slice profile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari.viewer
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton, Select
from napari.layers import Image, Labels, Layer

from .. import _cluster, measure
from .._diskimage import DiskImage
from .._napari.layers import copy_source, disk_image_of, level0
from .._napari.notify import notify_error, show_info
from ._common import (
    LayerChoice,
    apply_saved_settings,
    elide_middle,
    status_label,
    unwrap,
)
from ._job import JobTool, StepsJob
from ._plot import PlotCanvas
from ._table import FrameTable
from .run_on import RunOn

__all__ = ["DEFAULT_PROPERTIES", "MeasureLabels"]

#: Properties checked when the tool opens.
DEFAULT_PROPERTIES = (
    "label",
    "area",
    "bbox",
    "centroid",
    "equivalent_diameter_area",
    "touches_border",
)
#: Always measured: the table's key, and what a row click and the
#: default histogram need.
_ALWAYS = ("label", "area", "num_pixels", "centroid", "equivalent_diameter_area")
NO_LABELS_LAYER = "no labels layer: label a mask (Process > label) or open labels"
_NONE = "(none)"


def _source(layer: Layer) -> Any:
    """What to measure of ``layer``: its disk image, else its data."""
    img = disk_image_of(layer)
    if img is not None:
        if img.closed:
            raise ValueError(
                f"the disk image of layer {layer.name!r} ({str(img.path)!r}) is "
                "closed; reopen the file"
            )
        return img
    if isinstance(layer, Image):
        return copy_source(layer)  # refuses RGB
    return level0(layer)


class MeasureLabels(JobTool):
    """Measure every object of a labels layer; table, histogram, CSV."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        apply_saved_settings()
        self.viewer = viewer = unwrap(viewer)
        self.layer = LayerChoice(
            viewer, "labels", kinds=(Labels,), nullable=False, follow_selection=False
        )
        self.intensity = LayerChoice(viewer, "intensity", follow_selection=False)
        self.properties = Select(
            label="measure",
            choices=list(measure.PROPERTIES),
            value=list(DEFAULT_PROPERTIES),
        )
        from qtpy.QtWidgets import QSizePolicy

        self.properties.native.setSizePolicy(
            QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred
        )
        self.properties.native.setMinimumHeight(100)
        self.properties.native.setMaximumHeight(130)
        for row, name in enumerate(measure.PROPERTIES):
            item = self.properties.native.item(row)
            if item is not None:
                item.setToolTip(measure.PROPERTIES[name])
        self.spacing = status_label()
        self.run_on = RunOn()
        self.table_view = FrameTable()
        self.column = ComboBox(label="histogram of", choices=[])
        elide_middle(self.column.native)
        self.weighted = CheckBox(text="by volume", value=True)
        self.plot = PlotCanvas()
        self.porosity = status_label()
        self.profile_plot = PlotCanvas(height=1.8)
        self.export_button = PushButton(text="Export CSV...", enabled=False)
        super().__init__(
            "Measure",
            [self.layer, self.intensity, self.properties, self.spacing, self.run_on],
        )
        self.results = Container(
            labels=False,
            widgets=[
                Label(value="histogram of"),
                self.column,
                self.weighted,
                self.export_button,
                self.porosity,
            ],
        )
        self.results.margins = (0, 0, 0, 0)
        self.results.visible = False
        self.append(self.results)
        layout = self.native.layout()
        layout.addWidget(self.table_view)
        layout.addWidget(self.plot.native)
        layout.addWidget(self.profile_plot.native)
        self.table_view.setVisible(False)
        self.plot.native.setVisible(False)
        self.profile_plot.native.setVisible(False)
        self.table: Any = None
        self.profile: np.ndarray | None = None
        self.measured_layer: Layer | None = None
        self._run: Any = None
        self.cluster_report: list[str] = []
        self.layer.changed.connect(self._show_spacing)
        self.column.changed.connect(self.draw_histogram)
        self.weighted.changed.connect(self.draw_histogram)
        self.export_button.changed.connect(self._ask_export)
        self.table_view.row_clicked.connect(self.go_to_row)
        self._show_spacing()

    # --- what is measured ------------------------------------------------------
    def unavailable_reason(self) -> str:
        return NO_LABELS_LAYER if self.layer.value is None else ""

    def chosen_properties(self) -> list[str]:
        chosen = set(self.properties.value) | set(_ALWAYS)
        return [p for p in measure.PROPERTIES if p in chosen]

    def layer_spacing(self, layer: Layer | None = None) -> tuple[float, ...]:
        """The voxel size (z, y, x) or (y, x) of ``layer``, from its scale."""
        layer = self.layer.value if layer is None else layer
        if layer is None:
            return ()
        source = _source(layer)
        shape = np.shape(source) if disk_image_of(layer) is None else source.shape
        ndim = 3 if len(shape) >= 3 and shape[-3] > 1 else 2
        return tuple(float(s) for s in layer.scale[-ndim:])

    def _show_spacing(self, _value: Any = None) -> None:
        spacing = self.layer_spacing() if self.layer.value is not None else ()
        axes = "(z, y, x)" if len(spacing) == 3 else "(y, x)"
        self.spacing.value = (
            f"voxel size {axes}: {', '.join(f'{s:g}' for s in spacing)} "
            "(the layer's scale)"
            if spacing
            else ""
        )

    # --- the job ---------------------------------------------------------------
    def measure(self) -> StepsJob | None:
        """Measure the chosen layer (what the Measure button does).

        Returns the running job (None, with a notification, when the input
        is refused); when it is done, :attr:`table` holds the table and
        the labels layer's ``features`` too.
        """
        return self.start()

    def make_job(self) -> StepsJob | None:
        layer = self.layer.value
        what = f"Measure {layer.name!r}" if layer is not None else "Measure"
        try:
            if layer is None:
                raise ValueError(NO_LABELS_LAYER)
            labels = _source(layer)
            ilayer = self.intensity.value
            intensity = None if ilayer is None else _source(ilayer)
            props = self.chosen_properties()
            spec = self.run_on.spec()
            run = measure.measure_run(
                labels, intensity, props, spacing=self.layer_spacing(layer)
            )
        except (OSError, ValueError, TypeError) as exc:
            notify_error(what, exc)
            self.status.value = f"not started: {exc}"
            return None
        self._run = run
        self.cluster_report = []

        def measured() -> Any:
            table = yield from iter(run)
            profile = None
            labels_present = table["label"].to_numpy()
            if labels_present.size == 1 and labels_present[0] == 1:
                prun = measure.porosity_run(labels, 0)
                self._run = prun
                profile = yield from iter(prun)
            return table, profile

        def steps() -> Any:
            # on this machine, or on the dask scheduler / SLURM jobs of Run on
            return _cluster.steps_on(
                spec,
                measured(),
                paths=[i.path for i in (labels, intensity) if isinstance(i, DiskImage)],
                cancelled=lambda: (
                    self._run is not None and self._run.cancel_event.is_set()
                ),
                say=self.cluster_report.append,
            )

        self.measured_layer = layer
        return StepsJob(
            steps, what, self._done, self.job_ended, on_cancel=self._cancel_run
        ).start()

    def _cancel_run(self) -> None:
        if self._run is not None:
            self._run.cancel()

    def _done(self, result: tuple[Any, np.ndarray | None]) -> None:
        table, profile = result
        self.table = table
        self.profile = profile
        layer = self.measured_layer
        if layer is not None and layer in self.viewer.layers:
            features = table.copy()
            features.insert(0, "index", table["label"].to_numpy())
            layer.features = features
        self.table_view.set_frame(table)
        numeric = [
            c
            for c in table.columns
            if c != "label" and np.issubdtype(table[c].dtype, np.number)
        ]
        self.column.choices = numeric
        if "equivalent_diameter_area" in numeric:
            self.column.value = "equivalent_diameter_area"
        self.results.visible = True
        self.table_view.setVisible(True)
        self.plot.native.setVisible(True)
        self.export_button.enabled = True
        self.draw_histogram()
        if profile is not None:
            voxels = float(np.prod(self._shape_of(layer)))
            value = float(table["num_pixels"].iloc[0])
            self.porosity.value = f"a mask: porosity {value / voxels:.4f}"
            self.profile_plot.profile(profile, "slice (first axis)", "porosity")
            self.profile_plot.native.setVisible(True)
        else:
            self.porosity.value = ""
            self.profile_plot.native.setVisible(False)
        message = f"{len(table)} objects measured"
        self.status.value = "\n".join([message, *self.cluster_report[-1:]])
        _refit_section(self.native)
        show_info(f"{self.job.what if self.job else 'Measure'}: {message}")

    def _shape_of(self, layer: Layer | None) -> tuple[int, ...]:
        if layer is None:
            return ()
        source = _source(layer)
        return tuple(np.shape(source) if disk_image_of(layer) is None else source.shape)

    # --- results -----------------------------------------------------------------
    def draw_histogram(self, _value: Any = None) -> Any:
        """Draw the histogram of the chosen column (volume-weighted if
        ticked); returns (heights, edges), or None with no table."""
        table = self.table
        column = self.column.value
        if table is None or column is None or column not in table:
            return None
        weights = table["area"].to_numpy() if self.weighted.value else None
        ylabel = "volume fraction" if weights is not None else "objects"
        return self.plot.histogram(table[column].to_numpy(), weights, column, ylabel)

    def go_to_row(self, row: int) -> None:
        """Centre the view on the object of the table's ``row`` (its
        position in :attr:`table`), at its plane, and select its label."""
        if self.table is None or self.measured_layer is None:
            return
        layer = self.measured_layer
        record = self.table.iloc[row]
        ndim = sum(1 for c in self.table.columns if c.startswith("centroid-"))
        centre = [float(record[f"centroid-{i}"]) for i in range(ndim)]
        world = [
            c + float(t) for c, t in zip(centre, layer.translate[-ndim:], strict=True)
        ]
        dims = self.viewer.dims
        first = dims.ndim - ndim
        if ndim == 3 and dims.ndisplay == 2:
            dims.set_point(first, world[0])
        shown = world[-dims.ndisplay :] if dims.ndisplay <= ndim else world
        self.viewer.scene.camera.center = tuple(shown)
        label = int(record["label"])
        if isinstance(layer, Labels):
            layer.selected_label = label
        self.status.value = f"object {label} at {', '.join(f'{c:.1f}' for c in centre)}"

    def export_csv(self, path: str | Path) -> Path:
        """Write the table to ``path`` (complete or not at all)."""
        if self.table is None:
            raise ValueError("nothing to export: measure a labels layer first")
        saved = measure.save_csv(self.table, path)
        self.status.value = f"wrote {saved}"
        return saved

    def _ask_export(self, _value: Any = None) -> None:
        from qtpy.QtWidgets import QFileDialog

        name = f"{self.measured_layer.name if self.measured_layer else 'table'}.csv"
        path, _ = QFileDialog.getSaveFileName(
            self.native, "Export the table", name, "CSV (*.csv)"
        )
        if not path:
            return
        try:
            self.export_csv(path)
        except (OSError, ValueError) as exc:
            notify_error("Export CSV", exc)


def _refit_section(widget: Any) -> None:
    """Let the panel's section holding ``widget`` grow to show new results.

    superqt's ``QCollapsible`` fixes its content's height when it expands
    and updates it only when a child is resized, which a widget that cannot
    grow never is.
    """
    from superqt import QCollapsible

    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QCollapsible):
        parent = parent.parentWidget()
    if parent is not None and parent.isExpanded():
        parent.expand(animate=False)
