"""Where the slave daemon is reached on this PC: its Unix socket.

The daemon listens here; the agent (a master's way in) and the PC user's
own verbs (:mod:`trayapp.slave.control`) connect here. Only this user may
connect. A platform without Unix sockets (Windows: a named pipe) changes
this module and nothing else.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from pathlib import Path

from trayapp.home import Home

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


def daemon_may_run(home: Home) -> bool:
    """Whether a daemon's endpoint exists for this home (it may still have died)."""
    return socket_path(home).exists()


def connect(home: Home, timeout: float | None = None) -> socket.socket:
    """A connection to the home's slave daemon; OSError when none listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path(home)))
    except OSError:
        sock.close()
        raise
    return sock


class Listener:
    """The daemon's listening socket; only one daemon per home may hold it
    (the caller holds the home's slave lock before it listens)."""

    def __init__(self, home: Home):
        self.path = socket_path(home)
        self.path.unlink(missing_ok=True)  # left by a daemon that was killed; the lock says none runs now
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o077)  # only this user may talk to the daemon
        try:
            self.socket.bind(str(self.path))
        finally:
            os.umask(old_umask)
        self.socket.listen(16)

    def close(self) -> None:
        self.socket.close()
        self.path.unlink(missing_ok=True)
