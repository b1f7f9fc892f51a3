"""One tray app per SpareCycles home: a second start shows the first's window.

The first instance holds a lock file in the home and listens on a local
socket named after the home; a later start finds the lock taken, asks the
first (over the socket) to show its window, and exits.
"""

from __future__ import annotations

import hashlib
import os
import time

from PyQt6.QtCore import QObject, pyqtSignal
from PyQt6.QtNetwork import QLocalServer, QLocalSocket

from trayapp.locks import InstanceLock
from trayapp.home import Home


def server_name(home: Home) -> str:
    digest = hashlib.sha256(str(home.data_dir.resolve()).encode()).hexdigest()[:16]
    return f"sparecycles-{os.getuid() if hasattr(os, 'getuid') else 0}-{digest}"


class SingleInstance(QObject):
    showRequested = pyqtSignal()

    def __init__(self, home: Home, parent=None):
        super().__init__(parent)
        self.name = server_name(home)
        self._lock = InstanceLock(home.tray_lock)
        self.server: QLocalServer | None = None

    def claim(self) -> bool:
        """True if this is the first instance (it then listens for later ones)."""
        if not self._lock.acquire():
            return False
        QLocalServer.removeServer(self.name)  # left by a first instance that was killed
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.listen(self.name)
        self.server.newConnection.connect(self._connected)
        return True

    def _connected(self) -> None:
        while self.server is not None and self.server.hasPendingConnections():
            conn = self.server.nextPendingConnection()
            conn.readyRead.connect(lambda c=conn: self._read(c))
            conn.disconnected.connect(conn.deleteLater)

    def _read(self, conn: QLocalSocket) -> None:
        if bytes(conn.readAll()).strip() == b"show":
            self.showRequested.emit()

    def ask_first_to_show(self, timeout_s: float = 10.0) -> bool:
        """From a later instance: tell the first one to show its window."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # the first may still be starting up
            sock = QLocalSocket()
            sock.connectToServer(self.name)
            if sock.waitForConnected(500):
                sock.write(b"show\n")
                sock.waitForBytesWritten(1000)
                sock.disconnectFromServer()
                return True
            time.sleep(0.2)
        return False

    def release(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        self._lock.release()
