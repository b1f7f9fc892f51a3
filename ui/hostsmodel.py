"""The hosts table: a thin Qt adapter over :class:`trayapp.master.hosts.HostView`
rows, updated incrementally like the jobs table (rows keyed by host name).

Besides name, kind, state and last contact it has the own columns
(:mod:`trayapp.master.kinds`) of the kinds that have a host in the table:
a lab without a cluster sees no cluster columns. The state is a few words
with a colour; the reason why goes on the window's details pane
(:func:`problem_lines`), never only in a tooltip.
"""

from __future__ import annotations

import time
from typing import Callable

from PyQt6.QtCore import QModelIndex, Qt
from PyQt6.QtGui import QColor

from trayapp.humantime import ago
from trayapp.master.hosts import HostView
from trayapp.master.kinds import KINDS, Column, KindRegistry
from sparecycles_ui.rowsmodel import RowsModel

HostRole = Qt.ItemDataRole.UserRole + 1
STATE_COLOURS = {"ready": "#1b7f2a", "idle": "#1b7f2a", "working": "#1d5fa8", "busy": "#1d5fa8", "unknown": "#6b6b6b", "offline": "#6b6b6b",
                 "paused": "#a06a00", "unavailable": "#a06a00", "quarantined": "#b00020",
                 "unreachable": "#b00020", "error": "#b00020"}
GOOD_STATES = ("ready", "busy")


def state_colour(state: str) -> QColor:
    return QColor(STATE_COLOURS.get(state, "#a06a00"))


def problem_lines(hosts: list[HostView]) -> list[str]:
    """One line per host that has a reason to give: what the details pane shows."""
    return [f"{h.name}: {h.state}: {h.reason}" for h in hosts if h.reason]


class HostsModel(RowsModel):
    def __init__(self, clock: Callable[[], float] = time.time, parent=None, kinds: KindRegistry = KINDS):
        super().__init__(clock, parent)
        self.kinds = kinds
        self.kind_columns: tuple[Column, ...] = ()
        self.columns = self._columns_for(())

    def _columns_for(self, kind_columns: tuple[Column, ...]) -> tuple[str, ...]:
        return ("Host", "Kind", "State", *(c.title for c in kind_columns), "Last seen")

    def _kind_columns_of(self, rows: list[HostView]) -> tuple[Column, ...]:
        """The columns of the kinds present, in the registry's order, each once."""
        present = {h.kind for h in rows}
        found: dict[str, Column] = {}
        for kind in self.kinds:
            if kind.name in present:
                for column in kind.columns:
                    found.setdefault(column.key, column)
        return tuple(found.values())

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        host = self.row_at(index)
        if host is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            cells = (host.name, host.kind, host.state, *(c or "–" for c in host.cells(self.kind_columns)),
                     ago(host.last_seen, self._clock()))
            return cells[column]
        if role == Qt.ItemDataRole.ForegroundRole and column == 2:
            return state_colour(host.state)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{host.name}: {host.where}" + (f"\n{host.reason}" if host.reason else "")
        if role == HostRole:
            return host
        return None

    def host_at(self, row: int) -> HostView:
        return self._rows[row]

    def apply(self, rows: list[HostView]) -> None:
        kind_columns = self._kind_columns_of(rows)
        if kind_columns != self.kind_columns:
            # A kind came or went: its columns with it (rare: a host added or removed).
            self.beginResetModel()
            self.kind_columns = kind_columns
            self.columns = self._columns_for(kind_columns)
            self._rows = list(rows)
            self.endResetModel()
            return
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
