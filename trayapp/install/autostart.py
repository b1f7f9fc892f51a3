"""Start SpareCycles at login: ``sparecycles autostart enable|disable|status``.

One entry per platform, starting this very installation
(:func:`trayapp.install.selfcommand.sparecycles_command`):

- Linux and other XDG desktops: ``$XDG_CONFIG_HOME/autostart/sparecycles.desktop``
  (the XDG Autostart spec; GNOME, KDE, Xfce, … read it);
- Windows: the value ``SpareCycles`` under
  ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``;
- macOS: ``~/Library/LaunchAgents/org.sparecycles.tray.plist`` with ``RunAtLoad``.

Disable removes the entry. Each backend takes its folder, or the ``winreg``
module, as an argument, so tests write into temporary places.
"""

from __future__ import annotations

import os
import plistlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from trayapp.install.selfcommand import sparecycles_command

ENTRY_NAME = "sparecycles"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "SpareCycles"
LAUNCH_AGENT_LABEL = "org.sparecycles.tray"


def login_command() -> list[str]:
    """What starts at login: the tray app, straight into the tray. A lab PC's
    user should not meet a window at every login; the icon is enough."""
    return sparecycles_command("--background")


@dataclass(frozen=True)
class AutostartState:
    enabled: bool
    where: str  # the file or registry value
    command: list[str] | None  # what the entry starts, if enabled

    def to_json(self) -> dict:
        return {"enabled": self.enabled, "where": self.where, "command": self.command}


# ----- Linux (XDG) ---------------------------------------------------------------------

def xdg_autostart_dir(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", str(Path.home()))) / ".config")
    return Path(base) / "autostart"


def _desktop_exec(command: list[str]) -> str:
    """Quote an argv for a .desktop ``Exec`` key (Desktop Entry spec, "The Exec key")."""
    parts = []
    for arg in command:
        if any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`%='):
            escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
            arg = f'"{escaped}"'
        parts.append(arg.replace("%", "%%"))
    # A .desktop file's string values escape backslashes once more.
    return " ".join(parts).replace("\\", "\\\\")


def _split_desktop_exec(value: str) -> list[str]:
    """The argv of an ``Exec`` value written by :func:`_desktop_exec`."""
    value = re.sub(r"\\(.)", lambda m: "\\" if m.group(1) == "\\" else m.group(0), value)  # string level
    args, current, quoted, escaped, started = [], [], False, False, False
    for c in value:
        if escaped:
            current.append(c)
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted, started = not quoted, True
        elif c == " " and not quoted:
            if current or started:
                args.append("".join(current))
            current, started = [], False
        else:
            current.append(c)
    if current or started:
        args.append("".join(current))
    return [a.replace("%%", "%") for a in args]


def desktop_entry(command: list[str], icon: str = "sparecycles") -> str:
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.0",
        "Name=SpareCycles",
        "GenericName=Compute pool",
        "Comment=Lend this PC's idle cores to your lab's simulations",
        f"Exec={_desktop_exec(command)}",
        f"Icon={icon}",
        "Terminal=false",
        "Categories=Science;",
        "X-GNOME-Autostart-enabled=true",
        "",
    ])


class _AutostartFile:
    """A start-at-login file in a folder the desktop reads at login: written
    whole beside its place, then renamed in, so a login never reads half of it."""

    file_name = ""

    def __init__(self, folder: Path):
        self.folder = folder

    @property
    def path(self) -> Path:
        return self.folder / self.file_name

    def content(self, command: list[str]) -> bytes:
        raise NotImplementedError

    def enable(self, command: list[str]) -> AutostartState:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".partial")
        tmp.write_bytes(self.content(command))
        os.replace(tmp, self.path)
        return self.status()

    def disable(self) -> AutostartState:
        self.path.unlink(missing_ok=True)
        return self.status()

    def status(self) -> AutostartState:
        raise NotImplementedError


class XdgAutostart(_AutostartFile):
    file_name = f"{ENTRY_NAME}.desktop"

    def __init__(self, folder: Path | None = None):
        super().__init__(folder or xdg_autostart_dir())

    def content(self, command: list[str]) -> bytes:
        return desktop_entry(command).encode("utf-8")

    def status(self) -> AutostartState:
        if not self.path.exists():
            return AutostartState(False, str(self.path), None)
        command = None
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.startswith("Exec="):
                command = _split_desktop_exec(line[len("Exec="):])
        return AutostartState(True, str(self.path), command)


# ----- Windows -------------------------------------------------------------------------

class WindowsAutostart:
    """The ``Run`` value in the user's registry; ``winreg`` is passed in (a fake in tests)."""

    def __init__(self, winreg=None):
        if winreg is None:
            import winreg  # noqa: PLC0415 - Windows only
        self.winreg = winreg

    @property
    def where(self) -> str:
        return f"HKEY_CURRENT_USER\\{RUN_KEY}\\{RUN_VALUE}"

    def enable(self, command: list[str]) -> AutostartState:
        reg = self.winreg
        with reg.CreateKey(reg.HKEY_CURRENT_USER, RUN_KEY) as key:
            reg.SetValueEx(key, RUN_VALUE, 0, reg.REG_SZ, subprocess.list2cmdline(command))
        return self.status()

    def disable(self) -> AutostartState:
        reg = self.winreg
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE) as key:
                reg.DeleteValue(key, RUN_VALUE)
        except FileNotFoundError:
            pass
        return self.status()

    def status(self) -> AutostartState:
        reg = self.winreg
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY) as key:
                value, _kind = reg.QueryValueEx(key, RUN_VALUE)
        except FileNotFoundError:
            return AutostartState(False, self.where, None)
        return AutostartState(True, self.where, [value])


# ----- macOS ---------------------------------------------------------------------------

def launch_agent_plist(command: list[str]) -> bytes:
    return plistlib.dumps({
        "Label": LAUNCH_AGENT_LABEL,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        "ProcessType": "Interactive",
    })


class MacAutostart(_AutostartFile):
    file_name = f"{LAUNCH_AGENT_LABEL}.plist"

    def __init__(self, folder: Path | None = None):
        super().__init__(folder or Path.home() / "Library" / "LaunchAgents")

    def content(self, command: list[str]) -> bytes:
        return launch_agent_plist(command)

    def status(self) -> AutostartState:
        try:
            data = plistlib.loads(self.path.read_bytes())
        except (OSError, plistlib.InvalidFileException):
            return AutostartState(False, str(self.path), None)
        return AutostartState(bool(data.get("RunAtLoad")), str(self.path), list(data.get("ProgramArguments", [])))


def autostart_for_platform(platform: str | None = None):
    """The backend for this OS (Linux and other Unix desktops use XDG)."""
    platform = platform or sys.platform
    if platform == "win32":
        return WindowsAutostart()
    if platform == "darwin":
        return MacAutostart()
    return XdgAutostart()
