"""The master's own watch on a job's time limit, for attempts on other PCs.

A slave stops a task at its time limit and reports it ``timed_out``. A slave
that never reports (a modified agent, a daemon that hangs, a lender who wants
to hold our tasks) would hold the task forever: the master waits for a report
that never comes. So the master keeps the limit too, with room for what honest
hosts need beyond it:

- from the moment the host says the task **started**: the limit, plus
  ``grace_s`` for the host to stop it, pack its results and report;
- for an attempt the host never said started (or whose start this master did
  not hear: it restarted since), counted from the claim: ``prepare_s`` more,
  for the archive's upload and a job environment's build.

An attempt past that is given up as ``timed_out``, exactly as a slave's own
report of the limit would end it (retried per the job's retries, then failed),
and the host, if it is reachable, is told to cancel it. A late report for it
is then acknowledged and dropped, as for any attempt the queue has settled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from trayapp.master.store import OpenAttempt, Store
from trayapp.status import AttemptOutcome


@dataclass
class TimeLimits:
    grace_s: float
    prepare_s: float
    clock: Callable[[], float] = time.time  # the queue's clock: attempts' ``started`` is in it
    check_every_s: float = 1.0
    _started: dict[str, float] = field(default_factory=dict)  # token -> when the host said it started
    _checked: float = 0.0

    def started(self, token: str) -> None:
        self._started.setdefault(token, self.clock())

    def deadline(self, attempt: OpenAttempt) -> float | None:
        """When the master gives ``attempt`` up, or None (its job has no limit)."""
        if not attempt.time_limit_s:
            return None
        began = self._started.get(attempt.token)
        if began is not None:
            return began + attempt.time_limit_s + self.grace_s
        return attempt.started + attempt.time_limit_s + self.grace_s + self.prepare_s

    def give_up_overdue(self, store: Store, host: str, cancel: Callable[[str], None] | None,
                        spare: frozenset[str] | set[str] = frozenset()) -> list[str]:
        """End every open attempt on ``host`` that is past its deadline, about once
        a second; ``cancel(token)`` tells the host (None: it is unreachable);
        ``spare``: tokens whose report did arrive (their results wait for us).
        Returns the tokens given up."""
        now = self.clock()
        if now - self._checked < self.check_every_s:
            return []
        self._checked = now
        open_tokens = set()
        given_up = []
        for attempt in store.open_attempts(host):
            open_tokens.add(attempt.token)
            deadline = self.deadline(attempt)
            if deadline is None or now < deadline or attempt.token in spare:
                continue
            heard = attempt.token in self._started
            message = (f"{host} did not report the task ended within its time limit of {attempt.time_limit_s:g} s "
                       f"(plus {self.grace_s:g} s" + ("" if heard else f" and {self.prepare_s:g} s to prepare it")
                       + " for the host to stop it and send what it wrote); given up by this master, "
                       + ("and the host was told to stop it" if cancel else "the host being unreachable"))
            if cancel is not None:
                cancel(attempt.token)
            store.finish_attempt(attempt.attempt_id, AttemptOutcome.TIMED_OUT, message=message)
            given_up.append(attempt.token)
        # What the queue settled otherwise needs no start time any more.
        self._started = {t: s for t, s in self._started.items() if t in open_tokens and t not in given_up}
        return given_up
