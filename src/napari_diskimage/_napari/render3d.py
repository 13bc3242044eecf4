"""The 3D rendering of a disk-image layer, chosen from what 3D shows.

napari renders a volume as a maximum intensity projection (MIP).  That
suits a few bright objects in a dark volume, but a porous scan (a bright
solid around dark pores) has a bright voxel on every ray: its MIP is a flat
grey sheet.  An attenuated MIP, which fades what lies behind bright voxels,
shows the solid's surface and the pores in it; on sparse bright objects it
dims the farther ones, so it is chosen only where the MIP would be flat.

The choice is made once per layer, the first time it is shown in 3D, from
the overview napari already holds for it (nothing more is read), and only
while the layer still has napari's default MIP: a rendering the user picks
is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._compat import shown_ndisplay, shown_raw

__all__ = ["KEY", "choose_rendering", "watch", "watch_current_viewer"]

#: ``layer.metadata[KEY]``: the rendering chosen for 3D (set once).
KEY = "napari_diskimage_3d_rendering"
#: The attenuation of the attenuated MIP (napari's 0.05 still shows a sheet).
ATTENUATION = 0.5
#: A MIP is flat when its spread is below this fraction of the contrast range
#: while the volume's own spread is above :data:`STRUCTURED`.
FLAT = 0.08
STRUCTURED = 0.15
_WATCHED = "_napari_diskimage_render3d"


def choose_rendering(volume: Any, contrast_limits: Any) -> dict[str, Any]:
    """napari layer settings for showing ``volume`` (z, y, x) in 3D.

    ``{}`` keeps napari's MIP; a volume whose MIP along each axis would be
    flat although the volume itself has contrast (a porous scan) gets an
    attenuated MIP.
    """
    data = np.asarray(volume)
    if data.ndim != 3 or min(data.shape) < 2:
        return {}
    low, high = (float(v) for v in contrast_limits)
    if not high > low:
        return {}
    scaled = np.clip((data.astype(np.float32) - low) / (high - low), 0, 1)
    if float(scaled.std()) < STRUCTURED:
        return {}  # uniform (or nearly): nothing a rendering could show
    flat = all(float(scaled.max(axis=a).std()) < FLAT for a in range(3))
    if not flat:
        return {}
    return {"rendering": "attenuated_mip", "attenuation": ATTENUATION}


def watch(viewer: Any) -> None:
    """Choose the 3D rendering of the viewer's disk-image layers (those added
    from now on too) when they are first shown in 3D.  Once per viewer."""
    layers = viewer.layers
    if getattr(layers, _WATCHED, False):
        return
    setattr(layers, _WATCHED, True)
    layers.events.inserted.connect(lambda event: _follow(event.value))
    for layer in list(layers):
        _follow(layer)


def watch_current_viewer() -> None:
    """:func:`watch` the viewer a reader or a sample is opening files into,
    if any (none without napari)."""
    try:
        import napari
    except ImportError:  # a sample's data taken outside napari
        return

    viewer = napari.current_viewer()
    if viewer is not None:
        watch(viewer)


def _follow(layer: Any) -> None:
    # images only: a labels layer has a rendering of its own, no contrast
    if "disk_image" in getattr(layer, "metadata", {}) and hasattr(
        layer, "contrast_limits"
    ):
        layer.events.set_data.connect(_shown)


def _shown(event: Any) -> None:
    """After a slice of a disk-image layer: in 3D, choose once."""
    layer = event.source
    if KEY in layer.metadata:
        return
    try:
        if shown_ndisplay(layer) != 3:
            return
        volume = shown_raw(layer)
    except AttributeError:  # a napari without these internals: keep its MIP
        return
    if volume is None or np.ndim(volume) != 3:
        return
    settings = choose_rendering(volume, layer.contrast_limits)
    layer.metadata[KEY] = settings.get("rendering", "mip")
    if settings and str(layer.rendering) == "mip":
        layer.attenuation = settings["attenuation"]
        layer.rendering = settings["rendering"]
