"""The ``local`` host kind: this PC's own cores, a slave engine on a thread of the master."""

from __future__ import annotations

import threading

from trayapp.slave.engine import SlaveEngine
from trayapp.wire.links import LocalLink


class LocalSlave:
    """The master's own cores: a slave engine on a thread of the master's process."""

    def __init__(self, engine: SlaveEngine):
        self.engine = engine
        self._thread = threading.Thread(target=engine.serve, name="local-slave", daemon=True)

    def start(self) -> "LocalSlave":
        self._thread.start()
        return self

    def link(self) -> LocalLink:
        return LocalLink(self.engine)

    def stop(self, timeout: float = 20.0) -> None:
        self.engine.request_stop()
        self._thread.join(timeout)
        self.engine.close()
