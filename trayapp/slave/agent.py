"""The agent: what a master runs on a slave over SSH (``sparecycles agent``).

It only relays: protocol lines from its stdin (the SSH channel) to the slave
daemon's endpoint (:mod:`trayapp.slave.endpoint`), and back to its stdout. It
never interprets them, so the daemon is the one place that decides. Before it
relays a byte, it tells the daemon whose key it runs for (an ``agent``
message, :mod:`trayapp.slave.identity`): the master's own lines all come after
it, so no master can say it first. With no daemon running it says so in one
protocol message and exits, and the master shows the host as offline.
"""

from __future__ import annotations

import os
import platform
import selectors

from trayapp.home import Home
from trayapp.slave import endpoint
from trayapp.slave.identity import agent_principal, preface
from trayapp.wire.protocol import encode


def run_agent(home: Home, stdin_fd: int = 0, stdout_fd: int = 1, *, forced: str | None = None) -> int:
    """Relay for the master whose key started us: ``forced`` names it (the forced
    command of a key ``slave authorize`` wrote); None is an unrestricted key."""
    try:
        daemon = endpoint.connect(home)
    except OSError:
        reason = (f"no slave daemon is running on {platform.node()} for {home.data_dir} "
                  "(start it with 'sparecycles slave', or the tray app in slave mode)")
        os.write(stdout_fd, encode("error", reason=reason, offline=True))
        return 0
    with daemon, selectors.DefaultSelector() as selector:
        daemon.sendall(encode("agent", **preface(agent_principal(forced, dict(os.environ)))))
        selector.register(stdin_fd, selectors.EVENT_READ, "master")
        selector.register(daemon, selectors.EVENT_READ, "daemon")
        try:
            while True:
                for key, _ in selector.select():
                    if key.data == "master":
                        data = os.read(stdin_fd, 65536)
                        if not data:
                            return 0
                        daemon.sendall(data)
                    else:
                        data = daemon.recv(65536)
                        if not data:
                            return 0
                        _write_all(stdout_fd, data)
        except (ConnectionResetError, BrokenPipeError):
            return 0  # the slave daemon stopped: the master sees the agent end, as with a closed socket


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
