"""Work off the GUI thread, results back on it through signals.

Everything slow (reading the queue, packing a job folder, SSH, talking to the
slave daemon) goes through an executor that :mod:`sparecycles_ui.app` passes in. Two kinds:

- :class:`ThreadExecutor`: a ``QThreadPool``; the result crosses back to the
  GUI thread as a queued signal, so callbacks always run on the GUI thread.
- :class:`InlineExecutor`: runs the work at once on the caller's thread; tests
  use it to make every step synchronous and exact.

SQLite connections belong to the thread that opened them, so work that reads
the queue asks :class:`PerThreadApp` for its thread's own ``App``.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from PyQt6.QtCore import QObject, QRunnable, QThreadPool, pyqtSignal, pyqtSlot

from trayapp.app import App
from trayapp.config import Config
from trayapp.home import Home

Done = Callable[[Any], None]
Failed = Callable[[BaseException], None]


def _raise(exc: BaseException) -> None:
    raise exc


class InlineExecutor:
    """Runs work synchronously: for tests, and a fallback with no event loop."""

    def run(self, work, done=None, failed=None) -> None:
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 - handed to the caller's failed()
            (failed or _raise)(exc)
            return
        if done is not None:
            done(result)


class _Call(QObject):
    """Lives on the GUI thread; its signals are emitted from a pool thread, so
    Qt queues the slot calls onto the GUI thread."""

    succeeded = pyqtSignal(object)
    raised = pyqtSignal(object)

    def __init__(self, owner: "ThreadExecutor", done: Done | None, failed: Failed | None):
        super().__init__()
        self._owner, self._done, self._failed = owner, done, failed
        self.succeeded.connect(self._on_succeeded)
        self.raised.connect(self._on_raised)

    @pyqtSlot(object)
    def _on_succeeded(self, result) -> None:
        self._owner._pending.discard(self)
        if self._done is not None:
            self._done(result)

    @pyqtSlot(object)
    def _on_raised(self, exc) -> None:
        self._owner._pending.discard(self)
        if self._failed is not None:
            self._failed(exc)
        else:
            import logging

            logging.getLogger("sparecycles.ui").error("background work failed", exc_info=exc)


class _Runnable(QRunnable):
    def __init__(self, work: Callable[[], Any], call: _Call):
        super().__init__()
        self._work, self._call = work, call

    def run(self) -> None:
        try:
            result = self._work()
        except Exception as exc:  # noqa: BLE001 - reported on the GUI thread
            self._call.raised.emit(exc)
        else:
            self._call.succeeded.emit(result)


class ThreadExecutor:
    def __init__(self, pool: QThreadPool | None = None, max_threads: int = 2):
        self.pool = pool or QThreadPool()
        self.pool.setMaxThreadCount(max_threads)
        self._pending: set[_Call] = set()  # keeps each call alive until its result arrives

    def run(self, work, done=None, failed=None) -> None:
        call = _Call(self, done, failed)
        self._pending.add(call)
        self.pool.start(_Runnable(work, call))

    def wait(self, msecs: int = 30000) -> bool:
        return self.pool.waitForDone(msecs)


class PerThreadApp:
    """One :class:`App` (hence one queue connection) per thread."""

    def __init__(self, home: Home, config: Config):
        self.home = home
        self.config = config
        self._local = threading.local()

    def set_config(self, config: Config) -> None:
        self.config = config

    def get(self) -> App:
        app = getattr(self._local, "app", None)
        if app is None:
            app = self._local.app = App(self.home, self.config)
        app.config = self.config
        return app
