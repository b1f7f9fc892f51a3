"""The hosts table: a thin Qt adapter over :class:`trayapp.master.hosts.HostView`
rows, updated incrementally like the jobs table (rows keyed by host name).
Besides name, kind, state and last contact, it has every host kind's own
columns (:mod:`trayapp.master.kinds`); a host shows "–" in those its kind lacks."""

from __future__ import annotations

import time
from typing import Callable

from PyQt6.QtCore import QModelIndex, Qt

from trayapp.humantime import ago
from trayapp.master.hosts import HostView
from trayapp.master.kinds import KINDS, KindRegistry
from sparecycles_ui.rowsmodel import RowsModel

HostRole = Qt.ItemDataRole.UserRole + 1


class HostsModel(RowsModel):
    def __init__(self, clock: Callable[[], float] = time.time, parent=None, kinds: KindRegistry = KINDS):
        super().__init__(clock, parent)
        self.kind_columns = kinds.columns()
        self.columns = ("Host", "Kind", "State", *(c.title for c in self.kind_columns), "Last seen")

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        host = self.row_at(index)
        if host is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            state = host.state + (f" ({host.reason})" if host.reason else "")
            cells = (host.name, host.kind, state, *(c or "–" for c in host.cells(self.kind_columns)),
                     ago(host.last_seen, self._clock()))
            return cells[index.column()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{host.name}: {host.where}" + (f"\n{host.reason}" if host.reason else "")
        if role == HostRole:
            return host
        return None

    def host_at(self, row: int) -> HostView:
        return self._rows[row]

    def apply(self, rows: list[HostView]) -> None:
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
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.columns) - 1))
