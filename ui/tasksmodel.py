"""A job's tasks as a table: a thin Qt adapter over :class:`trayapp.master.tasktable.TaskRow` rows.

One column per parameter, so a sweep reads like its parameter file. The rows
come from one query on a worker thread; :meth:`TasksModel.apply` signals only
the rows that changed, so the live view of a running 10,000-task sweep costs
a comparison per row, never a widget per row. It shows one state, or one
group of identical failures, and sorts by any column, itself.
"""

from __future__ import annotations

import time
from typing import Callable

from PyQt6.QtCore import QModelIndex, Qt
from PyQt6.QtGui import QColor

from trayapp.humantime import duration
from trayapp.master.tasktable import TaskRow, param_names
from sparecycles_ui.jobsmodel import SortRole, changed_runs
from sparecycles_ui.rowsmodel import RowsModel

FIXED_BEFORE = ("Task",)
FIXED_AFTER = ("State", "Host", "Attempts", "Elapsed", "Exit code")
NUMERIC = ("Task", "Attempts", "Elapsed", "Exit code")
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
        self._all: list[TaskRow] = []  # every task of the job, by index; self._rows: those shown
        self._row_of: dict[int, int] = {}
        self.state: str | None = None
        self.indexes: frozenset[int] | None = None
        self.sort_column, self.sort_order = 0, Qt.SortOrder.AscendingOrder

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
        """A float for numbers (empty cells last), else the text: Qt compares these natively
        (a Python tuple would reach the proxy as an opaque object it cannot order)."""
        value = self._cell(task, column)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if value is None:
            return float("inf") if self.columns[column] in NUMERIC else ""
        return str(value).lower()

    def task_at(self, row: int) -> TaskRow:
        return self._rows[row]

    # ----- what is shown, in which order ------------------------------------------------
    # The model filters and sorts its own rows: Python's sort with one key per row
    # takes milliseconds for 10,000 tasks, where a QSortFilterProxyModel calls back
    # into Python twice per comparison (seconds).

    def show_state(self, state: str | None) -> None:
        """Only the tasks in ``state`` (None: all)."""
        self.state, self.indexes = state, None
        self._relayout(self._shown_of(self._all))

    def show_tasks(self, indexes) -> None:
        """Only these tasks (a group of identical failures)."""
        self.state, self.indexes = None, frozenset(indexes)
        self._relayout(self._shown_of(self._all))

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self.columns):
            return
        self.sort_column, self.sort_order = column, order
        self._relayout(self._shown_of(self._all))

    def _shown_of(self, rows: list[TaskRow]) -> list[TaskRow]:
        if self.indexes is not None:
            rows = [r for r in rows if r.idx in self.indexes]
        elif self.state is not None:
            rows = [r for r in rows if r.status == self.state]
        if self.sort_column == 0:
            ordered = rows  # already by task index
        else:
            numeric = self.columns[self.sort_column] in NUMERIC or all(
                isinstance(self._cell(r, self.sort_column), (int, float, type(None))) for r in rows[:200])
            key = (lambda r: (self._cell(r, self.sort_column) is None, self._sort_key(r, self.sort_column))) \
                if numeric else (lambda r: str(self._sort_key(r, self.sort_column)))
            ordered = sorted(rows, key=key)  # stable: ties stay in task order
        return ordered[::-1] if self.sort_order == Qt.SortOrder.DescendingOrder else ordered

    def _relayout(self, shown: list[TaskRow]) -> None:
        """Show ``shown``, keeping the selection on the same tasks wherever they move."""
        self.layoutAboutToBeChanged.emit()
        before = self.persistentIndexList()
        ids = [self._rows[i.row()].idx if 0 <= i.row() < len(self._rows) else None for i in before]
        self._rows = shown
        self._row_of = {r.idx: n for n, r in enumerate(shown)}
        after = [self.index(self._row_of[i], old.column()) if i in self._row_of else QModelIndex()
                 for i, old in zip(ids, before)]
        self.changePersistentIndexList(before, after)
        self.layoutChanged.emit()

    def apply(self, rows: list[TaskRow]) -> None:
        """Bring the model to ``rows`` (a job's tasks, by index), signalling only changes."""
        params = param_names(rows)
        if params != self.params or len(rows) != len(self._all):
            # A job's tasks never come and go: this is the first read (or another job).
            self.beginResetModel()
            self.params = params
            self.columns = (*FIXED_BEFORE, *params, *FIXED_AFTER)
            self._all = list(rows)
            self._rows = self._shown_of(self._all)
            self._row_of = {r.idx: n for n, r in enumerate(self._rows)}
            self.endResetModel()
            return
        self._all = list(rows)
        shown = self._shown_of(self._all)
        if [r.idx for r in shown] != [r.idx for r in self._rows]:
            self._relayout(shown)  # a task entered or left the filter, or moved in the order
            return
        changed = [i for i, (old, new) in enumerate(zip(self._rows, shown)) if old != new]
        self._rows = shown
        for first, last in changed_runs(changed):
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(self.columns) - 1))

    def tick(self) -> None:
        """A running task's elapsed time grows with the clock alone."""
        running = [i for i, r in enumerate(self._rows) if r.started is not None and r.ended is None]
        if running:
            column = self.column_of("Elapsed")
            self.dataChanged.emit(self.index(min(running), column), self.index(max(running), column),
                                  [Qt.ItemDataRole.DisplayRole])
