"""napari's private names the plugin builds on, in one place, checked at import.

The labels layer that paints into a file (:mod:`.labels_layer`) subclasses
napari's ``Labels`` and its slicing state, overrides private methods and
reads private attributes: none of that is napari's public API, and any
napari release may change it.  Every such name is listed here and checked
when this module is imported (the names exist, methods take the arguments
the overrides expect, the dataclass fields and attributes are there).

:data:`PROBLEMS` lists what differs from the napari the plugin was tested
with (:data:`TESTED`); when it is not empty, :data:`OK` is False and the
plugin shows labels files as plain napari ``Labels`` layers (still painted
straight into the file where it can, 3D editing off) with a warning
(:func:`fallback_warning`), never a crash.  The private attributes are
read through the functions below, so the layer's code names none of them.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np
from napari.layers import Labels

__all__ = [
    "OK",
    "PROBLEMS",
    "TESTED",
    "clear_level_cache",
    "fallback_warning",
    "forget_updated_slice",
    "history",
    "shown_ndisplay",
    "shown_raw",
    "tile_to_data",
]

#: The napari minor version these names were checked against (the
#: ``napari<0.10`` pin in pyproject.toml).
TESTED = "0.9"

# --- the names: imported from napari's private modules -----------------------
_problems: list[str] = []
try:
    from napari.layers.labels._slice import _LabelsSliceRequest as LabelsSliceRequest
    from napari.layers.labels.labels import _LabelsSlicingState as LabelsSlicingState
    from napari.layers.labels.labels import _MaskedPaintAtom as MaskedPaintAtom
    from napari.layers.utils._slice_input import _ThickNDSlice as ThickNDSlice
except ImportError as exc:  # napari moved or renamed one of them
    _problems.append(f"cannot import {exc.name or exc}")

#: Private ``Labels`` methods the plugin overrides or calls, with the
#: parameters it passes (napari 0.9).
LABELS_METHODS: dict[str, tuple[str, ...]] = {
    # overridden
    "_get_layer_slicing_state": ("self", "data", "cache"),
    "_mode_setter_helper": ("self", "mode"),
    "_get_flood_mask_and_bbox": ("self", "coord", "new_label", "dims_to_paint"),
    "_get_value_ray": ("self", "start_point", "end_point", "dims_displayed"),
    "_refresh_caches_from_region": (
        "self",
        "region_data",
        "slice_key",
        "mask",
        "new_label",
    ),
    "_partial_labels_refresh": ("self",),
    "_on_editable_changed": ("self",),
    "_append_to_undo_history": ("self", "item"),
    "_load_history": ("self", "before", "after", "undoing"),
    # called
    "_get_preserve_labels_source_label": ("self", "new_label"),
    "_calculate_value_from_ray": ("self", "values"),
}
#: Private ``Labels`` properties the plugin overrides.
LABELS_PROPERTIES = ("_type_string",)
#: Private attributes of a ``Labels`` instance the plugin reads.
LABELS_ATTRIBUTES = (
    "_slice",
    "_slice_input",
    "_transforms",
    "_undo_history",
    "_redo_history",
    "_updated_slice",
)
#: Fields of napari's labels slice request the 3D overview replaces.
REQUEST_FIELDS = (
    "slice_input",
    "data_slice",
    "data_at_data_level",
    "data_at_thumbnail_level",
    "level_shapes",
    "downsample_factors",
)


def _parameters(func: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(func).parameters)


def _check() -> list[str]:
    """What differs from napari 0.9's private surface ([] when nothing)."""
    problems = list(_problems)
    for name, expected in LABELS_METHODS.items():
        method = getattr(Labels, name, None)
        if not callable(method):
            problems.append(f"Labels.{name} is gone")
        elif _parameters(method) != expected:
            problems.append(
                f"Labels.{name}{_parameters(method)} no longer takes {expected}"
            )
    for name in LABELS_PROPERTIES:
        if not isinstance(inspect.getattr_static(Labels, name, None), property):
            problems.append(f"Labels.{name} is no longer a property")
    if problems:  # the names below come from the imports above
        return problems
    method = getattr(LabelsSlicingState, "_make_slice_request_internal", None)
    if not callable(method):
        problems.append("_LabelsSlicingState._make_slice_request_internal is gone")
    if _parameters(LabelsSlicingState.__init__) != ("self", "layer", "data", "cache"):
        problems.append("_LabelsSlicingState(layer, data, cache) changed")
    fields = {f.name for f in dataclasses.fields(LabelsSliceRequest)}
    missing = [f for f in REQUEST_FIELDS if f not in fields]
    if missing:
        problems.append(f"_LabelsSliceRequest has no {', '.join(missing)}")
    if not {"slice_key", "mask", "old_values", "new_value"} <= set(
        MaskedPaintAtom._fields
    ):
        problems.append(f"_MaskedPaintAtom fields are now {MaskedPaintAtom._fields}")
    if not (hasattr(ThickNDSlice, "from_array") and hasattr(ThickNDSlice, "as_array")):
        problems.append("_ThickNDSlice.from_array / as_array are gone")
    try:  # a tiny layer: attributes set by napari's constructor
        layer = Labels(np.zeros((2, 2), dtype=np.uint8))
    except Exception as exc:  # pragma: no cover - napari itself is broken
        return [*problems, f"Labels() failed: {exc}"]
    missing = [a for a in LABELS_ATTRIBUTES if not hasattr(layer, a)]
    if missing:
        problems.append(f"Labels has no {', '.join(missing)}")
    else:
        if not hasattr(getattr(layer._slice, "image", None), "raw"):
            problems.append("Labels._slice.image.raw is gone")
        if not hasattr(layer._slice_input, "ndisplay"):
            problems.append("Labels._slice_input.ndisplay is gone")
    return problems


#: What differs from the napari the plugin was tested with; empty if nothing.
PROBLEMS: tuple[str, ...] = tuple(_check())
#: True when every private name is there as expected.
OK = not PROBLEMS


def fallback_warning(name: str) -> str:
    """The notification shown when labels get a plain napari layer."""
    import napari

    return (
        f"{name!r} is shown as a plain napari Labels layer: this napari "
        f"({napari.__version__}) changed internals the plugin's file-backed "
        f"labels layer builds on (tested with napari {TESTED}.x: "
        f"{'; '.join(PROBLEMS)}). Painting still writes into the file, but "
        "3D editing is off, a large volume is hidden in 3D (napari would load "
        "it whole), and a large plane's undo history is cleared when its "
        f"paint window moves. Install napari {TESTED}.x for the full layer."
    )


# --- private attributes, read here only --------------------------------------
def shown_raw(layer: Labels) -> Any:
    """The data of ``layer``'s current slice (napari's ``_slice.image.raw``)."""
    return layer._slice.image.raw


def shown_ndisplay(layer: Labels) -> int:
    """2 or 3: how ``layer``'s current slice is displayed."""
    return int(layer._slice_input.ndisplay)


def tile_to_data(layer: Labels) -> Any:
    """The transform from the shown tile (a level, the overview) to data."""
    return layer._transforms["tile2data"]


def history(layer: Labels) -> Any:
    """``layer``'s undo history (a deque of items, each a list of atoms)."""
    return layer._undo_history


def forget_updated_slice(layer: Labels) -> None:
    """Drop the partial slice update napari keeps after an edit, so the next
    refresh reslices whole."""
    layer._updated_slice = None


def clear_level_cache(layer: Any) -> None:
    """Forget the coarsest level napari (0.7+) keeps in memory for a 2D
    multiscale layer (``_level_materializer``, an ``lru_cache``)."""
    materializer = getattr(layer, "_level_materializer", None)
    if materializer is not None and hasattr(materializer, "cache_clear"):
        materializer.cache_clear()
