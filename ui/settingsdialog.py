"""The settings dialog: the same ``config.toml`` the CLI reads.

Each row names the :class:`~trayapp.config.Config` field it edits. A row
whose field the core does not have is shown disabled with a tooltip instead
of being silently dropped (so the dialog and the core can evolve apart). The dialog reports only what the user changed, so saving over
a file the CLI edited meanwhile keeps the CLI's changes.

Rows are grouped by the mode they concern (this PC's own cores as a master;
lending it as a slave), and a row that cannot matter with the other choices
is disabled, saying why: the lending rows in master mode, the idle rows when
the PC lends all the time, "Stop suspended tasks after" when returning users
stop tasks at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                             QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox,
                             QVBoxLayout, QWidget)

from trayapp.config import Config

MODES = (("master", "Master: run my jobs on this PC and the lab's slaves"),
         ("slave", "Slave: lend this PC to the lab while I am away"))
POLICIES = (("kill", "Stop them at once (they run again elsewhere)"),
            ("suspend", "Suspend them; stop them only if I stay"))
LENDING = (("auto", "Only while I am away"), ("off", "All the time (a dedicated compute PC)"))
AUTOSTART_LATER = "not available in this window (it was opened without the login-start setting)"


@dataclass(frozen=True)
class Row:
    key: str  # Config field
    label: str
    kind: str  # "choice", "minutes", "share" (0..1 shown as %), "cores", "folder", "switch"
    choices: tuple = ()
    group: str = "This PC"


OWN_CORES = "Master: this PC's own cores"
LENDING_GROUP = "Slave: lending this PC"
ROWS = (
    Row("mode", "Mode", "choice", MODES),
    Row("results_dir", "Results folder", "folder"),
    Row("slots", "Cores to use or lend", "cores"),
    Row("run_locally", "Run my jobs on this PC too", "switch", group=OWN_CORES),
    Row("idle_detection", "Lend this PC", "choice", LENDING, group=LENDING_GROUP),
    Row("idle_after_s", "I am away after (no keyboard or mouse)", "minutes", group=LENDING_GROUP),
    Row("max_foreign_cpu", "Busy when my programs use more than", "share", group=LENDING_GROUP),
    Row("preempt", "When I come back, running tasks", "choice", POLICIES, group=LENDING_GROUP),
    Row("suspend_grace_s", "Stop suspended tasks after", "minutes", group=LENDING_GROUP),
)
GROUPS = ("This PC", OWN_CORES, LENDING_GROUP)


class SettingsDialog(QDialog):
    """``autostart``: an object with ``enabled() -> bool`` and ``where``, or None
    where this installation cannot start at login (the checkbox is then disabled)."""

    def __init__(self, config: Config, default_results_dir: str, parent: QWidget | None = None, autostart=None):
        super().__init__(parent)
        self.setWindowTitle("SpareCycles settings")
        self.original = config
        self.editors: dict[str, QWidget] = {}
        self.groups: dict[str, QGroupBox] = {}
        forms: dict[str, QFormLayout] = {}
        for title in GROUPS:
            self.groups[title] = QGroupBox(title)
            forms[title] = QFormLayout(self.groups[title])
        for row in ROWS:
            editor = self._editor(row, default_results_dir)
            self.editors[row.key] = editor
            self._set(row, getattr(config, row.key))
            forms[row.group].addRow(row.label, editor)
        form = forms["This PC"]
        self.start_at_login = QCheckBox("Start SpareCycles when I log in")
        self._started_at_login = None
        if autostart is None:
            self.start_at_login.setEnabled(False)
            self.start_at_login.setToolTip(AUTOSTART_LATER)
        else:
            self._started_at_login = autostart.enabled()
            self.start_at_login.setChecked(self._started_at_login)
            self.start_at_login.setToolTip(autostart.where)
        form.addRow("", self.start_at_login)
        self.note = QLabel("A new mode takes effect when SpareCycles starts again.")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for group in self.groups.values():
            layout.addWidget(group)
        layout.addWidget(self.note)
        layout.addWidget(buttons)
        for key in ("mode", "idle_detection", "preempt"):
            self.editors[key].currentIndexChanged.connect(self._enable_relevant)
        self._enable_relevant()

    def _enable_relevant(self, *_args) -> None:
        """Enable only the rows that matter with the current choices; a disabled row says why."""
        mode = self._get(ROWS[0])
        lending = mode != "master"  # "" (not chosen yet) leaves everything open
        always = self.editors["idle_detection"].currentData() == "off"
        kill = self.editors["preempt"].currentData() == "kill"
        self.groups[LENDING_GROUP].setEnabled(lending)
        self.groups[LENDING_GROUP].setToolTip("" if lending else "these apply when this PC lends itself (slave mode)")
        self.groups[OWN_CORES].setEnabled(mode != "slave")
        self.groups[OWN_CORES].setToolTip("" if mode != "slave" else "this applies when this PC runs your jobs "
                                                                     "(master mode)")
        for key in ("idle_after_s", "max_foreign_cpu"):
            self.editors[key].setEnabled(not always)
            self.editors[key].setToolTip("the PC lends all the time, so whether you are away does not matter"
                                         if always else "")
        self.editors["suspend_grace_s"].setEnabled(not kill)
        self.editors["suspend_grace_s"].setToolTip("tasks are stopped at once, never suspended" if kill else "")

    def _editor(self, row: Row, default_results_dir: str) -> QWidget:
        if row.kind == "switch":
            return QCheckBox()
        if row.kind == "choice":
            box = QComboBox()
            for value, text in row.choices:
                box.addItem(text, value)
            return box
        if row.kind == "minutes":
            spin = QDoubleSpinBox()
            spin.setRange(0.5, 24 * 60)
            spin.setDecimals(1)
            spin.setSuffix(" min")
            return spin
        if row.kind == "share":
            spin = QDoubleSpinBox()
            spin.setRange(1, 100)
            spin.setDecimals(0)
            spin.setSuffix(" % of all cores")
            return spin
        if row.kind == "cores":
            spin = QSpinBox()
            spin.setRange(0, 4096)
            spin.setSpecialValueText(f"all ({os.cpu_count() or 1})")
            return spin
        line = QLineEdit()
        line.setPlaceholderText(default_results_dir)
        browse = QPushButton("Choose…")
        browse.clicked.connect(lambda: self._browse(line))
        holder = QWidget()
        holder.line = line  # type: ignore[attr-defined]
        box = QHBoxLayout(holder)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(line, 1)
        box.addWidget(browse)
        return holder

    def _browse(self, line: QLineEdit) -> None:
        path = QFileDialog.getExistingDirectory(self, "Results folder", line.text() or line.placeholderText())
        if path:
            line.setText(path)

    def _set(self, row: Row, value: Any) -> None:
        editor = self.editors[row.key]
        if row.kind == "switch":
            editor.setChecked(bool(value))
        elif row.kind == "choice":
            index = editor.findData(value)
            if index < 0:  # e.g. no mode chosen yet: show that, do not pretend one was
                editor.insertItem(0, "(not chosen yet)" if value == "" else str(value), value)
                index = 0
            editor.setCurrentIndex(index)
        elif row.kind == "minutes":
            editor.setValue(float(value) / 60)
        elif row.kind == "share":
            editor.setValue(round(float(value) * 100))
        elif row.kind == "cores":
            editor.setValue(value)
        else:
            editor.line.setText(value)

    def _get(self, row: Row) -> Any:
        editor = self.editors[row.key]
        if row.kind == "switch":
            return editor.isChecked()
        if row.kind == "choice":
            return editor.currentData()
        if row.kind == "minutes":
            return round(editor.value() * 60, 1)
        if row.kind == "share":
            return round(editor.value() / 100, 2)
        if row.kind == "cores":
            return int(editor.value())
        return editor.line.text().strip()

    def set_value(self, key: str, value: Any) -> None:
        """Set one setting as if the user had (for tests and the first-run dialog)."""
        self._set(next(r for r in ROWS if r.key == key), value)

    def start_at_login_change(self) -> bool | None:
        """True/False if the user switched starting at login on/off, else None."""
        if self._started_at_login is None or self.start_at_login.isChecked() == self._started_at_login:
            return None
        return self.start_at_login.isChecked()

    def changes(self) -> dict[str, Any]:
        """The settings the user changed, by Config field name."""
        changed = {}
        for row in ROWS:
            value = self._get(row)
            old = getattr(self.original, row.key)
            if isinstance(old, bool):
                value = bool(value)
            elif isinstance(old, float):
                value = float(value)
            elif isinstance(old, int) and not isinstance(old, bool):
                value = int(round(value))
            if value != old:
                changed[row.key] = value
        return changed
