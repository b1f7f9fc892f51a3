"""A master reduced to one protocol session with a slave engine."""

from __future__ import annotations

import socket
from pathlib import Path


class ProtocolPeer:
    """A master reduced to one protocol session with a slave engine: a socket
    pair handed to an in-process engine (``engine``), or the Unix socket of a
    running slave daemon (``path``). Messages it is not asked for stay unread
    until they are; it remembers the last ``state`` the engine announced."""

    MASTER_ID = "0123456789abcdef"

    def __init__(self, engine=None, *, path: Path | None = None, timeout: float = 10.0, principal=None,
                 sock=None):
        from trayapp.wire.protocol import LineBuffer

        if sock is not None:  # anything with sendall/recv/settimeout: an SSH channel to an agent
            self.sock = sock
            self.sock.settimeout(timeout)
        elif path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(str(path))
        else:
            self.sock, theirs = socket.socketpair()
            self.sock.settimeout(timeout)
            # By default the engine's own master's cores; ``principal`` makes it someone else
            # (the lender: trayapp.slave.identity.LENDER_PRINCIPAL).
            engine.add_connection(theirs) if principal is None else engine.add_connection(theirs, principal)
        self._inbox = LineBuffer()
        self._unread: list[dict] = []
        self.state: str | None = None

    def send(self, kind: str, **fields) -> None:
        from trayapp.wire.protocol import encode

        self.sock.sendall(encode(kind, **fields))

    def expect(self, *kinds: str, **match) -> dict:
        """The first message of one of ``kinds`` whose fields equal ``match``."""
        from trayapp.wire.protocol import decode

        while True:
            for i, message in enumerate(self._unread):
                if message["type"] in kinds and all(message.get(k) == v for k, v in match.items()):
                    return self._unread.pop(i)
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"the engine closed the session while we waited for {kinds}; "
                                     f"unread: {self._unread}")
            for line in self._inbox.feed(data):
                message = decode(line)
                if message["type"] in ("state", "hello"):
                    self.state = message["state"]
                self._unread.append(message)

    def hello(self, master: str = MASTER_ID, name: str = "test master") -> dict:
        self.send("hello", master=master, name=name)
        return self.expect("hello")

    def wait_state(self, state: str) -> None:
        """Until the engine says it is in ``state``; the state messages read on the way are dropped."""
        while self.state != state:
            self.expect("state")
        self._unread = [m for m in self._unread if m["type"] != "state"]

    def upload(self, archive: Path, sha: str | None = None, put=None) -> dict:
        """Send an archive the way a master does (unless the engine has it), by
        ``put`` (an SFTP client's, say; a file copy by default); the engine's verdict (``archive_ok``/``archive_bad``, or its ``archive`` reply)."""
        import shutil

        from trayapp.wire.archive import sha256_of

        sha = sha or sha256_of(archive)
        self.send("need_archive", sha=sha)
        reply = self.expect("archive")
        if reply["present"]:
            return reply
        (put or shutil.copyfile)(str(archive), reply["upload_path"])
        self.send("archive_uploaded", sha=sha, path=reply["upload_path"])
        verdict = self.expect("archive_ok", "archive_bad")
        assert verdict["sha"] == sha, verdict
        return verdict

    def closed_by_engine(self) -> bool:
        """True once the engine has closed this session (recv gives b"")."""
        try:
            while self.sock.recv(65536):
                pass
        except socket.timeout:
            return False
        except ConnectionResetError:
            pass
        return True
