"""Runs that write their result straight into an OME-Zarr store (``out=``).

``process.gaussian(image, 2, out="smooth.ome.zarr")``: while the run is
made, the store waiting for its result is *pending*
(:func:`pending_output`): the run's first :func:`~._tasks.new_output` (its
result) is created there instead of as a scratch file, and the engine's
blocks are rounded up to whole chunks of it (:func:`align`), so each block
(each cluster worker) writes its own chunks.  The run's plan is then
followed by the rename (:func:`to_zarr`): each block wrote its reduction
into the coarser levels as it landed, so the finest level is not read
again (see :meth:`~..io.zarr_output.ChunkWriter.write`); it
returns the disk image opened on the saved store.  A cancel or a failure
removes the temporary store.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._diskimage import DiskImage
from .._geometry import Geometry
from .._steps import Steps
from ..io.zarr_output import ZarrOutput
from ._engine import Run

__all__ = ["align", "make_run_to", "output_image", "pending_output"]

_PENDING: contextvars.ContextVar[ZarrOutput | None] = contextvars.ContextVar(
    "napari_diskimage_out", default=None
)


def pending_output() -> ZarrOutput | None:
    """The store the run being made writes its result into, if any."""
    return _PENDING.get()


@contextlib.contextmanager
def _pending(target: ZarrOutput) -> Iterator[None]:
    token = _PENDING.set(target)
    try:
        yield
    finally:
        _PENDING.reset(token)


def output_image(geometry: Geometry, like: Any) -> DiskImage | None:
    """The result's disk image in the pending store (None if there is none,
    or the run's result was made already: later outputs are scratch)."""
    from .._open import open_zarr

    target = _PENDING.get()
    if target is None or target.image is not None:
        return None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    unit = None
    if isinstance(like, DiskImage):
        spacing = (like.spacing[0], like.spacing[1], like.spacing[2])
        unit = like.unit
    tmp = target.create(geometry, spacing, unit)
    image = open_zarr(tmp, "r+")
    # blocks write its chunks by path; a pass that reads them back (label,
    # distance) must never see a chunk decoded before it was written
    image.storage.uncached()  # type: ignore[attr-defined]
    # shown in a viewer while written: a chunk no block wrote yet is zeros
    # (the finished store is reopened, missing chunks are damage there)
    image.storage.handle.every_chunk = False  # type: ignore[attr-defined]
    target.image = image
    return image


def align(
    chunks: Sequence[int], shape: Sequence[int], *, keep_size: bool = False
) -> tuple[int, ...]:
    """``chunks`` (a run's blocks over t, c, z, y, x) rounded up to whole
    chunks of the pending store (clipped to ``shape``); unchanged without
    one.  ``keep_size``: then fewer planes, in whole chunks, so that a block
    holds no more voxels than asked (memory stays what the planner chose);
    only before the halo is fitted, which may need a block to span z."""
    target = _PENDING.get()
    if target is None:
        return tuple(chunks)
    store = target.chunks(shape)
    out = [
        min(int(n), -(-int(b) // s) * s)
        for b, s, n in zip(chunks, store, shape, strict=True)
    ]
    if keep_size:
        budget, cz = math.prod(chunks), store[2]
        while out[2] > cz and math.prod(out) > budget:
            out[2] = max(cz, (out[2] - 1) // cz * cz)
    return tuple(out)


def make_run_to(
    make_run: Callable[..., Run],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    out: str | os.PathLike[str] | None,
    *,
    labels: bool = False,
) -> Run:
    """``make_run(*args, **kwargs)``, its result written to ``out`` (an
    OME-Zarr store) when given: see the module."""
    if out is None:
        return make_run(*args, **kwargs)
    target = ZarrOutput(
        out, method="mode" if labels else "mean", inputs=[*args, *kwargs.values()]
    )
    try:
        with _pending(target):
            run = make_run(*args, **kwargs)
        if target.image is None or run.output is not target.image:
            raise TypeError(
                f"{run.what} cannot write its result to out={str(out)!r}: it has "
                "no output image"
            )
    except BaseException:
        target.discard()
        raise
    return to_zarr(run, target)


def to_zarr(run: Run, target: ZarrOutput) -> Run:
    """Follow ``run`` with the coarser levels its blocks left and the
    rename (:meth:`ZarrOutput.finish`).  Progress counts an eighth of the
    result for them: nothing to build when the blocks were aligned with the
    chunks, the finest level read once when they were not."""
    assert target.image is not None
    extra = target.image.nbytes // 8

    def finish(run: Run) -> Steps:
        saved = yield from target.finish(
            run.total - extra,
            run.total,
            # a viewer showing the result closes it after showing the store
            close_image=run.close_output_on_failure,
        )
        image = _open_saved(saved)
        run.output = image
        return image

    run.then(finish, extra, on_failure=target.discard)
    return run


def _open_saved(path: Any) -> DiskImage:
    from .._open import open_zarr

    return open_zarr(path)
