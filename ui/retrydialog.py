"""Retrying a job's failed and cancelled tasks: as they were packed, or from the folder as it is now."""

from __future__ import annotations

import inspect

from PyQt6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QLabel, QVBoxLayout

from sparecycles_ui.snapshot import JobRow


def accepts_keyword(function, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def retried(result) -> int:
    """How many tasks a retry queued, whatever the verb returns (a count, or a report with one)."""
    return result if isinstance(result, int) else getattr(result, "retried", getattr(result, "count", 0))


class RetryDialog(QDialog):
    def __init__(self, job: JobRow, *, can_repack: bool, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Retry {job.name}")
        n = job.failed + job.cancelled
        text = QLabel(f"Queue the {n} failed or cancelled task(s) of {job.name} ({job.id}) again?")
        text.setWordWrap(True)
        self.repack = QCheckBox("Pack the job folder again first (I changed its code or data)")
        self.repack.setEnabled(can_repack)
        if not can_repack:
            self.repack.setToolTip("this version retries with the job as it was packed")
        self.change = QLabel("")
        self.change.setWordWrap(True)
        self.change.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.retry_button = buttons.addButton("Retry", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (text, self.repack, self.change, buttons):
            layout.addWidget(widget)

    def show_folder_change(self, change: str | None) -> None:
        """What changed in the folder since it was packed: then packing again is the likely wish."""
        if change and self.repack.isEnabled():
            self.change.setText(f"Since the job was submitted: {change}.")
            self.change.show()
            self.repack.setChecked(True)
