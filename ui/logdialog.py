"""A job's failed tasks with the tail of each one's log."""

from __future__ import annotations

from PyQt6.QtGui import QFontDatabase
from PyQt6.QtWidgets import QDialog, QLabel, QListWidget, QPlainTextEdit, QSplitter, QVBoxLayout

from sparecycles_ui.verbs import FailedTask


class FailedLogDialog(QDialog):
    def __init__(self, job_name: str, tasks: list[FailedTask], parent=None):
        super().__init__(parent)
        self.tasks = tasks
        self.setWindowTitle(f"Failed tasks of {job_name}")
        self.resize(760, 460)
        self.list = QListWidget()
        for task in tasks:
            self.list.addItem(f"task {task.idx}: {task.message.splitlines()[0] if task.message else 'failed'}")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.where = QLabel("")
        splitter = QSplitter()
        splitter.addWidget(self.list)
        splitter.addWidget(self.log)
        splitter.setSizes([220, 540])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        layout.addWidget(self.where)
        self.list.currentRowChanged.connect(self._show)
        if tasks:
            self.list.setCurrentRow(0)

    def _show(self, row: int) -> None:
        if not 0 <= row < len(self.tasks):
            return
        task = self.tasks[row]
        self.log.setPlainText(task.log or task.message or "(no log came back)")
        self.where.setText(task.log_file or "")
