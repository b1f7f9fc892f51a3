"""The tray icon and its menu.

The menu offers what makes sense in the current :class:`~sparecycles_ui.traylook.Look`
(Pause flips to Resume while paused; Donate to Stop donating while donating)
and calls the controls it is given, the same verbs as the CLI. If the desktop
has no tray yet (a session still starting up), :meth:`Tray.show_when_possible`
polls until one appears instead of giving up.
"""

from __future__ import annotations

from PyQt6.QtCore import QObject, QTimer, pyqtSignal
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import QMenu, QSystemTrayIcon

from sparecycles_ui.icons import IconSet
from sparecycles_ui.traylook import Look

HOUR = 3600.0


class Tray(QObject):
    openRequested = pyqtSignal()
    settingsRequested = pyqtSignal()
    quitRequested = pyqtSignal()
    pauseRequested = pyqtSignal(object)  # seconds, or None: until resumed
    donateRequested = pyqtSignal(object)
    resumeRequested = pyqtSignal()

    def __init__(self, icons: IconSet, parent=None):
        super().__init__(parent)
        self._icons = icons
        self.look: Look | None = None
        self.icon = QSystemTrayIcon(self)
        self.menu = QMenu()
        self.open_action = self.menu.addAction("Open SpareCycles")
        self.open_action.triggered.connect(self.openRequested)
        self.menu.addSeparator()
        self.pause_menu = self.menu.addMenu("Pause")
        self.pause_hour = self._add(self.pause_menu, "For 1 hour", lambda: self.pauseRequested.emit(HOUR))
        self.pause_forever = self._add(self.pause_menu, "Until I resume", lambda: self.pauseRequested.emit(None))
        self.donate_menu = self.menu.addMenu("Donate now")
        self.donate_hour = self._add(self.donate_menu, "For 1 hour", lambda: self.donateRequested.emit(HOUR))
        self.donate_forever = self._add(self.donate_menu, "Until I stop it", lambda: self.donateRequested.emit(None))
        self.resume_action = self._add(self.menu, "Resume", self.resumeRequested.emit)
        self.menu.addSeparator()
        self.settings_action = self._add(self.menu, "Settings…", self.settingsRequested.emit)
        self.quit_action = self._add(self.menu, "Quit SpareCycles", self.quitRequested.emit)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self._waiting = QTimer(self)
        self._waiting.setInterval(1000)
        self._waiting.timeout.connect(self._try_show)

    @staticmethod
    def _add(menu: QMenu, text: str, slot) -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _activated(self, reason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self.openRequested.emit()

    def show_look(self, look: Look) -> None:
        if look == self.look:
            return
        self.look = look
        self.icon.setIcon(self._icons[look.icon])
        self.icon.setToolTip(f"SpareCycles — {look.tooltip}")
        self.pause_menu.menuAction().setVisible(look.resume_label != "Resume")
        self.pause_menu.setEnabled(look.can_pause)
        self.donate_menu.menuAction().setVisible(look.donate_offered and look.resume_label != "Stop donating")
        self.donate_menu.setEnabled(look.can_donate)
        self.resume_action.setVisible(look.resume_label is not None)
        self.resume_action.setEnabled(look.resume_label is not None)
        self.resume_action.setText(look.resume_label or "Resume")

    # ----- appearing in the tray -------------------------------------------------

    def show_when_possible(self) -> None:
        """Show the icon now, or as soon as the desktop offers a tray."""
        if not self._try_show():
            self._waiting.start()

    def _try_show(self) -> bool:
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return False
        self._waiting.stop()
        self.icon.show()
        return True

    @property
    def waiting_for_tray(self) -> bool:
        return self._waiting.isActive()

    def notify(self, title: str, text: str, critical: bool = False) -> None:
        icon = QSystemTrayIcon.MessageIcon.Warning if critical else QSystemTrayIcon.MessageIcon.Information
        self.icon.showMessage(title, text, icon, 10000)

    def close(self) -> None:
        self._waiting.stop()
        self.icon.hide()
