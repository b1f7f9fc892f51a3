"""The one table of state transitions, walked exhaustively."""

from __future__ import annotations

import itertools

import pytest

from trayapp.status import (
    JOB_TRANSITIONS,
    TASK_TRANSITIONS,
    JobStatus,
    TaskStatus,
    TransitionError,
    check_job_transition,
    check_task_transition,
    job_status_from_counts,
)

# The design's task life cycle, written out independently of the table.
EXPECTED_TASK_EDGES = {
    ("queued", "dispatched"), ("queued", "cancelled"), ("queued", "failed"),  # failed: no host can run it
    ("dispatched", "running"), ("dispatched", "queued"), ("dispatched", "failed"), ("dispatched", "cancelled"),
    ("running", "done"), ("running", "failed"), ("running", "queued"), ("running", "cancelled"),
    ("failed", "queued"), ("cancelled", "queued"),
}

# The job's life cycle, likewise: a job follows its tasks, and `retry`
# re-opens a failed or cancelled one; a done job never changes again.
EXPECTED_JOB_EDGES = {
    ("queued", "running"), ("queued", "done"), ("queued", "failed"), ("queued", "cancelled"),
    ("running", "queued"), ("running", "done"), ("running", "failed"), ("running", "cancelled"),
    ("failed", "queued"), ("failed", "running"), ("cancelled", "queued"), ("cancelled", "running"),
}


def test_every_task_state_has_a_row():
    assert set(TASK_TRANSITIONS) == set(TaskStatus)
    assert set(JOB_TRANSITIONS) == set(JobStatus)


@pytest.mark.parametrize("old,new", list(itertools.product(TaskStatus, TaskStatus)))
def test_task_transition_table(old, new):
    if (old.value, new.value) in EXPECTED_TASK_EDGES:
        check_task_transition(old, new)
    else:
        with pytest.raises(TransitionError, match=f"from {old.value} to {new.value}"):
            check_task_transition(old, new)


def test_done_is_final_and_every_state_can_reach_done_or_an_end():
    assert TASK_TRANSITIONS[TaskStatus.DONE] == frozenset()
    for start in TaskStatus:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in TASK_TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & {TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED}


@pytest.mark.parametrize("old,new", list(itertools.product(JobStatus, JobStatus)))
def test_job_transition_table(old, new):
    if old == new or (old.value, new.value) in EXPECTED_JOB_EDGES:
        check_job_transition(old, new)
    else:
        with pytest.raises(TransitionError, match=f"from {old.value} to {new.value}"):
            check_job_transition(old, new)


@pytest.mark.parametrize("counts,expected", [
    ({}, JobStatus.QUEUED),
    ({"queued": 3}, JobStatus.QUEUED),
    ({"queued": 2, "dispatched": 1}, JobStatus.RUNNING),
    ({"queued": 2, "done": 1}, JobStatus.RUNNING),
    ({"running": 1, "failed": 1}, JobStatus.RUNNING),
    ({"done": 3}, JobStatus.DONE),
    ({"done": 2, "failed": 1}, JobStatus.FAILED),
    ({"done": 2, "cancelled": 1}, JobStatus.CANCELLED),
    ({"failed": 1, "cancelled": 1}, JobStatus.FAILED),
])
def test_job_status_follows_from_task_counts(counts, expected):
    assert job_status_from_counts(counts) is expected
