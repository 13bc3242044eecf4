"""One registration per operation: its public function, its run, its entry.

An operation is written once, as the function that checks its parameters
and returns its :class:`~._engine.Run`, under the public name and with the
public docstring, decorated with :func:`operation`.  The decorator gives

* the public function (``process.gaussian``): the same parameters plus
  ``progress``, driving the run to its end;
* the run itself, as the public function's ``run`` attribute
  (``process.gaussian.run(image, 2)``), which the Process tool iterates in
  a worker thread and shows while it is written;
* the Process tool's and the command line's entry in :data:`OPERATIONS`
  (title, parameters as a widget shows them), when a title is given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar

from .._diskimage import DiskImage
from .._steps import ProgressCallback
from ._engine import Run, drive
from ._out import make_run_to

__all__ = ["MENU", "OPERATIONS", "Driven", "Operation", "Parameter"]

#: A caller's block size, (x, y, z) pixels; None: the engine's choice.
_Block = Sequence[int] | None

P = ParamSpec("P")
R = TypeVar("R", covariant=True)


class Parameter:
    """One parameter of an operation, as a widget shows it."""

    def __init__(
        self,
        name: str,
        kind: str,
        default: Any,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        choices: Sequence[Any] = (),
        help: str = "",
    ) -> None:
        self.name, self.kind, self.default = name, kind, default
        self.minimum, self.maximum = minimum, maximum
        self.choices = tuple(choices)
        self.help = help


class Operation:
    """An operation the "Process" widget offers: its title, parameters and
    the function that makes its :class:`Run`."""

    def __init__(
        self,
        title: str,
        make_run: Callable[..., Run],
        parameters: Sequence[Parameter],
        *,
        mask_input: bool = False,
        second_image: bool = False,
        labels_result: bool = False,
    ) -> None:
        self.title = title
        self.make_run = make_run
        self.parameters = tuple(parameters)
        self.mask_input = mask_input
        self.second_image = second_image
        #: The result is labels (ids, not intensities): a viewer shows it as
        #: a paintable labels layer.
        self.labels_result = labels_result
        #: ``make_run`` takes ``block_shape=(x, y, z)``.
        self.takes_block_shape = "block_shape" in inspect.signature(make_run).parameters


#: Operations by key, in the order the widget lists them.
OPERATIONS: dict[str, Operation] = {}

#: The order of the Process tool's list (and the command line's); an
#: operation left out comes after these, in the order it was registered.
MENU = (
    "gaussian", "median", "mean", "threshold", "label",
    "dilate", "erode", "opening", "closing", "arithmetic", "convert", "bin",
    "distance", "local_thickness", "watershed_split", "crop",
)  # fmt: skip


class Driven(Protocol[P, R]):
    """A registered operation's public function: called with the run's
    parameters and ``progress``, it drives the run to its end; ``run``
    makes the run without driving it."""

    run: Callable[P, Run]
    __name__: str

    def __call__(self, *args: Any, **kwargs: Any) -> R: ...


_OUT_DOC = """
    With ``out="result.ome.zarr"`` (a path ending in ``.zarr``) the result
    is written straight into that OME-Zarr store (NGFF 0.5, chunks of 256 in
    y and x, a pyramid of block means, or modes for labels) instead of a
    scratch file, block by block (cluster workers write their own chunks),
    under a temporary name renamed when complete; a cancel or failure leaves
    nothing there.  The result is then the disk image opened on the store.
"""


def _driven(
    make_run: Callable[P, Run], returns: str, *, labels: bool | None = None
) -> Any:
    """The public function of ``make_run`` (see the module's docstring).

    ``labels`` (None: a reduction, no output image): the operation takes
    ``out=`` (an OME-Zarr store its result is written into; see ``_out``),
    whose coarser levels are block modes if True, means if False.
    """
    name = make_run.__name__

    def public(*args: Any, progress: ProgressCallback | None = None, **kw: Any) -> Any:
        if labels is None:
            return drive(make_run(*args, **kw), progress)
        out = kw.pop("out", None)
        return drive(make_run_to(make_run, args, kw, out, labels=labels), progress)

    signature = inspect.signature(make_run)
    extra = [
        inspect.Parameter(
            "progress",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation="ProgressCallback | None",
        )
    ]
    if labels is not None:
        extra.insert(
            0,
            inspect.Parameter(
                "out",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation="str | os.PathLike[str] | None",
            ),
        )
    public.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *extra],
        return_annotation=returns,
    )
    public.__name__ = public.__qualname__ = name
    public.__module__ = "napari_diskimage.process"
    public.__doc__ = make_run.__doc__
    if labels is not None and public.__doc__:
        heading = "" if "\n    Notes\n" in public.__doc__ else "\n    Notes\n    -----"
        public.__doc__ = public.__doc__.rstrip() + "\n" + heading + _OUT_DOC
    public.__annotations__ = {
        **make_run.__annotations__,
        **({} if labels is None else {"out": "str | os.PathLike[str] | None"}),
        "progress": "ProgressCallback | None",
        "return": returns,
    }
    public.run = make_run  # type: ignore[attr-defined]
    make_run.__qualname__ = f"{name}.run"
    return public


def operation(
    title: str | None = None,
    parameters: Sequence[Parameter] = (),
    *,
    mask_input: bool = False,
    second_image: bool = False,
    labels_result: bool = False,
) -> Callable[[Callable[P, Run]], Driven[P, DiskImage]]:
    """Register an operation writing a new disk image (see the module).

    ``title`` and the rest describe its entry in :data:`OPERATIONS` (the
    Process tool, the command line); without a title it has none (a
    function for scripts only, e.g. ``apply``).
    """

    def register(make_run: Callable[P, Run]) -> Driven[P, DiskImage]:
        public = _driven(make_run, "DiskImage", labels=labels_result)
        if title is not None:
            key = make_run.__name__
            if key in OPERATIONS:
                raise RuntimeError(f"operation {key!r} is registered twice")
            OPERATIONS[key] = Operation(
                title,
                make_run,
                parameters,
                mask_input=mask_input,
                second_image=second_image,
                labels_result=labels_result,
            )
            order = {k: i for i, k in enumerate(MENU)}
            ordered = sorted(
                OPERATIONS.items(), key=lambda kv: order.get(kv[0], len(MENU))
            )
            OPERATIONS.clear()
            OPERATIONS.update(ordered)
        return public

    return register


def reduction(make_run: Callable[P, Run]) -> Driven[P, float]:
    """Register an operation whose run returns a number (e.g. ``otsu``):
    a public function and its ``run``, no entry in :data:`OPERATIONS`."""
    return _driven(make_run, "float")
