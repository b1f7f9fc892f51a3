"""One connection to the slave engine: a master (through its agent over SSH,
or a socket pair for the master's own cores) or the PC's own user (the tray
and the pause/donate/resume verbs). Non-blocking both ways: what the engine
sends waits in ``outbox`` until the socket takes it."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field

from trayapp.wire.protocol import LineBuffer, encode
from trayapp.slave.control import CONTROL_ID
from trayapp.slave.identity import Principal

log = logging.getLogger(__name__)


@dataclass
class Session:
    """One master's connection."""

    sock: socket.socket
    # Who this is (trayapp.slave.identity): from how the connection came, never
    # from what it says. None until the first line of a connection to the
    # daemon's socket says whether an agent relays it.
    principal: Principal | None = None
    master: str | None = None  # the owner its tasks record: principal.owner(the id its hello claims)
    account: str | None = None  # its fair-share account: principal.account, or the claimed id
    name: str = "?"
    demand: int = 0
    grants: list[float] = field(default_factory=list)  # when each outstanding grant was given
    inbox: LineBuffer = field(default_factory=LineBuffer)
    outbox: bytearray = field(default_factory=bytearray)
    closing: bool = False
    # The peer stopped reading (an agent whose master hung up right after its
    # last messages): what it sent before is still read and acted on, a cancel
    # or a bye above all; the read side drops the session when it ends.
    write_lost: bool = False

    def send(self, kind: str, **fields) -> None:
        self.outbox += encode(kind, **fields)

    def receive(self) -> tuple[list[bytes], str | None]:
        """Whole lines that arrived, and why to drop the session if it ended;
        a line over the protocol's limit raises ProtocolError."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return [], None
        except OSError:
            data = b""
        if not data:
            return [], "connection closed"
        return self.inbox.feed(data), None

    def flush(self) -> str | None:
        """Send what the socket takes now; why to drop the session, if it should go."""
        if self.write_lost:
            self.outbox.clear()
        while self.outbox:
            try:
                sent = self.sock.send(self.outbox)
            except BlockingIOError:
                return None
            except OSError:
                self.write_lost = True
                self.outbox.clear()
                break
            del self.outbox[:sent]
        return "bye" if self.closing else None

    def close(self, why: str) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        # The PC's own user asking for the state (the tray, every few seconds) is not news.
        (log.debug if self.master == CONTROL_ID else log.info)("master %s left (%s)", self.name, why)
