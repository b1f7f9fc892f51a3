"""Settling a finished attempt: its results home, then its outcome in the queue.

Every kind of remote host ends an attempt the same way, in this order, so
that a crash at any point is settled by the next reconciliation: fetch and
check the results (:mod:`trayapp.master.fetch`), move them into place
(:mod:`trayapp.master.results`), record the outcome, and only then let the
host drop its copy. A kind's driver says what the host reported (an
:class:`~trayapp.master.fetch.Offer`, an outcome, an exit code) and where to
fetch from; :class:`Settler` does the rest, with the same limits and the same
words for every kind.

When this master cannot write a job's results (disk full, a read-only
folder), they wait on the host: the attempt says why, no more tasks of that
job are taken for the host, and the settling is tried again after a delay
that doubles up to ``recollect_max_s``, until the user has fixed the folder.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

from trayapp.master.fetch import Offer, ResultsFolderError, ResultsLimits, Source, fetch_results, results_folder_error
from trayapp.master.results import collected_by, place, results_path
from trayapp.master.store import Claim, Store
from trayapp.status import AttemptOutcome, TaskStatus

log = logging.getLogger(__name__)


class Settler:
    """One host's settling of finished attempts, and the results that wait there."""

    def __init__(self, host: str, limits: ResultsLimits, *, recollect_s: float, recollect_max_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.host = host
        self.limits = limits
        self._recollect_s = recollect_s
        self._recollect_max_s = recollect_max_s
        self._clock = clock
        # token -> (what the driver settles it again with, when, the delay after that, the job's seq)
        self.waiting: dict[str, tuple[Any, float, float, int]] = {}
        self._unblocked = False

    @property
    def blocked_jobs(self) -> frozenset[int]:
        """Jobs whose results this master cannot write now: no new tasks of theirs
        here while any of their results wait. Read from what waits, so that
        however a waiting attempt goes away (settled, dropped, forgotten at a
        reconnect), its job is free again."""
        return frozenset(entry[3] for entry in self.waiting.values())

    def settle(self, store: Store, source: Source, claim: Claim, offer: Offer, outcome: AttemptOutcome, *,
               exit_code: int | None, message: str | None, again_with: Any = None) -> bool:
        """Bring the attempt's results home and record its outcome. True: settled,
        the host may drop its copy. False: this master cannot write them; they
        wait on the host, and ``again_with`` comes back from :meth:`due` later."""
        if collected_by(results_path(claim)) == claim.attempt_id:
            # Collected before a crash: only the queue needs to hear it.
            store.finish_attempt(claim.attempt_id, outcome, exit_code=exit_code)
        else:
            try:
                self._collect(store, source, claim, offer, outcome, exit_code, message)
            except ResultsFolderError as exc:
                self._wait(store, claim, again_with, str(exc))
                return False
        if self.drop(claim.token):
            log.info("host %s: the results of job %s can be written again", self.host, claim.job_id)
        return True

    def drop(self, token: str) -> bool:
        """Stop waiting on an attempt (settled, or ended another way: cancelled,
        requeued, given up); True if it waited. Its job is free here again
        unless another of its attempts still waits."""
        entry = self.waiting.pop(token, None)
        if entry is None:
            return False
        if entry[3] not in self.blocked_jobs:
            self._unblocked = True
        return True

    def due(self) -> list[Any]:
        """What waits and is due to be settled again now."""
        now = self._clock()
        return [again for again, when, _delay, _job in list(self.waiting.values()) if now >= when]

    def is_waiting(self, token: str) -> bool:
        """The attempt's results wait on the host, and it is not yet time to try again."""
        entry = self.waiting.get(token)
        return entry is not None and self._clock() < entry[1]

    def take_unblocked(self) -> bool:
        """Whether a job's results could be written again since last asked (its queued tasks count again)."""
        unblocked, self._unblocked = self._unblocked, False
        return unblocked

    def forget_waiting(self) -> None:
        """After reconnecting: the host reports what waits again (and blocks its job again if it still must)."""
        if self.waiting:
            self._unblocked = True
        self.waiting.clear()

    def _collect(self, store: Store, source: Source, claim: Claim, offer: Offer, outcome: AttemptOutcome,
                 exit_code: int | None, message: str | None) -> None:
        with contextlib.ExitStack() as scratch:
            unpacked, problem = fetch_results(source, offer, claim, scratch, host=self.host, limits=self.limits)
            if problem:
                outcome, message = AttemptOutcome.REJECTED, problem
            if outcome is AttemptOutcome.SUCCEEDED and unpacked is None:
                outcome = AttemptOutcome.REJECTED
                message = f"{self.host} reported success but sent no results archive"
            if outcome is AttemptOutcome.SUCCEEDED:
                self._move_into_place(claim, unpacked, exit_code)
            new = store.finish_attempt(claim.attempt_id, outcome, exit_code=exit_code, message=message)
            if new is TaskStatus.FAILED and unpacked is not None and outcome is not AttemptOutcome.SUCCEEDED:
                try:
                    self._move_into_place(claim, unpacked, exit_code)  # logs and partial results
                except ResultsFolderError as exc:
                    log.error("host %s: %s (the failed task's logs are lost)", self.host, exc)

    def _move_into_place(self, claim: Claim, unpacked: Path, exit_code: int | None) -> None:
        try:
            place(claim, unpacked, exit_code=exit_code, host=self.host)
        except OSError as exc:
            raise results_folder_error(claim, exc, self.host) from exc

    def _wait(self, store: Store, claim: Claim, again_with: Any, why: str) -> None:
        """Keep the results on the host, say why on the task, stop taking the
        job's tasks here, and try again later with a growing delay."""
        _, _, delay, _ = self.waiting.get(claim.token, (None, 0.0, self._recollect_s / 2, claim.job_seq))
        delay = min(delay * 2, self._recollect_max_s)
        if claim.job_seq not in self.blocked_jobs:
            log.error("host %s: %s", self.host, why)
        self.waiting[claim.token] = (again_with, self._clock() + delay, delay, claim.job_seq)
        store.note_running_task(claim.attempt_id, why)
