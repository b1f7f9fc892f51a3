"""The first start's question: is this PC a master or a slave?

For a slave it also asks how long the PC must be idle and how many cores to
lend.
"""

from __future__ import annotations

from PyQt6.QtWidgets import (QButtonGroup, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QLabel,
                             QRadioButton, QSpinBox, QVBoxLayout)

from trayapp.config import Config
from sparecycles_ui.settingsdialog import MODES


class FirstRunDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Welcome to SpareCycles")
        self.buttons_group = QButtonGroup(self)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("How will this PC take part?"))
        self.mode_buttons = {}
        for value, text in MODES:
            button = QRadioButton(text)
            self.buttons_group.addButton(button)
            self.mode_buttons[value] = button
            layout.addWidget(button)
        self.mode_buttons["master"].setChecked(True)
        self.idle_minutes = QDoubleSpinBox()
        self.idle_minutes.setRange(0.5, 24 * 60)
        self.idle_minutes.setValue(5)
        self.idle_minutes.setSuffix(" min")
        self.cores = QSpinBox()
        self.cores.setRange(0, 4096)
        self.cores.setSpecialValueText(f"all ({Config().effective_slots})")
        self.slave_form = QFormLayout()
        self.slave_form.addRow("Lend it after it is idle for", self.idle_minutes)
        self.slave_form.addRow("Cores to lend", self.cores)
        layout.addLayout(self.slave_form)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.buttons_group.buttonToggled.connect(self._mode_changed)
        self._mode_changed()

    @property
    def mode(self) -> str:
        return "slave" if self.mode_buttons["slave"].isChecked() else "master"

    def _mode_changed(self, *_args) -> None:
        slave = self.mode == "slave"
        for widget in (self.idle_minutes, self.cores):
            widget.setVisible(slave)
            self.slave_form.labelForField(widget).setVisible(slave)

    def changes(self) -> dict:
        values = {"mode": self.mode}
        if self.mode == "slave":
            values["slots"] = self.cores.value()
            values["idle_after_s"] = round(self.idle_minutes.value() * 60, 1)
        return values
