"""Job and task states, and the one table of transitions between them.

States are ``str`` enums so they are stored as readable text in the queue and
printed as-is by ``status --json``. Every state change in the store goes
through :func:`check_task_transition`, so a bug that would, say, move a ``done``
task back to ``running`` fails loudly instead of corrupting history.
"""

from __future__ import annotations

from enum import Enum


class TaskStatus(str, Enum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"  # claimed by a host, being prepared
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_in_flight(self) -> bool:
        return self in (TaskStatus.DISPATCHED, TaskStatus.RUNNING)


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AttemptOutcome(str, Enum):
    """Why an attempt ended; kept beside the task so history says *why*."""

    SUCCEEDED = "succeeded"
    EXITED = "exited"  # the task's own code failed (non-zero exit or signal)
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"  # the slave's user came back: not the task's fault
    HOST_LOST = "host_lost"  # host or dispatcher vanished: not the task's fault
    # The host could not start the task or pack its results ("Argument list too
    # long", disk full): maybe the host, maybe the task; a second time fails it.
    HOST_FAILED = "host_failed"
    REJECTED = "rejected"  # the host refused the job (bad archive, no space...)


T = TaskStatus
TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    # queued to failed: no connected host can meet the job's requirements
    T.QUEUED: frozenset({T.DISPATCHED, T.CANCELLED, T.FAILED}),
    # back to queued: transfer failed or host lost before the process started
    T.DISPATCHED: frozenset({T.RUNNING, T.QUEUED, T.FAILED, T.CANCELLED}),
    # back to queued: preempted, host lost, or a retry of the task's own failure
    T.RUNNING: frozenset({T.DONE, T.FAILED, T.QUEUED, T.CANCELLED}),
    T.DONE: frozenset(),
    # the user's `retry` verb puts failed and cancelled tasks back in the queue
    T.FAILED: frozenset({T.QUEUED}),
    T.CANCELLED: frozenset({T.QUEUED}),
}
del T

J = JobStatus
JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    J.QUEUED: frozenset({J.RUNNING, J.DONE, J.FAILED, J.CANCELLED}),
    J.RUNNING: frozenset({J.QUEUED, J.DONE, J.FAILED, J.CANCELLED}),
    # A done job is final: `retry` queues only failed and cancelled tasks, and it has none.
    J.DONE: frozenset(),
    # `retry` re-opens a failed or cancelled job: queued again, or running when
    # some of its tasks are done (the job's state follows its tasks' counts).
    J.FAILED: frozenset({J.QUEUED, J.RUNNING}),
    J.CANCELLED: frozenset({J.QUEUED, J.RUNNING}),
}
del J


class TransitionError(RuntimeError):
    """A state change the tables do not allow: a bug, never user input."""


def check_task_transition(old: TaskStatus | str, new: TaskStatus | str) -> None:
    old, new = TaskStatus(old), TaskStatus(new)
    if new not in TASK_TRANSITIONS[old]:
        raise TransitionError(f"task cannot go from {old.value} to {new.value}")


def check_job_transition(old: JobStatus | str, new: JobStatus | str) -> None:
    old, new = JobStatus(old), JobStatus(new)
    if old != new and new not in JOB_TRANSITIONS[old]:
        raise TransitionError(f"job cannot go from {old.value} to {new.value}")


def job_status_from_counts(counts: dict[str, int]) -> JobStatus:
    """A job's state follows from how many of its tasks are in each state."""
    total = sum(counts.values())
    get = lambda s: counts.get(s.value, 0)  # noqa: E731
    if total == 0 or get(TaskStatus.QUEUED) == total:
        return JobStatus.QUEUED
    if get(TaskStatus.DONE) == total:
        return JobStatus.DONE
    unfinished = get(TaskStatus.QUEUED) + get(TaskStatus.DISPATCHED) + get(TaskStatus.RUNNING)
    if unfinished:
        return JobStatus.RUNNING
    if get(TaskStatus.FAILED):
        return JobStatus.FAILED
    return JobStatus.CANCELLED
