"""Instant notice of keyboard and mouse input, through pynput's listeners.

Polling the idle time every second would leave a returning user waiting up
to a second for their PC; pynput's listeners call back the moment a key or
the mouse moves (X11: the RECORD extension, passive, nothing is grabbed;
Windows: low-level hooks; macOS: a Quartz event tap).

pynput has a known shutdown hang: ``stop()`` followed by ``join()`` blocks
until the next input event (the X listener sits in a blocking read). So
:func:`stop_pynput_listeners` calls ``stop()`` and never joins; the
listener threads are daemons and cannot keep the process alive, so a slave
on an unattended PC still shuts down at once.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

log = logging.getLogger(__name__)


def start_pynput_listeners(callback: Callable[[], None], display: str | None = None) -> list:
    """Keyboard and mouse listeners calling ``callback`` on any input, started and
    ready (input from now on is seen); [] if pynput is unusable here.

    ``display``: the X display to watch. pynput reads ``$DISPLAY`` when it is
    imported (to pick its backend) and when its threads connect, so it is set
    around both.
    """
    saved = os.environ.get("DISPLAY")
    if display is not None:
        os.environ["DISPLAY"] = display
    try:
        return _start_listeners(callback)
    finally:
        if display is not None:
            if saved is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = saved


def _start_listeners(callback: Callable[[], None]) -> list:
    try:
        from pynput import keyboard, mouse
    except Exception as exc:  # noqa: BLE001 - missing, no display, no permission (macOS accessibility)
        log.warning("no instant notice of input (%s); polling instead", str(exc).splitlines()[0])
        return []

    def on_any(*_args) -> None:  # must return None: False would stop the listener
        callback()

    listeners = [keyboard.Listener(on_press=on_any, on_release=on_any),
                 mouse.Listener(on_move=on_any, on_click=on_any, on_scroll=on_any)]
    try:
        for listener in listeners:
            listener.daemon = True
            listener.start()
        for listener in listeners:
            listener.wait()
    except Exception as exc:  # noqa: BLE001
        log.warning("pynput listeners failed (%s); polling instead", exc)
        stop_pynput_listeners(listeners)
        return []
    return listeners


def stop_pynput_listeners(listeners: list) -> None:
    # stop() without join(): a listener's join can wait for the next input event.
    for listener in listeners:
        try:
            listener.stop()
        except Exception:  # noqa: BLE001 - shutting down regardless
            pass


class PynputInput:
    """Instant notice of input for an idle source (X11, Windows, macOS): pynput's
    keyboard and mouse listeners, stopped again by ``close``. ``input_display``
    names the X display to listen on, where there is one."""

    input_display: str | None = None
    _listeners: list | tuple = ()

    def notify_input(self, callback: Callable[[], None]) -> bool:
        self._listeners = start_pynput_listeners(callback, self.input_display)
        return bool(self._listeners)

    def close(self) -> None:
        stop_pynput_listeners(self._listeners)
        self._listeners = []
