"""Adding a host of any registered kind (a slave PC, a SLURM cluster, ...),
and trusting its SSH key after seeing the fingerprint.

The add dialog is built from what each kind declares (its ``hosts add``
options, :class:`~trayapp.master.kinds.AddOption`): a number is a spin box, a
secret a hidden field, anything else a line; the option's help is the hint.
A new kind gets its form without a line here.
"""

from __future__ import annotations

import getpass

from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit,
                             QPlainTextEdit,
                             QSpinBox, QStackedWidget, QVBoxLayout, QWidget)

from trayapp.master.hostkeys import PresentedKey
from trayapp.master.kinds import KINDS, AddOption, KindRegistry

PREFILLED = {"user": getpass.getuser}  # what the CLI would assume anyway, shown


def _option_editor(option: AddOption) -> QWidget:
    if option.type is int:
        box = QSpinBox()
        box.setRange(0, 1_000_000)
        if option.default is None:
            box.setSpecialValueText("default")  # 0: not given
        else:
            box.setValue(option.default)
        box.setToolTip(option.help)
        return box
    line = QLineEdit()
    if option.secret:
        line.setEchoMode(QLineEdit.EchoMode.Password)
        line.setPlaceholderText("optional: kept in the OS keyring")
    else:
        line.setPlaceholderText(option.help)
        if option.default is not None:
            line.setText(str(option.default))
        elif option.dest in PREFILLED:
            line.setText(PREFILLED[option.dest]())
    line.setToolTip(option.help)
    return line


def _option_value(option: AddOption, editor: QWidget):
    if isinstance(editor, QSpinBox):
        return editor.value() or (None if option.default is None else editor.value())
    text = editor.text().strip()
    return text or None


class AddHostDialog(QDialog):
    def __init__(self, parent=None, kinds: KindRegistry = KINDS):
        super().__init__(parent)
        self.setWindowTitle("Add a host")
        self.kinds = kinds
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. lab-07")
        self.kind_box = QComboBox()
        self.pages = QStackedWidget()
        self.editors: dict[str, dict[str, QWidget]] = {}
        for kind in kinds.addable():
            self.kind_box.addItem(f"{kind.name}: {kind.summary}", kind.name)
            page = QWidget()
            form = QFormLayout(page)
            form.setContentsMargins(0, 0, 0, 0)
            editors = self.editors[kind.name] = {}
            for option in kind.options:
                editors[option.dest] = editor = _option_editor(option)
                label = option.flag.lstrip("-").replace("-", " ").capitalize() + (" *" if option.required else "")
                form.addRow(label, editor)
            self.pages.addWidget(page)
        self.kind_box.currentIndexChanged.connect(self.pages.setCurrentIndex)
        self.kind_box.setCurrentIndex(max(0, self.kind_box.findData(kinds.default)))
        top = QFormLayout()
        top.addRow("Name", self.name)
        top.addRow("Kind", self.kind_box)
        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #b00020;")
        self.problem.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(QLabel("* required"))
        layout.addWidget(self.pages)
        layout.addWidget(self.problem)
        layout.addWidget(buttons)

    @property
    def kind(self) -> str:
        return self.kind_box.currentData()

    def set_kind(self, kind: str) -> None:
        self.kind_box.setCurrentIndex(self.kind_box.findData(kind))

    def editor(self, dest: str) -> QWidget:
        """The current kind's field for the option ``dest`` ("host", "remote_root", ...)."""
        return self.editors[self.kind][dest]

    # The fields every SSH-reached kind has, by the names the tests and users know.
    address = property(lambda self: self.editor("host"))
    port = property(lambda self: self.editor("port"))
    user = property(lambda self: self.editor("user"))
    key = property(lambda self: self.editor("key"))

    def values(self) -> tuple[str, str, dict]:
        """The host's name, its kind, and the kind's ``hosts add`` options (dest -> value, None: not given)."""
        kind = self.kinds.get(self.kind)
        options = {o.dest: _option_value(o, self.editors[kind.name][o.dest]) for o in kind.options}
        return self.name.text().strip(), kind.name, options


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


class HostTestDialog(QDialog):
    """``sparecycles hosts test``'s lines, as they come, and the step it stopped at."""

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Testing {name}")
        self.resize(620, 320)
        self.name = name
        self.lines = QPlainTextEdit()
        self.lines.setReadOnly(True)
        self.lines.setPlainText(f"testing {name}…")
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.lines, 1)
        layout.addWidget(self.verdict)
        layout.addWidget(buttons)

    def show_result(self, result) -> None:
        self.lines.setPlainText("\n".join(result.lines) or "the first check failed (below)")
        if result.problem:
            self.verdict.setStyleSheet("color: #b00020;")
            self.verdict.setText(result.problem)
        else:
            self.verdict.setStyleSheet("color: #1b7f2a;")
            self.verdict.setText(f"{self.name}: ok")
