"""A host that cannot run tasks of several jobs in a row, or that breaks the
protocol, is asked for no work for a while, and says why."""

from __future__ import annotations

import json
import threading

import pytest
from conftest import ECHO_TASK, make_job, wait_until

from trayapp.app import App
from trayapp.config import Config
from trayapp.job.submit import submit_job
from trayapp.master.driver import DriverSettings
from trayapp.master.quarantine import Quarantine
from trayapp.status import JobStatus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_of_one_job_never_quarantine_a_host():
    quarantine = Quarantine(after_jobs=3, clock=Clock())
    assert not any(quarantine.start_failed(7, "Argument list too long") for _ in range(20))
    assert not quarantine.active


def test_failures_of_three_jobs_in_a_row_quarantine_the_host_for_a_while():
    clock = Clock()
    quarantine = Quarantine(after_jobs=3, duration_s=300, clock=clock)
    assert not quarantine.start_failed(1, "a")
    assert not quarantine.start_failed(2, "b")
    assert quarantine.start_failed(3, "No such file or directory: 'python3'")
    assert quarantine.active
    assert "3 jobs in a row" in quarantine.describe() and "python3" in quarantine.describe()
    assert "300 s more" in quarantine.describe()
    clock.now += 301
    assert not quarantine.active and quarantine.describe() is None


def test_a_start_that_works_clears_the_record():
    quarantine = Quarantine(after_jobs=3, clock=Clock())
    quarantine.start_failed(1, "a")
    quarantine.start_failed(2, "b")
    quarantine.start_worked()
    assert not quarantine.start_failed(3, "c")


@pytest.mark.slow
def test_a_host_that_cannot_start_tasks_of_three_jobs_is_quarantined_and_says_why(app, tmp_path):
    config = Config(slots=2, poll_interval_s=0.05)
    jobs = []
    for n in range(3):
        folder, _ = make_job(tmp_path / f"poison{n}", ECHO_TASK)
        jobs.append(submit_job(app.store, app.home, config, folder, param_sets=[{"n": n}]).job)
        with app.store._write() as db:  # each start fails with "Argument list too long"
            db.execute("UPDATE tasks SET params=? WHERE job_seq=?", (json.dumps({"blob": "x" * 200_000}),
                                                                    jobs[-1].seq))
    settings = DriverSettings(*app.identity(), tick_s=0.05, quarantine_s=600)
    made = []

    def run() -> None:  # the queue connection belongs to the thread that uses it
        made.append(App(app.home, config).dispatcher(tuned=(settings,)))
        made[0].run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: made, timeout=10, what="the dispatcher")
    dispatcher = made[0]
    try:
        local = wait_until(lambda: next((h for h in app.store.hosts() if h.state == "quarantined"), None),
                           timeout=30, what="a quarantined host")
    finally:
        dispatcher.request_stop()
        thread.join(20)
    assert "3 jobs in a row" in local.reason and "Argument list too long" in local.reason
    # The first two failed twice there (their own fault, as far as anyone can
    # tell); the third failed once, then the host was blamed: the task waits.
    assert [app.store.job(j.id).status for j in jobs] == [JobStatus.FAILED, JobStatus.FAILED, JobStatus.QUEUED]
