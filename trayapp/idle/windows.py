"""Idle time on Windows: ``GetLastInputInfo``, plus pynput for instant notice.

``GetLastInputInfo`` gives the tick count (milliseconds since boot, a 32-bit
``DWORD``) of the session's last input, and ``GetTickCount`` the tick count
now. Both wrap around every 49.7 days, so the idle time is their difference
modulo 2**32: right across a wrap, where a plain subtraction goes negative.
The screen is locked when the input desktop cannot be opened (it is then
Winlogon's secure desktop, which a user process may not open).

The Win32 calls sit in :class:`Win32Api`; the arithmetic does not, so the
tests feed it raw tick counts on Linux.
"""

from __future__ import annotations

import ctypes
from typing import Protocol

from trayapp.idle.reading import IdleReading
from trayapp.idle.userinput import PynputInput

_TICK_MODULUS = 1 << 32
_DESKTOP_SWITCHDESKTOP = 0x0100


def idle_ms_between(last_input_tick: int, now_tick: int) -> int:
    """Milliseconds from the last input to now, across a 32-bit tick wrap."""
    return (now_tick - last_input_tick) % _TICK_MODULUS


class WindowsApi(Protocol):
    def last_input_tick(self) -> int: ...
    def tick_count(self) -> int: ...
    def input_desktop_opens(self) -> bool: ...


class Win32Api:
    """The real calls (ctypes; only importable on Windows)."""

    def __init__(self):
        from ctypes import wintypes

        class LASTINPUTINFO(ctypes.Structure):
            _fields_ = [("cbSize", wintypes.UINT), ("dwTime", wintypes.DWORD)]

        self._info = LASTINPUTINFO()
        self._info.cbSize = ctypes.sizeof(LASTINPUTINFO)
        self._user32 = ctypes.windll.user32  # type: ignore[attr-defined]
        self._kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        self._kernel32.GetTickCount.restype = wintypes.DWORD
        self._user32.OpenInputDesktop.restype = wintypes.HANDLE

    def last_input_tick(self) -> int:
        if not self._user32.GetLastInputInfo(ctypes.byref(self._info)):
            raise OSError("GetLastInputInfo failed")
        return int(self._info.dwTime)

    def tick_count(self) -> int:
        return int(self._kernel32.GetTickCount())

    def input_desktop_opens(self) -> bool:
        handle = self._user32.OpenInputDesktop(0, False, _DESKTOP_SWITCHDESKTOP)
        if not handle:
            return False
        self._user32.CloseDesktop(handle)
        return True


class WindowsSource(PynputInput):
    name = "Windows GetLastInputInfo"

    def __init__(self, api: WindowsApi | None = None):
        self._api = api or Win32Api()

    def read(self) -> IdleReading:
        # Read "now" after "last input", so an input in between cannot make
        # the difference negative (which the modulo would turn into 49 days).
        last = self._api.last_input_tick()
        now = self._api.tick_count()
        return IdleReading(idle_ms_between(last, now) / 1000.0, locked=not self._api.input_desktop_opens())
