"""The master's time-limit rule (trayapp/master/timelimit.py) on a real queue
with a clock the test moves; tests/test_master_time_limit.py tries it against
a real slave whose reports never arrive."""

from __future__ import annotations

import pytest


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def queue_with_claims(tmp_path, clock, limit):
    from trayapp.master.store import Store

    store = Store(tmp_path / "queue.sqlite3", clock=clock)
    store.add_host("lab", kind="ssh", options={"address": "127.0.0.1"})
    store.add_job(name="j", folder="/f", main="main.py", archive_sha="a" * 64, archive_path="/a.tar",
                  params_file=None, param_sets=[{}, {}], results_root=tmp_path, time_limit_s=limit)
    return store, store.claim("lab", 2)


@pytest.mark.parametrize("limit", [None, 5.0])
def test_the_deadline_counts_from_the_start_heard_or_from_the_claim_with_room_to_prepare(tmp_path, limit):
    from trayapp.master.timelimit import TimeLimits

    clock = Clock()
    store, (heard, silent) = queue_with_claims(tmp_path, clock, limit)
    limits = TimeLimits(grace_s=3, prepare_s=100, clock=clock, check_every_s=0)
    clock.now += 10
    limits.started(heard.token)  # at 1010: due at 1018; the silent one at 1000 + 5 + 3 + 100
    cancelled = []
    clock.now = 1017.9
    assert limits.give_up_overdue(store, "lab", cancelled.append) == []
    clock.now = 1018.1
    given_up = limits.give_up_overdue(store, "lab", cancelled.append)
    if limit is None:  # no limit: nothing is ever given up
        clock.now = 1e9
        assert given_up == [] and limits.give_up_overdue(store, "lab", cancelled.append) == []
        return
    assert given_up == cancelled == [heard.token]
    task = store.tasks(heard.job_seq)[heard.idx]
    assert (task.status.value, task.outcome) == ("failed", "timed_out") and "5 s (plus 3 s" in task.message
    clock.now = 1108.1
    assert limits.give_up_overdue(store, "lab", None) == [silent.token]  # unreachable: no cancel
    message = store.tasks(silent.job_seq)[silent.idx].message
    assert "100 s to prepare it" in message and "the host being unreachable" in message, message
