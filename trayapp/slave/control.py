"""The PC user's verbs for the local slave: pause, donate, resume, and its state.

The tray menu and ``sparecycles pause|donate|resume`` call these same
functions; they talk to the running slave daemon at its endpoint
(:mod:`trayapp.slave.endpoint`) with the protocol's ``control`` message.
"""

from __future__ import annotations

import time

from trayapp.errors import UserError
from trayapp.home import Home
from trayapp.slave import endpoint
from trayapp.wire.protocol import LineBuffer, decode, encode

CONTROL_ID = "0000000000c0de00"  # a fixed "master" id for the PC's own user: never sends work


def _ask(home: Home, action: str, until: float | None = None, timeout: float = 10.0) -> dict:
    try:
        sock = endpoint.connect(home, timeout)
    except OSError:
        raise UserError("no slave daemon is running on this PC",
                        "start it with 'sparecycles slave' (or the tray app in slave mode)") from None
    with sock:
        sock.sendall(encode("hello", master=CONTROL_ID, name="this PC's user"))
        sock.sendall(encode("control", action=action, until=until))
        inbox = LineBuffer()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for line in inbox.feed(data):
                message = decode(line)
                if message["type"] == "state" and message.get("control") == action:
                    sock.sendall(encode("bye"))
                    return message
    raise UserError("the slave daemon did not answer", "check its log; restart it if it hangs")


def slave_state(home: Home) -> dict:
    return _ask(home, "status")


def pause(home: Home, seconds: float | None = None) -> dict:
    return _ask(home, "pause", None if seconds is None else time.time() + seconds)


def donate(home: Home, seconds: float | None = None) -> dict:
    return _ask(home, "donate", None if seconds is None else time.time() + seconds)


def resume(home: Home) -> dict:
    return _ask(home, "resume")
