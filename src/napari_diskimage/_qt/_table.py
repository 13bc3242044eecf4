"""A sortable table of a pandas DataFrame (Qt model/view, no copy of the data).

The model reads cells straight from the frame's column arrays and sorts
itself with numpy (a permutation of the rows), so a table of 100,000
objects shows and sorts at once: Qt asks only for the cells on screen (a
``QSortFilterProxyModel`` would ask for every cell of the sorted column
through Python, about a second per 10,000 rows).  ``row_clicked(row)``
gives the frame's row (its position) of the row the user clicked, whatever
the sort.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt
from qtpy.QtCore import Signal as QtSignal
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableView

__all__ = ["FrameModel", "FrameTable"]

_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def _text(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.5g}"
    return str(value)


class FrameModel(QAbstractTableModel):
    """A read-only Qt model of a DataFrame, sortable by any column."""

    def __init__(self, frame: Any = None) -> None:
        super().__init__()
        self._columns: list[str] = []
        self._values: list[np.ndarray] = []
        self.order = np.zeros(0, dtype=np.intp)
        if frame is not None:
            self.set_frame(frame)

    def set_frame(self, frame: Any) -> None:
        self.beginResetModel()
        self._columns = [str(c) for c in frame.columns]
        self._values = [frame[c].to_numpy() for c in frame.columns]
        self.order = np.arange(len(frame))
        self.endResetModel()

    def rowCount(self, parent: Any = None) -> int:
        return 0 if parent is not None and parent.isValid() else self.order.size

    def columnCount(self, parent: Any = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self._columns)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return _text(self._values[index.column()][self.order[index.row()]])
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _RIGHT
        return None

    def headerData(
        self,
        section: int,
        orientation: Qt.Orientation,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self._columns[section]
        return str(section + 1)

    def sort(
        self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder
    ) -> None:
        """Sort the rows by ``column`` (numbers as numbers; ties keep the
        frame's order); a column < 0 restores the frame's order."""
        self.layoutAboutToBeChanged.emit()
        n = self.order.size
        if column < 0 or column >= len(self._values):
            self.order = np.arange(n)
        else:
            values = self._values[column]
            if order == Qt.SortOrder.DescendingOrder:
                # largest first; equal values still in the frame's order
                flipped = np.argsort(values[::-1], kind="stable")
                self.order = (n - 1 - flipped)[::-1].copy()
            else:
                self.order = np.argsort(values, kind="stable")
        self.layoutChanged.emit()


class FrameTable(QTableView):
    """The sortable view of a :class:`FrameModel`; emits ``row_clicked``."""

    row_clicked = QtSignal(int)

    def __init__(self) -> None:
        super().__init__()
        self.frame_model = FrameModel()
        self.setModel(self.frame_model)
        self.setSortingEnabled(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self._header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setResizeContentsPrecision(200)  # rows sampled to size columns
        rows = self.verticalHeader()
        if rows is not None:
            rows.setVisible(False)
        self.setMinimumHeight(160)
        self.clicked.connect(self._clicked)

    def _header(self) -> QHeaderView:
        header = self.horizontalHeader()
        if header is None:  # a QTableView always has one; Qt's stubs allow None
            raise RuntimeError("the table has no horizontal header")
        return header

    def set_frame(self, frame: Any) -> None:
        self._header().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.frame_model.set_frame(frame)
        self.resizeColumnsToContents()

    def frame_row(self, view_row: int) -> int:
        """The frame's row shown at ``view_row`` (after sorting)."""
        return int(self.frame_model.order[view_row])

    def click_row(self, view_row: int) -> None:
        """Select and click ``view_row`` (as the user does)."""
        self.selectRow(view_row)
        self._clicked(self.frame_model.index(view_row, 0))

    def _clicked(self, index: QModelIndex) -> None:
        if index.isValid():
            self.row_clicked.emit(self.frame_row(index.row()))
