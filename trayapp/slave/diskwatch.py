"""Measuring running tasks' folders against their disk caps, off the event loop.

Every few seconds a thread of its own walks each running attempt's folder
(and the growth of its writable caches outside it since the attempt started)
with :func:`trayapp.run.taskfiles.disk_usage`, which never follows a link.
An attempt over its cap (``launch.disk_mb``) is reported with the reason its
master will read, and the engine is woken to kill it; see
:mod:`trayapp.run.caps` for why a walk and ``RLIMIT_FSIZE`` are the nets.
The walk runs on this thread so that a task with a hundred thousand files
never delays the engine's loop, nor a returning user's preemption.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from trayapp.run.runner import Launch
from trayapp.run.taskfiles import disk_usage

log = logging.getLogger(__name__)

MEASURE_EVERY_S = 2.0


@dataclass
class _Watched:
    task_dir: Path
    elsewhere: tuple[Path, ...]  # its folders while they are moved out of task_dir (a warm start's)
    cap_bytes: int
    cap_mb: int
    caches: tuple[Path, ...]  # writable folders outside the task's folder: only their growth counts
    baseline: dict[Path, int] | None = field(default=None)


class DiskWatch:
    """Attempts being measured, by token; ``wake`` is called (from the thread)
    when one goes over its cap."""

    def __init__(self, wake: Callable[[], None], *, every_s: float = MEASURE_EVERY_S):
        self._wake = wake
        self._every_s = every_s
        self._watched: dict[str, _Watched] = {}
        self._over: dict[str, str] = {}
        self._lock = threading.Lock()
        self._nudge = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def watch(self, token: str, launch: Launch, elsewhere: tuple[Path, ...] = ()) -> None:
        """Measure the attempt's folder, and ``elsewhere`` the folders of it a runner
        moved out of it while it runs (:class:`trayapp.run.warm.WarmTask`)."""
        if not launch.disk_mb:
            return
        inside = str(launch.task_dir).rstrip("/") + "/"  # plain strings: pathlib costs here, once per start
        caches = tuple(p for p in launch.writable if not (str(p) + "/").startswith(inside))
        with self._lock:
            self._watched[token] = _Watched(launch.task_dir, tuple(elsewhere), launch.disk_mb << 20, launch.disk_mb,
                                            caches)
        if caches:
            self._nudge.set()  # the caches' sizes before the task writes much into them
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sparecycles-diskwatch", daemon=True)
            self._thread.start()

    def forget(self, token: str) -> None:
        with self._lock:
            self._watched.pop(token, None)
            self._over.pop(token, None)

    def take_over(self) -> dict[str, str]:
        """The attempts found over their cap since the last call, with why."""
        with self._lock:
            over, self._over = self._over, {}
        return over

    def close(self) -> None:
        self._stopping = True
        self._nudge.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stopping:
            self._nudge.wait(self._every_s)
            self._nudge.clear()
            if self._stopping:
                return
            with self._lock:
                watched = list(self._watched.items())
            for token, entry in watched:
                reason = self._measure(entry)
                if reason is None:
                    continue
                with self._lock:
                    if self._watched.get(token) is entry:  # not ended (and its folder removed) meanwhile
                        self._over[token] = reason
                        del self._watched[token]
                self._wake()

    @staticmethod
    def _measure(entry: _Watched) -> str | None:
        """Why the attempt is over its cap, or None."""
        try:
            caches = {path: disk_usage(path) for path in entry.caches}
            if entry.baseline is None:
                entry.baseline = caches
            used = sum(disk_usage(folder) for folder in (entry.task_dir, *entry.elsewhere)) + sum(max(0, size - entry.baseline.get(path, 0))
                                                    for path, size in caches.items())
        except OSError as exc:  # what cannot be measured is not taken to be small
            return f"killed: its folder could not be measured against its disk cap of {entry.cap_mb} MB ({exc})"
        if used > entry.cap_bytes:
            return f"killed: over its disk cap of {entry.cap_mb} MB (its folder held {used / 1e6:.0f} MB)"
        return None
