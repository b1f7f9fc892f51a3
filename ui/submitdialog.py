"""The dialog after a drop or *Submit job…*: name the job, confirm the main
script, pick the parameter file, set its time limit and retries, see how many
tasks that makes, and queue it.

The parameter file is found as the CLI finds it: the manifest's ``params``,
else the one ``.toml``/``.json``/``.csv`` beside the main script (several: the
user picks). Queueing calls ``submit(folder, params=, main=, name=,
time_limit_s=, retries=)``, which :mod:`sparecycles_ui.app` binds to
:func:`trayapp.job.submit.submit_job` (the CLI's ``submit`` verb); it and
reading the parameter file run on the executor, and a problem is shown in the
dialog with its fix, as the CLI prints it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                             QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from trayapp.errors import UserError
from trayapp.job.folder import JobFolder
from trayapp.job.params import SUPPORTED_SUFFIXES, describe_param_sets, load_param_sets
from trayapp.units import parse_duration

NO_PARAMS = "(none: one task without parameters)"
MANIFEST = "sparecycles.toml"


def main_candidates(folder: JobFolder) -> list[str]:
    top = [f for f in folder.files if "/" not in f]
    return sorted(f for f in top if f == "main.py" or (f.startswith("main_") and f.endswith(".py")))


def param_file_candidates(folder: JobFolder) -> list[str]:
    return sorted(f for f in folder.files if "/" not in f and f != MANIFEST
                  and Path(f).suffix.lower() in SUPPORTED_SUFFIXES)


def default_params_file(folder: JobFolder) -> Path | None:
    """The manifest's parameter file, else the only candidate beside the main script."""
    if folder.params_file is not None:
        return Path(folder.params_file)
    candidates = param_file_candidates(folder)
    return folder.root / candidates[0] if len(candidates) == 1 else None


class SubmitDialog(QDialog):
    submitted = pyqtSignal(object)  # trayapp.job.submit.Submission

    def __init__(self, folder: JobFolder, submit: Callable, executor, parent: QWidget | None = None):
        super().__init__(parent)
        self.folder = folder
        self._submit = submit
        self._executor = executor
        self.setWindowTitle(f"Queue {folder.name}")
        manifest = folder.manifest
        self.name_edit = QLineEdit(folder.name)
        self.time_limit = QLineEdit(_duration_text(manifest.time_limit_s))
        self.time_limit.setPlaceholderText("none (e.g. 30m, 2h)")
        self.retries = QSpinBox()
        self.retries.setRange(0, 100)
        self.retries.setValue(manifest.retries)
        self.retries.setSuffix(" time(s) when its own code fails")
        self.main_box = QComboBox()
        self.main_box.addItems(main_candidates(folder) or [folder.main])
        self.main_box.setCurrentText(folder.main)
        self.params_box = QComboBox()
        self.params_box.addItem(NO_PARAMS, None)
        for name in param_file_candidates(folder):
            self.params_box.addItem(name, str(folder.root / name))
        browse = QPushButton("Choose file…")
        browse.clicked.connect(self._browse)
        params_row = QHBoxLayout()
        params_row.addWidget(self.params_box, 1)
        params_row.addWidget(browse)
        self.count_label = QLabel("")
        self.count_label.setObjectName("taskCount")
        self.problem = QLabel("")
        self.problem.setObjectName("submitProblem")
        self.problem.setStyleSheet("color: #b00020;")
        self.problem.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Folder", QLabel(str(folder.root)))
        form.addRow("Name", self.name_edit)
        form.addRow("Main script", self.main_box)
        form.addRow("Parameters", params_row)
        form.addRow("Tasks", self.count_label)
        form.addRow("Time limit per task", self.time_limit)
        form.addRow("Retry a task", self.retries)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.queue_button = self.buttons.addButton("Queue job", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.queue)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        found = default_params_file(folder)
        if found is not None:
            self.set_params_file(found)
        self.params_box.currentIndexChanged.connect(self._count_tasks)
        self._count_tasks()

    @property
    def params_file(self) -> str | None:
        return self.params_box.currentData()

    def set_params_file(self, path: str | Path) -> None:
        path = str(path)
        row = self.params_box.findData(path)
        if row < 0:
            self.params_box.addItem(Path(path).name, path)
            row = self.params_box.count() - 1
        self.params_box.setCurrentIndex(row)
        self._count_tasks()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Parameter file", str(self.folder.root.parent),
                                              "Parameter files (*.json *.csv *.toml)")
        if path:
            self.set_params_file(path)

    def _count_tasks(self) -> None:
        path = self.params_file
        if path is None:
            self._show_count([{}])
            return
        self.count_label.setText("reading…")
        self._executor.run(lambda: load_param_sets(Path(path)), self._show_count, self._show_problem)

    def _show_count(self, sets: list[dict]) -> None:
        n = len(sets)
        self.count_label.setText(f"{n} task{'s' if n != 1 else ''}: {describe_param_sets(sets)}")
        self.problem.clear()
        self.queue_button.setEnabled(True)

    def _show_problem(self, exc: BaseException) -> None:
        self.count_label.setText("–")
        self.problem.setText(str(exc) if isinstance(exc, UserError) else f"unexpected problem: {exc}")
        self.queue_button.setEnabled(False)

    def options(self) -> dict:
        """The submit verb's keywords from the form; raises UserError for a time limit it cannot read."""
        text = self.time_limit.text().strip()
        try:
            limit = parse_duration(text) if text else None
        except ValueError as exc:
            raise UserError(f"time limit: {exc}", "write it like 90s, 30m, 2h or 1h30m, or leave it empty") from None
        return {"params": self.params_file, "main": self.main_box.currentText(),
                "name": self.name_edit.text().strip() or None, "time_limit_s": limit,
                "retries": self.retries.value()}

    def queue(self) -> None:
        try:
            options = self.options()
        except UserError as exc:
            self._submit_failed(exc)
            return
        self.queue_button.setEnabled(False)
        folder = str(self.folder.root)
        self._executor.run(lambda: self._submit(folder, **options), self._queued, self._submit_failed)

    def _submit_failed(self, exc: BaseException) -> None:
        self.problem.setText(str(exc) if isinstance(exc, UserError) else f"unexpected problem: {exc}")
        self.queue_button.setEnabled(True)  # the user may fix the folder and try again

    def _queued(self, submission) -> None:
        self.submitted.emit(submission)
        self.accept()


def _duration_text(seconds: float | None) -> str:
    if not seconds:
        return ""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
