"""Idle time on X11: the screensaver extension, plus pynput for instant notice.

``XScreenSaverQueryInfo`` (through python-xlib, which pynput needs anyway, so
no libXss is loaded) gives the server's own count of milliseconds since the
last input from any device: one round trip, cheap enough to poll every
second. It cannot *push* input to us, so pynput's keyboard and mouse
listeners (the RECORD extension: passive, nothing is grabbed) call back the
moment a key or the mouse moves, which is what stops tasks within
milliseconds (see :mod:`trayapp.idle.userinput` for their shutdown hang).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from trayapp.idle.reading import IdleReading
from trayapp.idle.userinput import PynputInput

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 2.0
_SCREENSAVER_ON = 1  # XScreenSaverInfo.state: ScreenSaverOff 0, ScreenSaverOn 1, ScreenSaverDisabled 3


class X11Source(PynputInput):
    name = "X11 screensaver extension"

    def __init__(self, display: str, locked_hint: Callable[[], bool | None] | None = None):
        self.input_display = display
        self._connect()
        # One X connection must not be used from two threads at once; read()
        # may be called by the watcher and by a test at the same time.
        self._lock = threading.Lock()
        if locked_hint is None:
            from trayapp.idle.dbus import logind_locked

            locked_hint = logind_locked
        self._locked_hint = locked_hint
        self.name = f"X11 screensaver extension on {display}"

    def _connect(self) -> None:
        from Xlib import display as xdisplay

        self._display = xdisplay.Display(self.input_display)
        if not self._display.has_extension("MIT-SCREEN-SAVER"):
            self._display.close()
            raise RuntimeError(f"X display {self.input_display} has no screensaver extension")
        self._root = self._display.screen().root

    def read(self) -> IdleReading:
        lock = self._lock
        if not lock.acquire(timeout=READ_TIMEOUT_S):
            # A read stuck on this connection (a reply that never came) must not
            # stop idle detection for good: the next read goes over a new one.
            log.warning("reading the idle time from %s has hung for %g s; connecting again", self.input_display,
                        READ_TIMEOUT_S)
            lock = self._lock = threading.Lock()
            lock.acquire()
            try:
                self._connect()
            except Exception:
                lock.release()
                raise
        try:
            info = self._root.screensaver_query_info()
        finally:
            lock.release()
        # A running screensaver means the user has been away long enough for
        # the desktop to blank the screen: as good as locked.
        locked = bool(self._locked_hint()) or info.state == _SCREENSAVER_ON
        return IdleReading(info.idle / 1000.0, locked=locked)

    def close(self) -> None:
        super().close()
        with self._lock:
            try:
                self._display.close()
            except Exception:  # noqa: BLE001 - shutting down regardless
                pass
