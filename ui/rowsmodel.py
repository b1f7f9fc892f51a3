"""What every SpareCycles table model shares: a list of rows and named columns."""

from __future__ import annotations

import time
from typing import Callable

from PyQt6.QtCore import QAbstractTableModel, QModelIndex, Qt


class RowsModel(QAbstractTableModel):
    """A flat table over ``self._rows``; subclasses set ``columns`` and ``data``."""

    columns: tuple[str, ...] = ()

    def __init__(self, clock: Callable[[], float] = time.time, parent=None):
        super().__init__(parent)
        self._clock = clock
        self._rows: list = []

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if (role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal
                and 0 <= section < len(self.columns)):
            return self.columns[section]
        return None

    def row_at(self, index: QModelIndex):
        """The row behind ``index``, or None for an invalid index."""
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        return self._rows[index.row()]
