"""The jobs table: a thin Qt adapter over :class:`sparecycles_ui.snapshot.JobRow` rows
(each a job's one view, :mod:`trayapp.master.jobview`: the counts ``status`` prints).

:meth:`JobsModel.apply` takes a fresh list of rows (read off the GUI thread)
and tells the views only what changed: ``beginInsertRows`` for new jobs,
``dataChanged`` for the rows whose values changed. A removed job's row is
removed properly. The model keeps submission order; the window shows it
through :func:`sorted_jobs` (newest first, any column sortable by
:data:`SortRole`, which gives numbers where the text would sort wrongly).
"""

from __future__ import annotations

import time
from typing import Callable

from PyQt6.QtCore import QModelIndex, QSortFilterProxyModel, Qt

from sparecycles_ui.rowsmodel import RowsModel
from sparecycles_ui.snapshot import JobRow
from trayapp.humantime import duration, moment

# No "Done" column: the bar's text says how many of how many are finished, and
# "Failed" how many of those failed.
COLUMNS = ("Job", "Id", "State", "Progress", "Failed", "Tasks", "Hosts", "Submitted", "Elapsed", "Left", "Waiting on")
(NAME_COLUMN, ID_COLUMN, STATE_COLUMN, PROGRESS_COLUMN, FAILED_COLUMN, TASKS_COLUMN, HOSTS_COLUMN,
 SUBMITTED_COLUMN, ELAPSED_COLUMN, LEFT_COLUMN, WAITING_COLUMN) = range(len(COLUMNS))
NUMBER_COLUMNS = (FAILED_COLUMN, TASKS_COLUMN, ELAPSED_COLUMN, LEFT_COLUMN)
ProgressRole = Qt.ItemDataRole.UserRole + 1  # 0..1, for the progress delegate
JobRole = Qt.ItemDataRole.UserRole + 2  # the JobRow itself
SortRole = Qt.ItemDataRole.UserRole + 3  # a value that sorts as people expect (numbers, times)


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
        if role == SortRole:
            return self._sort_key(job, column)
        if role == Qt.ItemDataRole.ToolTipRole and column in (NAME_COLUMN, ID_COLUMN, SUBMITTED_COLUMN):
            return f"job {job.id}, submitted {moment(job.created)}\nresults: {job.results_dir}"
        if role == Qt.ItemDataRole.ToolTipRole and column in (STATE_COLUMN, WAITING_COLUMN) and waiting_text(job):
            return waiting_text(job)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in NUMBER_COLUMNS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, job: JobRow, column: int) -> str:
        now = self._clock()
        return (job.name, job.id, job.status.value, progress_text(job), str(job.failed), str(job.total),
                ", ".join(job.hosts) or "–", submitted_text(job.created, now), duration(job.elapsed_s(now)) or "–",
                "–" if job.finished else duration(job.left_s(now)) or "–", waiting_text(job))[column]

    def _sort_key(self, job: JobRow, column: int):
        now = self._clock()
        numbers = {PROGRESS_COLUMN: job.progress, FAILED_COLUMN: job.failed,
                   TASKS_COLUMN: job.total, SUBMITTED_COLUMN: job.created, ELAPSED_COLUMN: job.elapsed_s(now),
                   LEFT_COLUMN: job.left_s(now) if job.left_s(now) is not None else float("inf")}
        if column in numbers:
            return float(numbers[column])
        return self._display(job, column).lower()

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
        for first, last in changed_runs(sorted(changed)):
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
            self.dataChanged.emit(self.index(min(running), ELAPSED_COLUMN), self.index(max(running), LEFT_COLUMN),
                                  [Qt.ItemDataRole.DisplayRole])


def submitted_text(ts: float, now: float) -> str:
    """The moment, without the year while it is this year's (the column stays narrow)."""
    text = moment(ts)
    return text[5:] if text[:4] == moment(now)[:4] else text


def waiting_text(job: JobRow) -> str:
    """What holds the job up: notes on its tasks under way (an environment being
    built), then why its queued tasks do not run (a host paused, a decline)."""
    return "; ".join(text for text in (job.waiting_on, job.why) if text)


def progress_text(job: JobRow) -> str:
    """``38 % (3/8)``: the share finished, and the counts it comes from."""
    return f"{job.progress * 100:.0f} % ({job.finished_count}/{job.total})"


def sorted_jobs(model: JobsModel, parent=None) -> QSortFilterProxyModel:
    """The jobs as the window lists them: newest first until the user sorts by another column."""
    proxy = QSortFilterProxyModel(parent)
    proxy.setSourceModel(model)
    proxy.setSortRole(SortRole)
    proxy.setDynamicSortFilter(True)
    proxy.sort(SUBMITTED_COLUMN, Qt.SortOrder.DescendingOrder)
    return proxy


def changed_runs(rows: list[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7, 8] -> [(1, 3), (7, 8)]"""
    runs: list[tuple[int, int]] = []
    for row in rows:
        if runs and runs[-1][1] == row - 1:
            runs[-1] = (runs[-1][0], row)
        else:
            runs.append((row, row))
    return runs
