"""What the window shows, read from the queue in one go (on a worker thread).

Qt-free on purpose: the models only ever get these plain rows, so ``data()``
never touches the store. Reading 10,000 tasks costs a few grouped queries;
the attempts of a job are read only while it has tasks in flight (for the
hosts it uses and the pool picture), otherwise only when its counts change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from trayapp.master.hosts import HostView, host_views
from trayapp.master.jobview import JobView, view_of
from trayapp.master.store import Store

POOL_WINDOW_S = 7 * 24 * 3600  # how far back the pool picture can look (its longest span)


@dataclass(frozen=True)
class JobRow(JobView):
    """A job's one view (counts, in flight, why it waits, time left: what ``status``
    and the API show), and the hosts its tasks run on now."""

    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Span:
    """One attempt on one host: a busy slot from ``started`` to ``ended`` (None: still running)."""

    host: str
    started: float
    ended: float | None


@dataclass(frozen=True)
class Snapshot:
    taken: float
    jobs: list[JobRow]
    hosts: list[HostView]
    spans: list[Span] = field(default_factory=list)


class SnapshotReader:
    """Reads snapshots; keeps what cannot change any more (finished jobs' attempts)."""

    def __init__(self, open_store: Callable[[], Store], clock: Callable[[], float] = time.time,
                 window_s: float = POOL_WINDOW_S, master_id: str | None = None):
        self._open_store = open_store
        self._master_id = master_id  # whose share of each host to show
        self._clock = clock
        self.window_s = window_s
        self._cached_spans: dict[int, tuple[tuple, list[Span]]] = {}

    def read(self) -> Snapshot:
        store = self._open_store()
        now = self._clock()
        since = now - self.window_s
        jobs, spans = [], []
        for job in store.jobs():
            view = view_of(store, job)
            hosts: tuple[str, ...] = ()
            if job.finished is not None and job.finished < since:
                pass  # ended before the pool picture begins; no attempts needed
            elif view.in_flight:
                job_spans = self._spans(store, job.seq)
                hosts = tuple(sorted({s.host for s in job_spans if s.ended is None}))
                spans += job_spans
            else:
                # Nothing in flight: its attempts change only when its counts do.
                key = (job.status, tuple(sorted(job.counts.items())), job.finished)
                cached = self._cached_spans.get(job.seq)
                if cached is None or cached[0] != key:
                    cached = self._cached_spans[job.seq] = (key, self._spans(store, job.seq))
                spans += cached[1]
            jobs.append(JobRow(**vars(view), hosts=hosts))
        return Snapshot(now, jobs, host_views(store, master_id=self._master_id), [s for s in spans if s.ended is None or s.ended >= since])

    @staticmethod
    def _spans(store: Store, job_seq: int) -> list[Span]:
        return [Span(a["host"], a["started"], a["ended"]) for a in store.attempts(job_seq)]
