"""A slave engine serving on a thread of the test: no daemon, no listener;
masters reach it through :class:`support.peer.ProtocolPeer` socket pairs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trayapp.run.posix import PosixRunner
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import Spool


@contextmanager
def serving_engine(spool: Path, settings: SlaveSettings, *, slave_id: str = "5a5a5a5a5a5a5a5a",
                   runner=None) -> Iterator[SlaveEngine]:
    """The engine, serving until the block ends; then stopped and closed."""
    engine = SlaveEngine(Spool(spool), settings, slave_id=slave_id, runner=runner or PosixRunner())
    thread = threading.Thread(target=engine.serve, kwargs={"poll_s": 0.05}, daemon=True)
    thread.start()
    try:
        yield engine
    finally:
        engine.request_stop()
        thread.join(10)
        engine.close()
