"""A job's tasks as a table: a thin Qt adapter over :class:`trayapp.master.tasktable.TaskRow` rows.

One column per parameter, so a sweep reads like its parameter file. The rows
come from one query on a worker thread; :meth:`TasksModel.apply` signals only
the rows that changed, so the live view of a running 10,000-task sweep costs
a comparison per row, never a widget per row. :class:`TaskFilter` shows one
state, or one group of identical failures.
"""

from __future__ import annotations

import time
from typing import Callable

from PyQt6.QtCore import QModelIndex, QSortFilterProxyModel, Qt
from PyQt6.QtGui import QColor

from trayapp.humantime import duration
from trayapp.master.tasktable import TaskRow, param_names
from sparecycles_ui.jobsmodel import SortRole, changed_runs
from sparecycles_ui.rowsmodel import RowsModel

FIXED_BEFORE = ("Task",)
FIXED_AFTER = ("State", "Host", "Attempts", "Elapsed", "Exit code")
TaskRole = Qt.ItemDataRole.UserRole + 2
STATE_TEXT_COLOURS = {"failed": "#b00020", "done": "#1b5e20", "running": "#0d47a1", "cancelled": "#616161"}


def _value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "–" if value is None else str(value)


class TasksModel(RowsModel):
    def __init__(self, clock: Callable[[], float] = time.time, parent=None):
        super().__init__(clock, parent)
        self.params: list[str] = []
        self.columns = (*FIXED_BEFORE, *FIXED_AFTER)

    def column_of(self, title: str) -> int:
        return self.columns.index(title)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        task: TaskRow | None = self.row_at(index)
        if task is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(task, column)
        if role == SortRole:
            return self._sort_key(task, column)
        if role == TaskRole:
            return task
        if role == Qt.ItemDataRole.ForegroundRole and self.columns[column] == "State":
            colour = STATE_TEXT_COLOURS.get(task.status)
            return QColor(colour) if colour else None
        if role == Qt.ItemDataRole.ToolTipRole and task.message:
            return task.message
        if role == Qt.ItemDataRole.TextAlignmentRole and self.columns[column] != "Host" \
                and self.columns[column] != "State":
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _cell(self, task: TaskRow, column: int):
        title = self.columns[column]
        if column == 0:
            return task.idx
        if 0 < column <= len(self.params):
            return task.params.get(self.params[column - 1])
        return {"State": task.status, "Host": task.host, "Attempts": task.attempts,
                "Elapsed": task.elapsed_s(self._clock()), "Exit code": task.exit_code}[title]

    def _display(self, task: TaskRow, column: int) -> str:
        value = self._cell(task, column)
        if self.columns[column] == "Elapsed":
            return duration(value) or "–"
        return _value_text(value)

    def _sort_key(self, task: TaskRow, column: int):
        value = self._cell(task, column)
        if isinstance(value, bool) or value is None:
            return (1, "")  # empty cells last
        if isinstance(value, (int, float)):
            return (0, float(value))
        return (0, str(value).lower())

    def task_at(self, row: int) -> TaskRow:
        return self._rows[row]

    def apply(self, rows: list[TaskRow]) -> None:
        """Bring the model to ``rows`` (a job's tasks, by index), signalling only changes."""
        params = param_names(rows)
        if params != self.params or len(rows) != len(self._rows):
            # A job's tasks never come and go: this is the first read (or another job).
            self.beginResetModel()
            self.params = params
            self.columns = (*FIXED_BEFORE, *params, *FIXED_AFTER)
            self._rows = list(rows)
            self.endResetModel()
            return
        changed = [i for i, (old, new) in enumerate(zip(self._rows, rows)) if old != new]
        self._rows = list(rows)
        for first, last in changed_runs(changed):
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(self.columns) - 1))

    def tick(self) -> None:
        """A running task's elapsed time grows with the clock alone."""
        running = [i for i, r in enumerate(self._rows) if r.started is not None and r.ended is None]
        if running:
            column = self.column_of("Elapsed")
            self.dataChanged.emit(self.index(min(running), column), self.index(max(running), column),
                                  [Qt.ItemDataRole.DisplayRole])


class TaskFilter(QSortFilterProxyModel):
    """Shows the tasks of one state (None: all), or only the tasks in ``indexes``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.state: str | None = None
        self.indexes: frozenset[int] | None = None
        self.setSortRole(SortRole)
        self.setDynamicSortFilter(True)

    def show_state(self, state: str | None) -> None:
        self.state, self.indexes = state, None
        self.invalidateFilter()

    def show_tasks(self, indexes) -> None:
        self.state, self.indexes = None, frozenset(indexes)
        self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:
        model = self.sourceModel()
        if source_row >= model.rowCount():
            return False
        task = model.task_at(source_row)
        if self.indexes is not None:
            return task.idx in self.indexes
        return self.state is None or task.status == self.state
