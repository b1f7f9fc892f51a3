"""The dispatcher (master mode) or the slave daemon (slave mode), run as a child
process of the tray app: ``sparecycles master|slave``.

A child keeps the engine's event loop, signals and crashes away from the GUI,
and it is the very program the CLI runs. It goes on while the window is
closed; Quit stops it. If it exits on its own (e.g. another dispatcher holds
this home's lock, or it crashed) it is started again after a pause.
"""

from __future__ import annotations

import time
from pathlib import Path

from PyQt6.QtCore import QObject, QProcess, QTimer, pyqtSignal

from trayapp.install.selfcommand import sparecycles_command

STOP_TIMEOUT_MS = 15000


class Child(QObject):
    changed = pyqtSignal()

    def __init__(self, mode: str, log_file: Path, restart_ms: int = 5000, parent=None):
        super().__init__(parent)
        self.mode = mode
        self.log_file = log_file
        self.process: QProcess | None = None
        self.problem: str | None = None
        self.paused_until: float | None | bool = False  # False: not paused; None: until resumed
        self._stopping = False
        self._start_when_stopped = False  # Resume came while the old process was still stopping
        self._restart = QTimer(self, singleShot=True, interval=restart_ms)
        self._restart.timeout.connect(self.start)
        self._resume = QTimer(self, singleShot=True)
        self._resume.timeout.connect(self.resume)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    @property
    def pid(self) -> int | None:
        return int(self.process.processId()) if self.running else None

    def start(self) -> None:
        if self.paused_until is not False:
            return
        if self.running:
            self._start_when_stopped = self._stopping
            return
        self._stopping = False
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # In master mode a dispatcher started by `submit` serves us as well.
        program, *args = sparecycles_command(self.mode, *(["--quiet-if-running"] if self.mode == "master" else []))
        proc = QProcess(self)
        proc.setStandardOutputFile(str(self.log_file), QProcess.OpenModeFlag.Append)
        proc.setStandardErrorFile(str(self.log_file), QProcess.OpenModeFlag.Append)
        proc.finished.connect(self._finished)
        proc.start(program, args)
        self.process = proc
        self.changed.emit()

    def _finished(self, code: int, status) -> None:
        if self._stopping:
            self._stopping = False
            self.process = None
            self.changed.emit()
            if self._start_when_stopped:
                self._start_when_stopped = False
                self.start()
            return
        crashed = status == QProcess.ExitStatus.CrashExit
        self.problem = None if code == 0 and not crashed else (
            f"the {self.mode} process {'crashed' if crashed else f'exited with code {code}'}; see {self.log_file}")
        self._restart.start()
        self.changed.emit()

    def stop(self, *, wait: bool = True) -> None:
        """SIGTERM the child: the engine stops its tasks and reports them, which
        can take a second or two. ``wait=False`` (Pause, from the tray menu)
        returns at once, so the GUI thread never waits for it; the process is
        killed if it has not ended after STOP_TIMEOUT_MS. Quit waits."""
        self._restart.stop()
        self._start_when_stopped = False
        proc = self.process
        if proc is None or proc.state() == QProcess.ProcessState.NotRunning:
            self.process = None
            self.changed.emit()
            return
        self._stopping = True
        proc.terminate()
        if not wait:
            deadline = QTimer(proc, singleShot=True, interval=STOP_TIMEOUT_MS)
            deadline.timeout.connect(proc.kill)
            deadline.start()
            self.changed.emit()
            return
        if not proc.waitForFinished(STOP_TIMEOUT_MS):
            proc.kill()
            proc.waitForFinished(5000)
        self._stopping = False
        self.process = None
        self.changed.emit()

    def pause(self, seconds: float | None) -> None:
        """Master's Pause: stop the dispatcher (its tasks go back to the queue) for a while."""
        self.stop(wait=False)
        self.paused_until = None if seconds is None else time.time() + seconds
        if seconds is not None:
            self._resume.start(int(seconds * 1000))
        self.changed.emit()

    def resume(self) -> None:
        self._resume.stop()
        self.paused_until = False
        self.start()
        self.changed.emit()
