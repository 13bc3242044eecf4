"""A sortable table of a pandas DataFrame (Qt model/view, no copy of the data).

The model reads cells straight from the frame's column arrays, so a table
of 100,000 objects shows at once; a ``QSortFilterProxyModel`` sorts it by
any column (numbers as numbers).  ``row_clicked(row)`` gives the frame's
row (its position) of the row the user clicked, whatever the sort.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from qtpy.QtCore import Signal as QtSignal
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableView

__all__ = ["FrameModel", "FrameTable"]

_SORT_ROLE = Qt.ItemDataRole.UserRole


def _text(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.5g}"
    return str(value)


class FrameModel(QAbstractTableModel):
    """A read-only Qt model of a DataFrame."""

    def __init__(self, frame: Any = None) -> None:
        super().__init__()
        self._columns: list[str] = []
        self._values: list[np.ndarray] = []
        self._rows = 0
        if frame is not None:
            self.set_frame(frame)

    def set_frame(self, frame: Any) -> None:
        self.beginResetModel()
        self._columns = [str(c) for c in frame.columns]
        self._values = [frame[c].to_numpy() for c in frame.columns]
        self._rows = len(frame)
        self.endResetModel()

    def rowCount(self, parent: Any = None) -> int:
        return 0 if parent is not None and parent.isValid() else self._rows

    def columnCount(self, parent: Any = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self._columns)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        value = self._values[index.column()][index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return _text(value)
        if role == _SORT_ROLE:
            return value.item() if hasattr(value, "item") else value
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
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


class FrameTable(QTableView):
    """The sortable view of a :class:`FrameModel`; emits ``row_clicked``."""

    row_clicked = QtSignal(int)

    def __init__(self) -> None:
        super().__init__()
        self.frame_model = FrameModel()
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.frame_model)
        self.proxy.setSortRole(_SORT_ROLE)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.verticalHeader().setVisible(False)
        self.setMinimumHeight(160)
        self.clicked.connect(self._clicked)

    def set_frame(self, frame: Any) -> None:
        self.frame_model.set_frame(frame)
        self.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # the frame's order

    def frame_row(self, view_row: int) -> int:
        """The frame's row shown at ``view_row`` (after sorting)."""
        return self.proxy.mapToSource(self.proxy.index(view_row, 0)).row()

    def click_row(self, view_row: int) -> None:
        """Select and click ``view_row`` (as the user does)."""
        index = self.proxy.index(view_row, 0)
        self.selectRow(view_row)
        self._clicked(index)

    def _clicked(self, index: QModelIndex) -> None:
        if index.isValid():
            self.row_clicked.emit(self.proxy.mapToSource(index).row())
