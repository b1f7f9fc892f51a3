"""Adding a slave PC (a host of the ``ssh`` kind), and trusting its SSH key after seeing the fingerprint."""

from __future__ import annotations

import getpass

from PyQt6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QSpinBox,
                             QVBoxLayout)

from trayapp.master.hostkeys import PresentedKey
from trayapp.master.kinds.ssh import DEFAULT_AGENT_COMMAND


class AddHostDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Add a slave PC")
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. lab-07")
        self.address = QLineEdit()
        self.address.setPlaceholderText("host name or IP address")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(22)
        self.user = QLineEdit(getpass.getuser())
        self.key = QLineEdit()
        self.key.setPlaceholderText("default: your SSH agent and ~/.ssh keys")
        self.agent_command = QLineEdit(DEFAULT_AGENT_COMMAND)
        self.slots = QSpinBox()
        self.slots.setRange(0, 1024)
        self.slots.setSpecialValueText("as many as it grants")
        form = QFormLayout()
        for label, widget in (("Name", self.name), ("Address", self.address), ("SSH port", self.port),
                              ("User", self.user), ("Key file", self.key), ("Agent command", self.agent_command),
                              ("Most slots", self.slots)):
            form.addRow(label, widget)
        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #b00020;")
        self.problem.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(buttons)

    def values(self) -> tuple[str, str, dict]:
        """The host's name, its kind, and the kind's ``hosts add`` options (dest -> value, None: not given)."""
        options = {"host": self.address.text().strip() or None, "port": self.port.value(),
                   "user": self.user.text().strip() or None, "key": self.key.text().strip() or None,
                   "agent_command": self.agent_command.text().strip() or None, "slots": self.slots.value() or None}
        return self.name.text().strip(), "ssh", options


class TrustDialog(QDialog):
    """Shows the fingerprint the host presents; the user compares it with the PC's own."""

    def __init__(self, key: PresentedKey, parent=None):
        super().__init__(parent)
        self.key = key
        self.setWindowTitle(f"Trust {key.host}?")
        text = {
            "new": f"{key.host} ({key.address}:{key.port}) presents this {key.key_type} key:",
            "trusted": f"{key.host} is already trusted with this {key.key_type} key:",
            "changed": f"WARNING: the key of {key.host} has CHANGED. It now presents this {key.key_type} key:",
        }[key.known]
        self.fingerprint = QLabel(key.fingerprint)
        self.fingerprint.setObjectName("fingerprint")
        self.fingerprint.setStyleSheet("font-family: monospace; font-size: 12pt;")
        self.replace = QCheckBox("Replace the key I trusted before (the PC was reinstalled)")
        self.replace.setVisible(key.known == "changed")
        hint = QLabel("Compare it with the PC's own: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub")
        hint.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.trust_button = buttons.addButton("Trust this key", QDialogButtonBox.ButtonRole.AcceptRole)
        self.trust_button.setEnabled(key.known != "trusted")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (QLabel(text), self.fingerprint, self.replace, hint, buttons):
            layout.addWidget(widget)
