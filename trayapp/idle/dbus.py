"""Idle time and lock state from D-Bus: Wayland desktops and logind.

Under Wayland no client may watch another's input, so the desktop itself
answers: GNOME through ``org.gnome.Mutter.IdleMonitor`` (``GetIdletime``, in
milliseconds), KDE Plasma (and others following the freedesktop draft)
through ``org.freedesktop.ScreenSaver`` (``GetSessionIdleTime``; Plasma
returns milliseconds). Whether the screen is locked comes from the
desktop's screensaver (``GetActive``) and from logind's ``LockedHint``,
which every desktop that locks through logind keeps up to date.

A slave running as a service, outside any session, asks logind on the
system bus instead: each local session's ``IdleHint`` and
``IdleSinceHintMonotonic``.

All calls go through one small function (``call``) so tests can feed raw
replies; the real one speaks D-Bus with jeepney (pure Python, no libdbus).
A bus that is not there costs one failed connect, then is not retried for
a minute: a lab PC without logind must not pay for it every poll.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from trayapp.idle.reading import IdleReading

log = logging.getLogger(__name__)

Call = Callable[[str, str, str, str, str], tuple]  # (bus, service, path, interface, method) -> reply body

MUTTER = ("org.gnome.Mutter.IdleMonitor", "/org/gnome/Mutter/IdleMonitor/Core", "org.gnome.Mutter.IdleMonitor")
FREEDESKTOP = ("org.freedesktop.ScreenSaver", "/org/freedesktop/ScreenSaver", "org.freedesktop.ScreenSaver")
GNOME_SCREENSAVER = ("org.gnome.ScreenSaver", "/org/gnome/ScreenSaver", "org.gnome.ScreenSaver")
LOGIN1 = "org.freedesktop.login1"
_RETRY_S = 60.0


class DBusUnavailable(Exception):
    """The bus, the service or the method is not there."""


class _Buses:
    """Blocking jeepney connections, opened on first use and shared."""

    def __init__(self):
        self._conns: dict[str, object] = {}
        self._failed_at: dict[object, float] = {}
        self._lock = threading.Lock()

    def call(self, bus: str, service: str, path: str, interface: str, method: str, *args) -> tuple:
        try:
            from jeepney import DBusAddress, new_method_call
            from jeepney.io.blocking import open_dbus_connection
            from jeepney.wrappers import unwrap_msg
        except ImportError as exc:  # jeepney is a Linux-only dependency
            raise DBusUnavailable(str(exc)) from None
        with self._lock:
            conn = self._conns.get(bus)
            if conn is None:
                if time.monotonic() - self._failed_at.get(bus, -_RETRY_S) < _RETRY_S:
                    raise DBusUnavailable(f"no {bus.lower()} bus")
                try:
                    conn = open_dbus_connection(bus=bus)
                except Exception as exc:  # noqa: BLE001 - no bus, no socket, refused
                    self._failed_at[bus] = time.monotonic()
                    raise DBusUnavailable(f"no {bus.lower()} bus: {exc}") from None
                self._conns[bus] = conn
            key = (bus, service, path, method)
            if time.monotonic() - self._failed_at.get(key, -_RETRY_S) < _RETRY_S:
                raise DBusUnavailable(f"{service} {method} failed recently")
            address = DBusAddress(path, bus_name=service, interface=interface)
            signature = "ss" if args else None
            message = new_method_call(address, method, signature, args) if args else new_method_call(address, method)
            try:
                return tuple(unwrap_msg(conn.send_and_get_reply(message, timeout=1.0)))
            except Exception as exc:  # noqa: BLE001 - DBusErrorResponse, timeout, broken connection
                if isinstance(exc, (OSError, TimeoutError)):
                    self._conns.pop(bus, None)
                # e.g. "the caller belongs to no session": asked again in a minute, not every poll
                self._failed_at[key] = time.monotonic()
                raise DBusUnavailable(f"{service} {method}: {exc}") from None

    def property(self, bus: str, service: str, path: str, interface: str, name: str):
        body = self.call(bus, service, path, "org.freedesktop.DBus.Properties", "Get", interface, name)
        return body[0][1]  # a variant: (signature, value)


BUSES = _Buses()


def _call(bus: str, service: str, path: str, interface: str, method: str) -> tuple:
    return BUSES.call(bus, service, path, interface, method)


def logind_locked(prop: Callable[..., object] | None = None) -> bool | None:
    """logind's ``LockedHint`` for this process's own session; None if unknown."""
    prop = prop or BUSES.property
    try:
        return bool(prop("SYSTEM", LOGIN1, "/org/freedesktop/login1/session/auto",
                         "org.freedesktop.login1.Session", "LockedHint"))
    except DBusUnavailable:
        return None


def logind_idle_seconds(call: Callable[..., tuple] | None = None, prop: Callable[..., object] | None = None,
                        now_monotonic_us: Callable[[], float] | None = None) -> float | None:
    """Seconds the least idle local session has been idle, by logind's hints;
    None if logind cannot say (then the caller counts the user as present)."""
    call = call or BUSES.call
    prop = prop or BUSES.property
    now_us = now_monotonic_us() if now_monotonic_us else time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
    try:
        (sessions,) = call("SYSTEM", LOGIN1, "/org/freedesktop/login1", "org.freedesktop.login1.Manager",
                           "ListSessions")
        least = None
        for _sid, _uid, _user, _seat, path in sessions:
            def get(name: str, path: str = path):
                return prop("SYSTEM", LOGIN1, path, "org.freedesktop.login1.Session", name)

            if get("Remote") or get("Class") != "user":
                continue
            if get("LockedHint"):
                idle = float("inf")
            elif not get("IdleHint"):
                idle = 0.0
            else:
                idle = max(0.0, (now_us - float(get("IdleSinceHintMonotonic"))) / 1e6)
            least = idle if least is None else min(least, idle)
        return least
    except (DBusUnavailable, ValueError, TypeError):
        return None


class DesktopBusSource:
    """GNOME's or KDE's idle monitor on the session bus (the Wayland way)."""

    def __init__(self, monitor: tuple[str, str, str], call: Call = _call,
                 locked_hint: Callable[[], bool | None] = logind_locked):
        self._monitor = monitor
        self._call = call
        self._locked_hint = locked_hint
        self.name = "GNOME idle monitor" if monitor == MUTTER else "freedesktop screensaver idle time"

    @classmethod
    def connect(cls, call: Call = _call, **kwargs) -> "DesktopBusSource | None":
        """The first monitor that answers, or None when the desktop has none."""
        for monitor in (MUTTER, FREEDESKTOP):
            source = cls(monitor, call, **kwargs)
            try:
                source.read()
            except DBusUnavailable:
                continue
            return source
        return None

    def read(self) -> IdleReading:
        service, path, interface = self._monitor
        if self._monitor == MUTTER:
            (idle_ms,) = self._call("SESSION", service, path, interface, "GetIdletime")
        else:
            (idle_ms,) = self._call("SESSION", service, path, interface, "GetSessionIdleTime")
        return IdleReading(float(idle_ms) / 1000.0, locked=self._locked())

    def _locked(self) -> bool:
        if self._locked_hint():
            return True
        service, path, interface = GNOME_SCREENSAVER if self._monitor == MUTTER else FREEDESKTOP
        try:
            return bool(self._call("SESSION", service, path, interface, "GetActive")[0])
        except (DBusUnavailable, IndexError):
            return False

    def notify_input(self, callback: Callable[[], None]) -> bool:
        # Mutter can signal an "active" watch, but KDE cannot; both are polled
        # fast while tasks run (see IdleWatcher), which keeps one code path.
        return False

    def close(self) -> None:
        pass
