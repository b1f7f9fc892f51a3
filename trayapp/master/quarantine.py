"""Keeping a misbehaving host out of work for a while, and saying why.

A host lands here two ways. It cannot start tasks: several in a row failed on
it host-side (the task could not be started, or its results not packed), and
they belong to different jobs, so the host, not one job, is the likely cause
(one job that fails everywhere is failed by the queue instead; see
``AttemptOutcome.HOST_FAILED``). Or it broke the protocol: a master must not
trust a slave that sends what no honest slave sends. Either way the driver
asks it for no work until the quarantine ends, and the host list shows the
reason, so nobody wonders why a PC sits idle.
"""

from __future__ import annotations

import time
from typing import Callable


class Quarantine:
    """One host's record of failures in a row, and the quarantine they lead to."""

    def __init__(self, *, after_jobs: int = 3, duration_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self._after_jobs = after_jobs
        self._duration_s = duration_s
        self._clock = clock
        self._failed_jobs: set[int] = set()  # jobs of the start failures since the last start that worked
        self._until: float | None = None
        self._why: str | None = None

    def start_failed(self, job_seq: int, reason: str) -> bool:
        """Count a task the host could not run; True when this puts the host in quarantine."""
        self._failed_jobs.add(job_seq)
        if len(self._failed_jobs) < self._after_jobs or self.active:
            return False
        self.impose(f"tasks of {len(self._failed_jobs)} jobs in a row could not be run there (last: {reason})")
        return True

    def start_worked(self) -> None:
        self._failed_jobs.clear()

    def impose(self, why: str) -> None:
        """Quarantine the host now, whatever its record."""
        self._until = self._clock() + self._duration_s
        self._why = why
        self._failed_jobs.clear()

    @property
    def active(self) -> bool:
        if self._until is not None and self._clock() >= self._until:
            self._until = self._why = None
        return self._until is not None

    @property
    def seconds_left(self) -> float:
        return max(0.0, self._until - self._clock()) if self.active else 0.0

    def describe(self) -> str | None:
        """The reason to show for the host, or None when it is not in quarantine."""
        if not self.active:
            return None
        return f"quarantined for {self.seconds_left:.0f} s more: {self._why}"
