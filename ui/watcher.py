"""Keeps the window and the tray up to date: reads the queue on the executor
every ``interval_ms`` and emits what it read on the GUI thread. In slave mode
it also asks the slave daemon for its state, every ``slave_every`` reads: each
question is a connection the daemon logs, and the tray's own actions get the
new state in their answer anyway.

A read is never started while the previous one is still out, so a slow disk
delays updates instead of piling them up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from trayapp.errors import UserError
from sparecycles_ui.snapshot import Snapshot, SnapshotReader


@dataclass(frozen=True)
class Reading:
    snapshot: Snapshot
    slave_asked: bool = False  # whether this reading asked the slave daemon
    slave: dict | None = None  # its state, if it answered
    slave_problem: str | None = None
    digest: Any = None  # what the window's digest function made of the snapshot, off the GUI thread


def read_everything(reader: SnapshotReader, slave_state: Callable[[], dict] | None,
                    digest: Callable[[Snapshot], Any] | None = None) -> Reading:
    snapshot = reader.read()
    extra = {"digest": digest(snapshot)} if digest is not None else {}
    if slave_state is None:
        return Reading(snapshot, **extra)
    try:
        return Reading(snapshot, True, slave_state(), **extra)
    except UserError as exc:
        return Reading(snapshot, True, None, exc.problem, **extra)


class Watcher(QObject):
    read = pyqtSignal(object)  # Reading
    failed = pyqtSignal(str)

    def __init__(self, executor, reader: SnapshotReader, slave_state: Callable[[], dict] | None = None,
                 interval_ms: int = 1000, slave_every: int = 5, digest: Callable[[Snapshot], Any] | None = None,
                 parent=None):
        super().__init__(parent)
        self._executor = executor
        self.reader = reader
        # Work on each snapshot that must not run on the GUI thread (the pool
        # chart's busy slots over thousands of attempts); it runs on the executor.
        self.digest = digest
        self.slave_state = slave_state
        self._busy = False
        self._reads = 0
        self.slave_every = slave_every
        self.last: Reading | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.refresh)

    def start(self) -> None:
        self.refresh()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def refresh(self) -> None:
        if self._busy:
            return
        self._busy = True
        reader = self.reader
        slave_state = self.slave_state if self._reads % self.slave_every == 0 else None
        self._reads += 1
        digest = self.digest
        self._executor.run(lambda: read_everything(reader, slave_state, digest), self._done, self._failed)

    def _done(self, reading: Reading) -> None:
        self._busy = False
        self.last = reading
        self.read.emit(reading)

    def _failed(self, exc: BaseException) -> None:
        self._busy = False
        self.failed.emit(str(exc))
