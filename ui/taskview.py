"""A job's tasks: parameters, state, host, attempts, elapsed time and exit code,
one row per task; identical failures grouped; the selected task's output.

Opened by double-clicking a job (or *Tasks…*). Everything it reads goes through
the executor: the tasks in one query, a task's log tail from its results folder
(or, while it runs on this PC, from the spool), refreshed every ``interval_ms``
while the window is open, so a running task's output grows as you watch.
"""

from __future__ import annotations

from typing import Callable

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QHBoxLayout, QHeaderView, QLabel, QListWidget,
                             QListWidgetItem, QPlainTextEdit, QPushButton, QSplitter, QTableView, QTabWidget,
                             QVBoxLayout, QWidget)

from trayapp.master.tasktable import TaskLog, TaskRow, failure_groups
from trayapp.status import TaskStatus
from sparecycles_ui.tasksmodel import TasksModel

ALL_STATES = "All states"


class TaskView(QDialog):
    def __init__(self, job_name: str, load: Callable, load_log: Callable, retry: Callable, executor, *,
                 open_folder: Callable[[str], bool], interval_ms: int = 1000, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Tasks of {job_name}")
        self.resize(980, 640)
        self._load, self._load_log, self._retry = load, load_log, retry
        self.executor, self.open_folder = executor, open_folder
        self.job = None
        self._loading = False
        self._log_for: TaskRow | None = None
        self._log_folder: str | None = None

        self.model = TasksModel(parent=self)
        self.filter = self.model  # it filters and sorts its own rows (fast for 10,000 tasks)
        self.summary = QLabel("reading the tasks…")
        self.summary.setObjectName("taskSummary")
        self.state_box = QComboBox()
        self.state_box.addItem(ALL_STATES, None)
        for state in TaskStatus:
            self.state_box.addItem(state.value, state.value)
        self.state_box.currentIndexChanged.connect(lambda _i: self.filter.show_state(self.state_box.currentData()))
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(QLabel("Show:"))
        top.addWidget(self.state_box)

        self.table = QTableView()
        self.table.setModel(self.filter)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().hide()
        # Fixed row heights and no measuring of contents: a 10,000-row table opens at once.
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.model.modelReset.connect(self._fit_columns)

        self.failures = QListWidget()
        self.failures.setObjectName("failureGroups")
        self.failures.setWordWrap(True)  # a failure's line is the point: shown whole, not cut
        self.failures.itemClicked.connect(self._show_group)
        self.where = QLabel("select a task to see its output")
        self.where.setWordWrap(True)
        self.stdout, self.stderr = QPlainTextEdit(), QPlainTextEdit()
        self.logs = QTabWidget()
        for edit, title in ((self.stderr, "stderr"), (self.stdout, "stdout")):
            edit.setReadOnly(True)
            edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            edit.setStyleSheet("font-family: monospace;")
            self.logs.addTab(edit, title)
        log_pane = QWidget()
        log_layout = QVBoxLayout(log_pane)
        log_layout.setContentsMargins(0, 0, 0, 0)
        log_layout.addWidget(self.where)
        log_layout.addWidget(self.logs, 1)
        failures_pane = QWidget()
        failures_layout = QVBoxLayout(failures_pane)
        failures_layout.setContentsMargins(0, 0, 0, 0)
        failures_layout.addWidget(QLabel("Identical failures (click to show their tasks):"))
        failures_layout.addWidget(self.failures, 1)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(failures_pane)
        bottom.addWidget(log_pane)
        bottom.setSizes([320, 640])
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(bottom)
        split.setSizes([380, 220])

        self.retry_button = QPushButton("Retry selected")
        self.retry_button.clicked.connect(self.retry_selected)
        self.folder_button = QPushButton("Open results folder")
        self.folder_button.clicked.connect(self.open_results)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        self.problem = QLabel("")
        self.problem.setWordWrap(True)
        buttons = QHBoxLayout()
        for button in (self.retry_button, self.folder_button):
            buttons.addWidget(button)
        buttons.addWidget(self.problem, 1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addLayout(buttons)
        self._update_buttons()

        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    # ----- reading -----------------------------------------------------------------

    def refresh(self) -> None:
        if self._loading:
            return  # the previous read is still under way (a slow disk): skip a beat
        self._loading = True
        self.executor.run(self._load, self._loaded, self._failed)

    def _loaded(self, found) -> None:
        self._loading = False
        self.job = found.job
        self.model.apply(found.rows)
        self.model.tick()
        counts = {state.value: found.job.count(state) for state in TaskStatus}
        self.summary.setText(f"{found.job.name} ({found.job.id}): {found.job.total} task(s); " + ", ".join(
            f"{n} {state}" for state, n in counts.items() if n))
        self._show_groups(found.rows)
        selected = self.selected_tasks()
        if len(selected) == 1 and (self._log_for is None or self._log_for != selected[0]
                                   or selected[0].status in (TaskStatus.RUNNING.value, TaskStatus.DISPATCHED.value)):
            self._read_log(selected[0])
        self._update_buttons()

    def _failed(self, exc: BaseException) -> None:
        self._loading = False
        self.problem.setText(str(exc))

    def _show_groups(self, rows: list[TaskRow]) -> None:
        groups = failure_groups(rows)
        texts = [f"{len(indexes)} task(s): {failure}" for failure, indexes in groups]
        if texts == [self.failures.item(i).text() for i in range(self.failures.count())]:
            return
        self.failures.clear()
        for text, (_failure, indexes) in zip(texts, groups):
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, indexes)
            item.setToolTip("tasks " + ", ".join(map(str, indexes[:50])) + (" …" if len(indexes) > 50 else ""))
            self.failures.addItem(item)
        if not groups:
            self.failures.addItem("none")

    def _show_group(self, item: QListWidgetItem) -> None:
        indexes = item.data(Qt.ItemDataRole.UserRole)
        if indexes:
            self.state_box.blockSignals(True)
            self.state_box.setCurrentIndex(0)
            self.state_box.blockSignals(False)
            self.filter.show_tasks(indexes)
            self.table.selectRow(0)

    def _fit_columns(self) -> None:
        """Widths from the header titles and the first rows only: measuring all 10,000 would take seconds."""
        header = self.table.horizontalHeader()
        metrics = self.table.fontMetrics()
        sample = min(self.model.rowCount(), 50)
        for column in range(self.model.columnCount()):
            texts = [self.model.columns[column]] + [self.model.index(r, column).data() or "" for r in range(sample)]
            header.resizeSection(column, min(260, max(metrics.horizontalAdvance(t) for t in texts) + 24))

    # ----- the selected tasks ----------------------------------------------------------

    def selected_tasks(self) -> list[TaskRow]:
        rows = self.table.selectionModel().selectedRows()
        return [self.model.task_at(index.row()) for index in rows]

    def _selection_changed(self, *_args) -> None:
        selected = self.selected_tasks()
        if len(selected) == 1:
            self._read_log(selected[0])
        self._update_buttons()

    def _read_log(self, row: TaskRow) -> None:
        if self.job is None:
            return
        self._log_for = row
        job = self.job
        self.executor.run(lambda: self._load_log(job, row), self._show_log, self._failed)

    def _show_log(self, log: TaskLog) -> None:
        self.where.setText(log.where)
        for edit, text in ((self.stdout, log.stdout), (self.stderr, log.stderr)):
            if edit.toPlainText() != text:
                edit.setPlainText(text)
                edit.verticalScrollBar().setValue(edit.verticalScrollBar().maximum())  # the tail is what matters
        if not log.stderr and log.stdout:
            self.logs.setCurrentWidget(self.stdout)
        self._log_folder = log.folder
        self._update_buttons()

    def _update_buttons(self) -> None:
        selected = self.selected_tasks()
        retryable = (TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)
        self.retry_button.setEnabled(any(t.status in retryable for t in selected))
        self.folder_button.setEnabled(len(selected) == 1 and bool(self._log_folder))

    def retry_selected(self) -> None:
        indexes = [t.idx for t in self.selected_tasks()]
        self.executor.run(lambda: self._retry(indexes), self._retried, self._failed)

    def _retried(self, n: int) -> None:
        self.problem.setText(f"queued {n} task(s) again")
        self.refresh()

    def open_results(self) -> None:
        folder = self._log_folder
        if folder and not self.open_folder(folder):
            self.problem.setText(f"could not open a file manager; the results are in {folder}")

    def closeEvent(self, event) -> None:
        self.timer.stop()
        super().closeEvent(event)

    def done(self, code: int) -> None:
        self.timer.stop()
        super().done(code)
