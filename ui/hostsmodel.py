"""The hosts table: a thin Qt adapter over :class:`ui.snapshot.HostRow` rows,
updated incrementally like the jobs table (rows keyed by host name)."""

from __future__ import annotations

import time
from typing import Callable

from PyQt6.QtCore import QModelIndex, Qt

from ui.rowsmodel import RowsModel
from ui.snapshot import HostRow
from trayapp.humantime import ago

COLUMNS = ("Host", "State", "Slots", "Running", "Last seen", "Python", "Brian")
HostRole = Qt.ItemDataRole.UserRole + 1


class HostsModel(RowsModel):
    columns = COLUMNS

    def __init__(self, clock: Callable[[], float] = time.time, parent=None):
        super().__init__(clock, parent)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        host = self.row_at(index)
        if host is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            state = host.state + (f" ({host.reason})" if host.reason else "")
            return (host.name, state, "–" if host.slots is None else str(host.slots), str(host.running),
                    ago(host.last_seen, self._clock()), host.python or "–", host.brian or "–")[index.column()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{host.name}: {host.address}" + (f"\n{host.reason}" if host.reason else "")
        if role == HostRole:
            return host
        return None

    def host_at(self, row: int) -> HostRow:
        return self._rows[row]

    def apply(self, rows: list[HostRow]) -> None:
        wanted = {r.name for r in rows}
        for row in reversed(range(len(self._rows))):
            if self._rows[row].name not in wanted:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self.endRemoveRows()
        row_of = {r.name: i for i, r in enumerate(self._rows)}
        for fresh in rows:
            row = row_of.get(fresh.name)
            if row is None:
                end = len(self._rows)
                self.beginInsertRows(QModelIndex(), end, end)
                self._rows.append(fresh)
                row_of[fresh.name] = end
                self.endInsertRows()
            elif self._rows[row] != fresh:
                self._rows[row] = fresh
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
