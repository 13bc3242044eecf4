"""The "Run on" choice of the Process (and Measure) tools.

This machine (dask's threads), a dask scheduler (its address), or SLURM
(jobs, cores and memory per job; walltime, queue and account from
dask-jobqueue's config, ``~/.config/dask/jobqueue.yaml``).  The choice is
remembered across napari restarts, like the disk-image directory.  A run
on SLURM starts its jobs, waits for a first worker, runs, and ends the
jobs, also when it is cancelled or fails: see
:mod:`napari_diskimage._cluster`.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, Container, LineEdit, SpinBox

from .. import _settings
from .._cluster import KINDS, ClusterSpec

__all__ = ["RunOn"]

#: Key of the choice in the saved settings.
KEY = "run_on"


class RunOn(Container):
    """Where a run goes; :meth:`spec` is the choice (None: this machine)."""

    def __init__(self) -> None:
        self.kind = ComboBox(
            label="run on",
            choices=[(title, key) for key, title in KINDS.items()],
            value="local",
        )
        self.address = LineEdit(label="scheduler", value="")
        self.address.tooltip = "e.g. tcp://10.0.0.5:8786, as the scheduler prints it"
        self.jobs = SpinBox(label="SLURM jobs", value=2, min=1, max=10000)
        self.cores = SpinBox(label="cores per job", value=1, min=1, max=1024)
        self.memory = LineEdit(label="memory per job", value="4GB")
        super().__init__(
            widgets=[self.kind, self.address, self.jobs, self.cores, self.memory]
        )
        self._load_saved()
        self._show_fields()
        self.kind.changed.connect(self._show_fields)
        for field in (self.kind, self.address, self.jobs, self.cores, self.memory):
            field.changed.connect(self._save)

    def _load_saved(self) -> None:
        saved = _settings.load_settings().get(KEY)
        if not isinstance(saved, dict):
            return
        for name in ("kind", "address", "jobs", "cores", "memory"):
            if name in saved:
                try:
                    getattr(self, name).value = saved[name]
                except (ValueError, TypeError):  # an edited settings file
                    continue

    def _save(self, _value: Any = None) -> None:
        _settings.save_setting(
            KEY,
            {
                "kind": self.kind.value,
                "address": self.address.value,
                "jobs": self.jobs.value,
                "cores": self.cores.value,
                "memory": self.memory.value,
            },
            quiet=True,  # a read-only config folder: the choice holds until exit
        )

    def _show_fields(self, _value: Any = None) -> None:
        kind = self.kind.value
        self.address.visible = kind == "scheduler"
        for field in (self.jobs, self.cores, self.memory):
            field.visible = kind == "slurm"

    def spec(self) -> ClusterSpec | None:
        """The chosen cluster, or None for this machine.

        Raises
        ------
        ValueError
            No scheduler address, or no memory for the SLURM jobs.
        """
        kind = self.kind.value
        if kind == "local":
            return None
        if kind == "scheduler":
            return ClusterSpec(
                kind="scheduler", address=str(self.address.value).strip()
            )
        memory = str(self.memory.value).strip()
        if not memory:
            raise ValueError("SLURM: give the memory per job, e.g. 4GB")
        return ClusterSpec(
            kind="slurm", jobs=self.jobs.value, cores=self.cores.value, memory=memory
        )
