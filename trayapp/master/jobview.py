"""One view of a job, which every face renders: ``status`` (table and
``--json``), ``wait``'s progress, the Python API's ``Summary`` and the
window's jobs table.

Each face used to count for itself (one called a dispatched task running,
another did not show it at all; each had its own idea of the time left), so a
job in mid-flight could read "1 running" in one place and "2 running" in
another. Here it is counted once, from one read of the queue: tasks per state,
how many are in flight (claimed by a host: dispatched or running), why the
queued ones wait (:mod:`trayapp.master.waits`) and an estimate of the time left.
"""

from __future__ import annotations

from dataclasses import dataclass

from trayapp.master.store import JobRecord, Store
from trayapp.master.waits import Wait, describe_waits, why_waiting
from trayapp.status import JobStatus, TaskStatus

FINAL_JOB_STATES = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class JobView:
    seq: int
    id: str
    name: str
    status: JobStatus
    queued: int
    dispatched: int  # claimed by a host, not started yet (an environment being built, an upload)
    running: int
    done: int
    failed: int
    cancelled: int
    created: float
    finished: float | None
    results_dir: str
    waiting_on: str | None = None  # a note on tasks under way: "lab-07: preparing environment (...), 40 s"
    waits: tuple[Wait, ...] = ()  # why the queued tasks do not run, most telling first

    # ----- counts ---------------------------------------------------------------------

    @property
    def total(self) -> int:
        return self.queued + self.in_flight + self.finished_count

    @property
    def in_flight(self) -> int:
        """Tasks a host holds: what every face calls running."""
        return self.dispatched + self.running

    @property
    def finished_count(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def counts(self) -> dict[str, int]:
        """Tasks in each state, every state named (``status --json``'s ``counts``)."""
        return {s.value: getattr(self, s.value) for s in TaskStatus}

    def count(self, status: TaskStatus) -> int:
        return getattr(self, TaskStatus(status).value)

    @property
    def progress(self) -> float:
        """The share of tasks finished, 0..1."""
        return self.finished_count / self.total if self.total else 0.0

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_JOB_STATES

    # ----- why it waits ---------------------------------------------------------------

    @property
    def why(self) -> str | None:
        """The reasons in one line ("declined by lab-07: ...; lab-08 paused until 14:00"), or None."""
        return describe_waits(list(self.waits)) or None

    @property
    def why_codes(self) -> tuple[str, ...]:
        return tuple(w.code.value for w in self.waits)

    # ----- time -----------------------------------------------------------------------

    def elapsed_s(self, now: float) -> float:
        return max(0.0, (self.finished or now) - self.created)

    def left_s(self, now: float) -> float | None:
        """Estimated time left at the pace so far; 0 once finished, None before the first task ends."""
        if self.finished is not None:
            return 0.0
        if self.finished_count == 0:
            return None
        return self.elapsed_s(now) / self.finished_count * (self.total - self.finished_count)

    # ----- words ----------------------------------------------------------------------

    def describe_counts(self) -> str:
        """``4/6 done, 2 running``: what ``wait``, ``status`` and the API print."""
        parts = [f"{self.done}/{self.total} done"]
        for label, n in (("running", self.in_flight), ("queued", self.queued), ("failed", self.failed),
                         ("cancelled", self.cancelled)):
            if n:
                parts.append(f"{n} {label}")
        if self.waiting_on:
            parts.append(self.waiting_on)
        return ", ".join(parts)


def view_of(store: Store, job: JobRecord) -> JobView:
    """The view of ``job`` as the queue has it now (``job`` fresh from the store)."""
    c = job.count
    return JobView(job.seq, job.id, job.name, job.status, c(TaskStatus.QUEUED), c(TaskStatus.DISPATCHED),
                   c(TaskStatus.RUNNING), c(TaskStatus.DONE), c(TaskStatus.FAILED), c(TaskStatus.CANCELLED),
                   job.created, job.finished, job.results_dir, job.waiting_on, tuple(why_waiting(store, job)))


def job_view(store: Store, ref: str) -> JobView:
    """A job's view by id, id prefix or name."""
    return view_of(store, store.job(ref))


def job_views(store: Store) -> list[tuple[JobRecord, JobView]]:
    """Every job, oldest first, with its view (the record for what the view leaves out: folder, archive...)."""
    return [(job, view_of(store, job)) for job in store.jobs()]
