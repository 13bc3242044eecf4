"""The offer to build a view cache: a napari notification with a button.

When a volume of at least :func:`offer_bytes` is opened, or the dims of a
viewer showing one are rolled to a view that is not XY (YZ / XZ), or a
YZ plane of it is read from the file by any viewer model (what
napari-orthogonal-views' side viewers do), and it has no valid view
cache, a notification says why a cache helps, its size, and offers
"Build view cache (size)".  The button opens the Image info tool (through
napari's plugin dock, so this module needs no Qt) and starts the build
there: a worker thread with napari's progress bar; the layers switch to
the cache when it is ready.  Each image is offered once a session.

A volume of at least :func:`auto_build_bytes` (the setting
``view_cache_auto_bytes``, set in Image info; 0, the default: never) gets
its cache built the same way as soon as it is opened, without asking.

With napari's asynchronous slicing (``NAPARI_ASYNC=1``) a YZ plane is read
in a slicing thread: the offer is dispatched from there through napari's
notification manager, whose Qt display runs in the GUI thread
(``ensure_main_thread``); the button's action runs in the GUI thread.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any

from .._diskimage import DiskImage
from .._scratch import format_bytes
from .._settings import number_setting
from ..display.cached_views import on_uncached_yz_read, valid_view_cache
from ..display.view_cache import view_cache_size
from .layers import disk_image_of

__all__ = [
    "AUTO_KEY",
    "OFFER_BYTES",
    "auto_build_bytes",
    "offer_bytes",
    "offer_view_cache",
    "watch_viewer",
]

#: Default size from which the offer is made (the setting
#: ``view_cache_offer_bytes`` overrides it).
OFFER_BYTES = 1 << 30
#: The plugin's widget that builds and clears view caches.
PLUGIN, WIDGET = "napari-diskimage", "Image info"

#: The setting: size of a file (bytes) from which its view cache is built
#: as soon as it is opened; 0 or missing: never.
AUTO_KEY = "view_cache_auto_bytes"

_offered: weakref.WeakSet[DiskImage] = weakref.WeakSet()
_watched: weakref.WeakSet[Any] = weakref.WeakSet()
#: The offer is made from slicing threads too: one offer per image.
_offer_lock = threading.Lock()


def offer_bytes() -> int:
    """Size of a file (bytes) from which a view cache is offered."""
    return number_setting("view_cache_offer_bytes", OFFER_BYTES)


def auto_build_bytes() -> int:
    """Size of a file (bytes) from which its view cache is built when it is
    opened; 0: never (the default)."""
    return max(0, number_setting(AUTO_KEY, 0))


def _wants_offer(image: DiskImage | None) -> bool:
    return (
        image is not None
        and image not in _offered
        and image.kind != "zarr"
        and image.shape[2] > 1
        and image.nbytes >= offer_bytes()
        and valid_view_cache(image) is None
    )


def build_from_offer(viewer: Any, image: DiskImage) -> Any:
    """Open the Image info tool and start the build there; its job."""
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return widget.view_cache.build(image)


def offer_view_cache(viewer: Any, image: DiskImage | None, why: str) -> Any:
    """Show the offer for ``image`` (once); the notification, or None."""
    with _offer_lock:
        if not _wants_offer(image):
            return None
        assert image is not None
        _offered.add(image)
    from napari.utils.notifications import (
        Notification,
        NotificationSeverity,
        notification_manager,
    )

    size = format_bytes(view_cache_size(image))
    ref = weakref.ref(image)

    def build(_dialog: Any = None) -> None:
        target = ref()
        if target is not None and not target.closed:
            build_from_offer(viewer, target)

    note = Notification(
        f"{image.path.name} ({format_bytes(image.nbytes)}): {why}. A view cache "
        f"({size}, built once in the background in the disk-image directory) "
        "makes YZ / XZ views read a few chunks and 3D show block means. "
        "Image info builds or clears it too.",
        severity=NotificationSeverity.INFO,
        actions=[(f"Build view cache ({size})", build)],
    )
    notification_manager.dispatch(note)
    return note


def _rolled(viewer: Any) -> bool:
    order = tuple(viewer.dims.order)
    n = len(order)
    return viewer.dims.ndisplay == 2 and n >= 3 and order[-2:] != (n - 2, n - 1)


def _dims_changed(viewer: Any) -> None:
    if not _rolled(viewer):
        return
    from napari.layers import Image

    for layer in list(viewer.layers):
        if not isinstance(layer, Image):
            continue  # labels have no view cache: a mean of labels is no label
        offer_view_cache(
            viewer,
            disk_image_of(layer),
            "a YZ / XZ view of it reads every row of the file it crosses",
        )


def watch_viewer(viewer: Any) -> None:
    """Offer a cache when ``viewer``'s dims are rolled (once per viewer)."""
    if viewer is None or viewer in _watched:
        return
    _watched.add(viewer)
    ref = weakref.ref(viewer)

    def changed(_event: Any = None) -> None:
        v = ref()
        if v is not None:
            with contextlib.suppress(Exception):  # an offer never breaks a view
                _dims_changed(v)

    viewer.dims.events.order.connect(changed)


def _yz_read_from_file(image: DiskImage) -> None:
    """A YZ plane was read from the file (rolled dims of any viewer model,
    napari-orthogonal-views' side viewers too, from napari's slicing thread
    when slicing is asynchronous): offer."""
    if not _wants_offer(image):
        return
    import napari

    viewer = napari.current_viewer()
    if viewer is not None:
        offer_view_cache(
            viewer, image, "a YZ / XZ view of it reads every row of the file it crosses"
        )


def after_open(images: list[DiskImage]) -> None:
    """From the reader, inside napari: offer for large volumes, and watch
    the current viewer's dims and every YZ read from a file."""
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return
    watch_viewer(viewer)
    on_uncached_yz_read(_yz_read_from_file)
    auto = auto_build_bytes()
    for image in images:
        if auto and image.nbytes >= auto and _auto_build(viewer, image):
            continue
        offer_view_cache(viewer, image, "a large volume")


def _auto_build(viewer: Any, image: DiskImage) -> bool:
    """Start the build of ``image``'s view cache (the automatic setting);
    whether it started (or a valid cache exists)."""
    if image.kind == "zarr" or image.shape[2] < 2:
        return False
    if valid_view_cache(image) is not None:
        return True
    with _offer_lock:
        _offered.add(image)  # no offer: it is being built
    return build_from_offer(viewer, image) is not None
