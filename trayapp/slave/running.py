"""The attempts that hold this slave's slots: their handles, slots and deadlines.

The slave engine keeps them here and reaches them only through the task
runner's protocol (:mod:`trayapp.run.runner`): which slot a new attempt
takes, what the event loop waits on, which attempts ended or ran over their
time limit or their disk cap (measured by :mod:`trayapp.slave.diskwatch`),
and killing one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

from trayapp.run.runner import TaskHandle
from trayapp.slave.diskwatch import DiskWatch

POLL_WITHOUT_WAIT_FD_S = 0.05  # how often an attempt without a wait fd is asked whether it ended


@dataclass
class Attempt:
    """An attempt that holds a slot."""

    token: str
    handle: TaskHandle
    deadline: float | None  # time.monotonic() after which the task is over its limit
    timed_out: bool = False
    over_disk: str | None = None  # why it was killed over its disk cap


class RunningAttempts:
    """``wake``: how the disk watch's thread wakes the engine's loop."""

    def __init__(self, wake: Callable[[], None] = lambda: None) -> None:
        self._attempts: dict[str, Attempt] = {}
        self._disk = DiskWatch(wake)

    def __len__(self) -> int:
        return len(self._attempts)

    def __contains__(self, token: str) -> bool:
        return token in self._attempts

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._attempts))  # a copy: the caller may kill as it goes

    def handles(self) -> list[TaskHandle]:
        return [attempt.handle for attempt in self._attempts.values()]

    def free_slot(self) -> int:
        """The lowest slot number no running attempt holds."""
        taken = {attempt.handle.launch.slot for attempt in self._attempts.values()}
        return next(n for n in range(len(taken) + 1) if n not in taken)

    def add(self, token: str, handle: TaskHandle, time_left_s: float | None) -> None:
        deadline = time.monotonic() + time_left_s if time_left_s is not None else None
        self._attempts[token] = Attempt(token, handle, deadline)
        # A runner may move the attempt's folders while it runs (a warm start's are in its parent's box).
        self._disk.watch(token, handle.launch, getattr(handle, "moved_files", ()))

    def wait_fds(self) -> list[int]:
        return [fd for attempt in self._attempts.values() if (fd := attempt.handle.wait_fd()) is not None]

    def wait_at_most(self, timeout: float) -> float:
        """``timeout`` shortened to the next deadline, and to the poll interval
        when an attempt has no wait fd."""
        now = time.monotonic()
        for attempt in self._attempts.values():
            if attempt.deadline is not None:
                timeout = min(timeout, max(0.0, attempt.deadline - now))
            if attempt.handle.wait_fd() is None:
                timeout = min(timeout, POLL_WITHOUT_WAIT_FD_S)
        return timeout

    def take_ended(self) -> list[Attempt]:
        """Remove and return the attempts that ended, and those over their time
        limit (``timed_out``) or disk cap (``over_disk``), which are killed first."""
        ended = []
        over_disk = self._disk.take_over()
        for token, attempt in list(self._attempts.items()):
            if attempt.handle.has_ended():
                ended.append(self._pop(token))
            elif attempt.deadline is not None and time.monotonic() >= attempt.deadline:
                attempt.timed_out = True
                attempt.handle.kill_whole_tree()
                ended.append(self._pop(token))
            elif token in over_disk:
                attempt.over_disk = over_disk[token]
                attempt.handle.kill_whole_tree()
                ended.append(self._pop(token))
        return ended

    def kill(self, token: str) -> bool:
        """Kill the attempt's whole tree and free its slot; False if none ran."""
        attempt = self._pop(token)
        if attempt is None:
            return False
        attempt.handle.kill_whole_tree()
        attempt.handle.close()
        return True

    def _pop(self, token: str) -> Attempt | None:
        self._disk.forget(token)
        return self._attempts.pop(token, None)

    def close(self) -> None:
        self._disk.close()
