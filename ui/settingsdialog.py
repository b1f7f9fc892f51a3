"""The settings dialog: the same ``config.toml`` the CLI reads.

Its rows are the settings the table (:class:`~trayapp.config.Config`) gives a
dialog label, with the table's choices and ranges, grouped by the mode the
table says they concern. The dialog reports only what the user changed, so
saving over a file the CLI edited meanwhile keeps the CLI's changes.

A row that cannot matter with the other choices is disabled, saying why: the
lending rows in master mode, the idle rows when the PC lends all the time,
"Stop suspended tasks after" when returning users stop tasks at once.
"""

from __future__ import annotations

import math
from typing import Any

from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                             QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox,
                             QVBoxLayout, QWidget)

from trayapp.config import SETTINGS, Config
from trayapp.config_schema import BOTH, MASTER, SLAVE, Setting

ROWS = tuple(s for s in SETTINGS if s.label)
MODES = tuple((value, words) for value, words in next(s for s in ROWS if s.name == "mode").choices if value)
AUTOSTART_LATER = "not available in this window (it was opened without the login-start setting)"
OWN_CORES = "Master: this PC's own cores"
LENDING_GROUP = "Slave: lending this PC"
GROUPS = {BOTH: "This PC", MASTER: OWN_CORES, SLAVE: LENDING_GROUP}
# A spin box needs a top; a setting open-ended in the table stops here in the dialog's unit
# (or at the value the file holds, if higher: opening the dialog never changes a setting).
SPIN_TOP = 99_999
SCALE = {"minutes": 1 / 60, "percent": 100}  # the dialog's unit per stored unit


def spin_range(setting: Setting, value: float) -> tuple[float, float]:
    """The spin box's range in the dialog's unit: the table's range, with 0
    included where the table gives 0 a meaning."""
    allowed, scale = setting.range, SCALE.get(setting.unit, 1)
    low = 0 if allowed.zero_means else allowed.low * scale + (1 if allowed.low_open else 0)
    high = allowed.high * scale if allowed.high != math.inf else max(SPIN_TOP, value * scale)
    return low, high


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
        for title in GROUPS.values():
            self.groups[title] = QGroupBox(title)
            forms[title] = QFormLayout(self.groups[title])
        for row in ROWS:
            editor = self._editor(row, default_results_dir, getattr(config, row.name))
            self.editors[row.name] = editor
            self._set(row, getattr(config, row.name))
            forms[GROUPS[row.mode]].addRow(row.label, editor)
        form = forms[GROUPS[BOTH]]
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
        mode = self.editors["mode"].currentData()
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

    def _editor(self, row: Setting, default_results_dir: str, value: Any) -> QWidget:
        if row.type is bool:
            return QCheckBox()
        if row.choices:
            box = QComboBox()
            for choice, text in row.choices:
                if choice:  # "" (not chosen yet) is shown only while it is the value: see _set
                    box.addItem(text, choice)
            return box
        if row.unit == "folder":
            return self._folder(default_results_dir)
        low, high = spin_range(row, value)
        spin = QSpinBox() if row.type is int else QDoubleSpinBox()
        if row.unit == "minutes":
            spin.setDecimals(1)
            spin.setSuffix(" min")
        elif row.unit == "percent":
            spin.setDecimals(0)
            spin.setSuffix(" % of all cores")
        spin.setRange(low, min(high, 2**31 - 1))
        if row.range.zero_means:
            spin.setSpecialValueText(row.range.zero_means)
        return spin

    def _folder(self, default_results_dir: str) -> QWidget:
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

    def _set(self, row: Setting, value: Any) -> None:
        editor = self.editors[row.name]
        if row.type is bool:
            editor.setChecked(bool(value))
        elif row.choices:
            index = editor.findData(value)
            if index < 0:  # e.g. no mode chosen yet: show that, do not pretend one was
                editor.insertItem(0, "(not chosen yet)" if value == "" else str(value), value)
                index = 0
            editor.setCurrentIndex(index)
        elif row.unit == "folder":
            editor.line.setText(value)
        else:
            editor.setValue(value * SCALE.get(row.unit, 1))

    def _get(self, row: Setting) -> Any:
        editor = self.editors[row.name]
        if row.type is bool:
            return editor.isChecked()
        if row.choices:
            return editor.currentData()
        if row.unit == "folder":
            return editor.line.text().strip()
        if row.type is int:
            return int(editor.value())
        # Rounded as shown: 5.0 min is 300 s, not 299.99999 s.
        return round(editor.value() / SCALE.get(row.unit, 1), 2)

    def set_value(self, key: str, value: Any) -> None:
        """Set one setting as if the user had (for tests and the first-run dialog)."""
        self._set(next(r for r in ROWS if r.name == key), value)

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
            old = getattr(self.original, row.name)
            if isinstance(old, bool):
                value = bool(value)
            elif isinstance(old, float):
                value = float(value)
            elif isinstance(old, int) and not isinstance(old, bool):
                value = int(round(value))
            if value != old:
                changed[row.name] = value
        return changed
