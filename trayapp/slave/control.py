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
from trayapp.wire.protocol import LineBuffer, ProtocolError, decode, encode

CONTROL_ID = "0000000000c0de00"  # a fixed "master" id for the PC's own user: never sends work
ANSWER_TIMEOUT_S = 10.0  # a daemon that is up answers within milliseconds; more is a busy or stuck one


def _ask(home: Home, action: str, until: float | None = None, timeout: float = ANSWER_TIMEOUT_S) -> dict:
    try:
        sock = endpoint.connect(home, timeout)
    except TimeoutError:
        raise _not_answering(action, timeout) from None
    except OSError:
        raise UserError("no slave daemon is running on this PC",
                        "start it with 'sparecycles slave' (or the tray app in slave mode)") from None
    deadline = time.monotonic() + timeout
    try:
        with sock:
            sock.sendall(encode("hello", master=CONTROL_ID, name="this PC's user"))
            sock.sendall(encode("control", action=action, until=until))
            inbox = LineBuffer()
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    break
                for line in inbox.feed(data):
                    message = decode(line)
                    if message["type"] == "state" and message.get("control") == action:
                        sock.sendall(encode("bye"))
                        return message
                    if message["type"] == "error":
                        raise UserError(f"the slave daemon refused '{action}': {message.get('reason')}")
    except TimeoutError:
        raise _not_answering(action, timeout) from None
    except (OSError, ProtocolError) as exc:
        raise UserError(f"lost the connection to the slave daemon while asking it to {action}: {exc}",
                        "try again; if it keeps happening, restart the slave daemon") from None
    raise UserError("the slave daemon closed the connection without answering",
                    "check its log; restart it if it keeps doing so")


def _not_answering(action: str, timeout: float) -> UserError:
    """A daemon that accepts but does not answer is busy (or stuck): say so, not a traceback."""
    done = ("it may still act on it when it catches up; " if action != "status" else "")
    return UserError(f"the slave daemon did not answer within {timeout:g} s: it is busy or stuck",
                     f"{done}try again in a minute; if it still does not answer, look at its log and "
                     f"restart it ('sparecycles slave', or the tray app)")


def slave_state(home: Home) -> dict:
    return _ask(home, "status")


def pause(home: Home, seconds: float | None = None) -> dict:
    return _ask(home, "pause", None if seconds is None else time.time() + seconds)


def donate(home: Home, seconds: float | None = None) -> dict:
    return _ask(home, "donate", None if seconds is None else time.time() + seconds)


def resume(home: Home) -> dict:
    return _ask(home, "resume")
