"""The agent: what a master runs on a slave over SSH (``sparecycles agent``).

It only relays: protocol lines from its stdin (the SSH channel) to the slave
daemon's Unix socket, and back to its stdout. It never interprets them, so
the daemon is the one place that decides. With no daemon running it says so
in one protocol message and exits, and the master shows the host as offline.
"""

from __future__ import annotations

import hashlib
import os
import platform
import selectors
import socket
import tempfile
from pathlib import Path

from trayapp.home import Home
from trayapp.wire.protocol import encode

# sun_path holds 108 bytes on Linux (104 on macOS); longer paths cannot be bound.
_MAX_SOCKET_PATH = 100


def socket_path(home: Home) -> Path:
    """Where the slave daemon listens. In the data folder when the path fits
    in a socket address, else in a private folder under the temp directory."""
    preferred = home.slave_socket
    if len(os.fsencode(preferred)) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(os.fsencode(home.data_dir)).hexdigest()[:16]
    private = Path(tempfile.gettempdir()) / f"sparecycles-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    if private.stat().st_uid != os.getuid() or private.stat().st_mode & 0o077:
        raise PermissionError(f"{private} is not a private folder of this user")
    return private / f"{digest}.sock"


def run_agent(home: Home, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    path = socket_path(home)
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        daemon.connect(str(path))
    except OSError:
        daemon.close()
        reason = (f"no slave daemon is running on {platform.node()} for {home.data_dir} "
                  "(start it with 'sparecycles slave', or the tray app in slave mode)")
        os.write(stdout_fd, encode("error", reason=reason, offline=True))
        return 0
    with daemon, selectors.DefaultSelector() as selector:
        selector.register(stdin_fd, selectors.EVENT_READ, "master")
        selector.register(daemon, selectors.EVENT_READ, "daemon")
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
