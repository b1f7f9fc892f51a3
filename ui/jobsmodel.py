"""The jobs table: a thin Qt adapter over :class:`sparecycles_ui.snapshot.JobRow` rows.

:meth:`JobsModel.apply` takes a fresh list of rows (read off the GUI thread)
and tells the views only what changed: ``beginInsertRows`` for new jobs,
``dataChanged`` for the rows whose values changed. Jobs are never deleted from
the queue, but a row that disappears is removed properly all the same.
"""

from __future__ import annotations

import time
from typing import Callable

from PyQt6.QtCore import QModelIndex, Qt

from sparecycles_ui.rowsmodel import RowsModel
from sparecycles_ui.snapshot import JobRow
from trayapp.humantime import duration

COLUMNS = ("Job", "State", "Progress", "Done", "Failed", "Tasks", "Hosts", "Elapsed", "Left")
PROGRESS_COLUMN = COLUMNS.index("Progress")
ProgressRole = Qt.ItemDataRole.UserRole + 1  # 0..1, for the progress delegate
JobRole = Qt.ItemDataRole.UserRole + 2  # the JobRow itself


class JobsModel(RowsModel):
    columns = COLUMNS

    def __init__(self, clock: Callable[[], float] = time.time, parent=None):
        super().__init__(clock, parent)
        self._row_of: dict[int, int] = {}  # job seq -> row number

    # ----- reading ----------------------------------------------------------

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        job = self.row_at(index)
        if job is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(job, column)
        if role == ProgressRole:
            return job.progress
        if role == JobRole:
            return job
        if role == Qt.ItemDataRole.ToolTipRole and column == 0:
            return f"job {job.id}\nresults: {job.results_dir}"
        if role == Qt.ItemDataRole.ToolTipRole and column == 1 and job.waiting_on:
            return job.waiting_on
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (3, 4, 5, 7, 8):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, job: JobRow, column: int) -> str:
        now = self._clock()
        state = f"{job.status}: {job.waiting_on}" if job.waiting_on else job.status
        return (job.name, state, f"{job.progress:.0%}", str(job.done), str(job.failed), str(job.total),
                ", ".join(job.hosts) or "–", duration(job.elapsed_s(now)) or "–",
                "–" if job.finished else duration(job.left_s(now)) or "–")[column]

    def job_at(self, row: int) -> JobRow:
        return self._rows[row]

    def row_of(self, seq: int) -> int | None:
        return self._row_of.get(seq)

    # ----- updating ---------------------------------------------------------

    def apply(self, rows: list[JobRow]) -> None:
        """Bring the model to ``rows`` (ordered by submission), signalling only changes."""
        wanted = {r.seq for r in rows}
        for row in reversed(range(len(self._rows))):
            if self._rows[row].seq not in wanted:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self.endRemoveRows()
        self._row_of = {r.seq: i for i, r in enumerate(self._rows)}
        new, changed = [], []
        for fresh in rows:
            row = self._row_of.get(fresh.seq)
            if row is None:
                new.append(fresh)
            elif self._rows[row] != fresh:
                self._rows[row] = fresh
                changed.append(row)
        # One signal per run of neighbouring changed rows: a view does its work
        # per signal, and a busy queue changes many rows at once.
        for first, last in _runs(sorted(changed)):
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(COLUMNS) - 1))
        if new:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            self._rows.extend(new)
            for i, r in enumerate(new, first):
                self._row_of[r.seq] = i
            self.endInsertRows()

    def tick(self) -> None:
        """Elapsed and left change with the clock alone: repaint those columns of running jobs."""
        running = [i for i, r in enumerate(self._rows) if r.finished is None]
        if running:
            self.dataChanged.emit(self.index(min(running), 7), self.index(max(running), 8),
                                  [Qt.ItemDataRole.DisplayRole])


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7, 8] -> [(1, 3), (7, 8)]"""
    runs: list[tuple[int, int]] = []
    for row in rows:
        if runs and runs[-1][1] == row - 1:
            runs[-1] = (runs[-1][0], row)
        else:
            runs.append((row, row))
    return runs
