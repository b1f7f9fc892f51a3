"""Links: how a master reaches one host's slave engine.

A link carries protocol lines both ways and moves files. Two kinds exist:

- :class:`LocalLink`, the master's own cores: a socket pair to a slave engine
  running in a thread of the master's process; files move within the disk.
- ``SSHLink`` (in :mod:`trayapp.wire.ssh`, which holds all paramiko code): an SSH
  exec channel to ``sparecycles agent`` on the slave; files move by SFTP.

Both offer the same small interface, so everything above them (the host
driver, recovery, results checks) is one code path, tested on both.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Protocol



class LinkClosed(Exception):
    """The other end went away; the driver reconnects."""


class TransferRefused(Exception):
    """A file the host offered that we will not take: not a regular file, or
    over the size cap."""


class TransferTimedOut(Exception):
    """A download that did not finish within its time limit: stalled, or
    trickling too slowly. The connection's file transfer is reset."""


class LocalWriteFailed(OSError):
    """A download could not be written on this side (disk full, read-only):
    not the host's fault, nor the transfer's."""


class Link(Protocol):
    label: str
    results_in_place: bool  # results arrive as folders on this disk (no fetch, no checks needed)

    def fileno(self) -> int: ...
    def send(self, data: bytes) -> None: ...
    def recv(self) -> bytes: ...  # b"" never: raises LinkClosed instead
    def put(self, local: Path, remote: str) -> None: ...
    def fetch(self, remote: str, local: Path, *, max_bytes: int | None = None,
              timeout_s: float | None = None) -> None: ...
    def close(self) -> None: ...


class AcceptsConnections(Protocol):
    """What a local link plugs into: a slave engine (duck-typed, so the wire
    does not depend on the slave side)."""

    def add_connection(self, sock: socket.socket) -> None: ...


class LocalLink:
    """A socket pair into an in-process slave engine."""

    label = "local"
    # Results arrive as folders on this disk, from our own process: nothing to fetch or distrust.
    results_in_place = True

    def __init__(self, engine: AcceptsConnections):
        ours, theirs = socket.socketpair()
        self._sock = ours
        engine.add_connection(theirs)

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise LinkClosed(str(exc)) from None

    def recv(self) -> bytes:
        try:
            data = self._sock.recv(65536)
        except OSError as exc:
            raise LinkClosed(str(exc)) from None
        if not data:
            raise LinkClosed("the local slave engine closed the connection")
        return data

    def put(self, local: Path, remote: str) -> None:
        # Archives are immutable once packed, so a hard link is a safe, instant copy.
        try:
            os.link(local, remote)
        except OSError:
            shutil.copyfile(local, remote)

    def fetch(self, remote: str, local: Path, *, max_bytes: int | None = None,
              timeout_s: float | None = None) -> None:
        # Our own engine wrote it, on our own disk: no cap to enforce, and
        # whatever fails here fails on this side.
        try:
            shutil.copyfile(remote, local)
        except OSError as exc:
            raise LocalWriteFailed(exc.errno, exc.strerror, exc.filename) from exc

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
