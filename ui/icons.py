"""The tray's icons: one SVG per state, from ``resources/icons``.

Slave icons are rounded squares (a PC), master icons circles; the colour and
the glyph say the state, so each stays readable at 22 px.
"""

from __future__ import annotations

from PyQt6.QtGui import QIcon

from trayapp.install.bundled import resource_path

SLAVE_ICONS = ("slave-waiting", "slave-working", "slave-paused", "slave-donating", "slave-unavailable")
MASTER_ICONS = ("master-idle", "master-working", "master-paused", "master-attention")
ICON_NAMES = SLAVE_ICONS + MASTER_ICONS


def icon_file(name: str) -> str:
    if name not in ICON_NAMES:
        raise KeyError(f"no tray icon named {name!r}")
    return str(resource_path("icons", f"{name}.svg"))


class IconSet:
    """Loads each icon once (QIcon needs a QGuiApplication, so not at import)."""

    def __init__(self) -> None:
        self._icons: dict[str, QIcon] = {}

    def __getitem__(self, name: str) -> QIcon:
        if name not in self._icons:
            self._icons[name] = QIcon(icon_file(name))
        return self._icons[name]
