"""Is the PC's user at it? One small interface over each platform's answer.

An :class:`IdleSource` answers three questions: how many seconds since the
last keyboard or mouse input, whether the screen is locked, and whether
anybody is logged in at all. Sources that can also tell *the instant* input
arrives (pynput listeners on X11, Windows and macOS) take a callback in
:meth:`IdleSource.notify_input`: that is what lets the slave stop its tasks
within milliseconds of a key press instead of at its next poll.

Which source, by platform (:func:`open_idle_source`):

===================  ===============================================  =======================
platform             idle time / lock                                  instant notice
===================  ===============================================  =======================
X11                  screensaver extension (XScreenSaverQueryInfo),     pynput listeners
                     logind ``LockedHint``                              (XRecord)
Wayland (GNOME/KDE)  ``org.gnome.Mutter.IdleMonitor`` or                no (polled)
                     ``org.freedesktop.ScreenSaver``; logind lock
Windows              ``GetLastInputInfo`` (tick wrap-around handled)    pynput listeners
macOS                IOKit ``HIDIdleTime``                              pynput listeners
nobody logged in     always idle (logind sessions / utmp via psutil)    nothing to notice
===================  ===============================================  =======================

The sources only measure; :mod:`trayapp.idle.policy` decides, and
:mod:`trayapp.idle.watch` runs the two on a thread and tells the slave engine.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Callable, Mapping

import psutil

from trayapp.idle.reading import IdleReading, IdleSource

log = logging.getLogger(__name__)

LOGIND_SESSIONS = Path("/run/systemd/sessions")


# ----- nobody logged in ------------------------------------------------------------------------

def local_sessions(sessions_dir: Path = LOGIND_SESSIONS, users: Callable[[], list] = psutil.users) -> list[str]:
    """Names of users logged in *at this PC* (not over SSH): logind's session
    files where systemd runs, else utmp through psutil."""
    if sessions_dir.is_dir():
        found = []
        for path in sessions_dir.iterdir():
            if path.name.endswith(".ref"):
                continue
            try:
                fields = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
            except OSError:
                continue
            # A greeter (the login screen) is nobody; a remote session is not at the PC.
            at_the_pc = fields.get("REMOTE") != "1" and fields.get("CLASS", "user") == "user"
            if at_the_pc and fields.get("STATE") != "closing":
                found.append(fields.get("USER", "?"))
        return found
    # utmp: a local login has no host, or an X display (":0") for a host.
    return [u.name for u in users() if not u.host or u.host.startswith(":")]


class NoSessionSource:
    """The slave runs as a service with no display of its own.

    While nobody is logged in at the PC, the machine is idle: there is no user
    to wait for, so work starts at once. If someone logs in meanwhile, this
    source cannot see their input; it asks logind whether their session is
    idle (GNOME and KDE set ``IdleHint``) and, failing that, counts them as
    present: better to lend nothing than to slow down a user we cannot see.
    """

    name = "no user session"

    def __init__(self, sessions: Callable[[], list[str]] = local_sessions,
                 logind_idle_s: Callable[[], float | None] | None = None):
        self._sessions = sessions
        self._logind_idle_s = logind_idle_s

    def read(self) -> IdleReading:
        if not self._sessions():
            return IdleReading(math.inf, session=False)
        idle = self._logind_idle_s() if self._logind_idle_s is not None else None
        return IdleReading(0.0 if idle is None else idle)

    def notify_input(self, callback: Callable[[], None]) -> bool:
        return False

    def close(self) -> None:
        pass


# ----- choosing the source ----------------------------------------------------------------------

def open_idle_source(environ: Mapping[str, str] | None = None, platform: str | None = None) -> IdleSource:
    """The best source this process can use, from its platform and environment."""
    environ = os.environ if environ is None else environ
    platform = platform or sys.platform
    if platform == "win32":
        from trayapp.idle.windows import WindowsSource

        return WindowsSource()
    if platform == "darwin":
        from trayapp.idle.macos import MacSource

        return MacSource()
    # Under Wayland, $DISPLAY is XWayland's: it sees only input to X programs,
    # so its idle time grows while the user types into Wayland ones. Ask the
    # desktop first.
    wayland = bool(environ.get("WAYLAND_DISPLAY")) or environ.get("XDG_SESSION_TYPE") == "wayland"
    if wayland:
        from trayapp.idle.dbus import DesktopBusSource, logind_idle_seconds

        source = DesktopBusSource.connect()
        if source is not None:
            return source
        log.warning("no idle monitor on this Wayland desktop's D-Bus: going by logind's idle hint, "
                    "else counting the user as present")
        return NoSessionSource(sessions=lambda: ["wayland"], logind_idle_s=logind_idle_seconds)
    if environ.get("DISPLAY"):
        try:
            from trayapp.idle.x11 import X11Source

            return X11Source(environ["DISPLAY"])
        except Exception as exc:  # noqa: BLE001 - any failure to open the display means "no X here"
            log.warning("cannot watch X display %s (%s)", environ["DISPLAY"], exc)
    from trayapp.idle.dbus import DesktopBusSource, logind_idle_seconds

    if environ.get("DBUS_SESSION_BUS_ADDRESS"):
        source = DesktopBusSource.connect()
        if source is not None:
            return source
    return NoSessionSource(logind_idle_s=logind_idle_seconds)
