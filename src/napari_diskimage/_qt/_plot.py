"""A small matplotlib figure inside the panel (histograms, profiles).

napari's dark theme: the figure takes the panel's background and light
text, and its fonts stay readable in a 260-pixel-wide dock.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PlotCanvas"]


class PlotCanvas:
    """A matplotlib ``FigureCanvasQTAgg`` holding one axes; ``native`` is the
    Qt widget to put in a layout."""

    def __init__(self, height: float = 2.4) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.2, height), dpi=90, layout="constrained")
        self.figure.patch.set_facecolor("#262930")
        self.axes = self.figure.add_subplot()
        self.native = FigureCanvasQTAgg(self.figure)
        self.native.setMinimumHeight(int(height * 70))
        self._style()

    def _style(self) -> None:
        ax = self.axes
        ax.set_facecolor("#262930")
        for spine in ax.spines.values():
            spine.set_color("#d0d0d0")
        ax.tick_params(colors="#d0d0d0", labelsize=8)
        ax.xaxis.label.set_color("#e0e0e0")
        ax.yaxis.label.set_color("#e0e0e0")
        ax.title.set_color("#e0e0e0")

    def clear(self) -> None:
        self.axes.clear()
        self._style()

    def histogram(
        self, values: np.ndarray, weights: np.ndarray | None, xlabel: str, ylabel: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw a histogram; returns its (heights, edges)."""
        self.clear()
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        w = None if weights is None else np.asarray(weights, np.float64)[finite]
        heights, edges = np.histogram(values[finite], bins=40, weights=w)
        if w is not None and w.sum() > 0:
            heights = heights / w.sum()
        self.axes.stairs(heights, edges, fill=True, color="#5fa8d3")
        self.axes.set_xlabel(xlabel, fontsize=9)
        self.axes.set_ylabel(ylabel, fontsize=9)
        self.native.draw_idle()
        return heights, edges

    def profile(self, values: np.ndarray, xlabel: str, ylabel: str) -> Any:
        """Draw a line of ``values`` against their index."""
        self.clear()
        self.axes.plot(np.arange(len(values)), values, color="#5fa8d3")
        self.axes.set_xlabel(xlabel, fontsize=9)
        self.axes.set_ylabel(ylabel, fontsize=9)
        self.native.draw_idle()
