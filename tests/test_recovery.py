"""A dispatcher killed with SIGKILL and restarted loses no task and runs none twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_job, wait_until
from support.tasks import all_ended, running_scripts

from trayapp.job.submit import submit_job
from trayapp.status import JobStatus, TaskStatus

pytestmark = pytest.mark.slow

# Each task notes that it started in its own folder, sleeps, then writes a
# result with the time it started. The test sees tasks run from outside (their
# folders in the spool, their processes) and counts runs from what comes back:
# attempts and results.
SLEEPY_TASK = """
import json, os, sys, time
started = time.time()
open("started", "w").close()
p = json.loads(sys.argv[1])
time.sleep(p["sleep"])
os.makedirs("results", exist_ok=True)
json.dump({**p, "started": started}, open("results/done.json", "w"))
"""


def start_master(home_env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sparecycles", "master", "--slots", "2", *extra],
                            env=home_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkilled_dispatcher_restarts_without_losing_or_repeating_tasks(app, tmp_path):
    # The first two long enough that the kill lands while they run, and they
    # still run once the next master has started (probing the sandbox takes a second).
    params = [{"i": i, "sleep": 5 if i < 2 else 0.5} for i in range(6)]
    folder, params_file = make_job(tmp_path / "durable", SLEEPY_TASK, params=params)
    job = submit_job(app.store, app.home, app.config, folder, params=params_file).job
    env = {**os.environ, "SPARECYCLES_HOME": str(app.home.data_dir)}

    first = start_master(env)
    try:
        spool = app.home.data_dir / "local-spool" / "tasks"
        wait_until(lambda: len(list(spool.glob("*/work/started"))) >= 2, timeout=30, what="two tasks to start")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    in_flight = {t.idx for t in app.store.tasks(job.seq) if t.status.is_in_flight}
    assert in_flight, "the kill should have left tasks in flight"

    restarted_at = time.time()
    second = start_master(env, "--until-idle", "1")
    try:
        output, _ = second.communicate(timeout=120)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, output

    job = app.store.job(job.id)
    assert job.status is JobStatus.DONE, output
    assert [t.status for t in app.store.tasks(job.seq)] == [TaskStatus.DONE] * 6
    done = [json.loads((Path(job.results_dir) / str(i) / "done.json").read_text()) for i in range(6)]
    assert [d["i"] for d in done] == list(range(6))
    # The tasks that were running when the dispatcher died were adopted, not
    # restarted: one attempt each, and their results are from the run before the kill.
    attempts = app.store.attempts(job.seq)
    assert sorted(a["idx"] for a in attempts) == list(range(6)), [dict(a) for a in attempts]
    assert all(done[i]["started"] < restarted_at for i in in_flight), (in_flight, done, restarted_at)
    assert "adopting task" in output


def test_task_that_finished_while_no_dispatcher_ran_is_collected_not_rerun(app, tmp_path):
    params = [{"i": 0, "sleep": 1.0}]
    folder, params_file = make_job(tmp_path / "finished-alone", SLEEPY_TASK, params=params)
    job = submit_job(app.store, app.home, app.config, folder, params=params_file).job
    env = {**os.environ, "SPARECYCLES_HOME": str(app.home.data_dir)}

    first = start_master(env)
    try:
        running = wait_until(lambda: running_scripts(job.id), what="the task to start")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    wait_until(lambda: all_ended(running[0]), what="the orphaned task to finish on its own")

    restarted_at = time.time()
    second = start_master(env, "--until-idle", "0.5")
    output, _ = second.communicate(timeout=60)
    assert "finished while no slave engine ran" in output
    job = app.store.job(job.id)
    assert job.status is JobStatus.DONE
    assert len(app.store.attempts(job.seq)) == 1, "collected, not run again"
    assert json.loads((Path(job.results_dir) / "0" / "done.json").read_text())["started"] < restarted_at


def test_attempt_claimed_but_never_started_goes_back_to_the_queue(app, tmp_path):
    # As if the dispatcher died right after claiming: the queue shows the task
    # dispatched, but no process ever ran. It must run again, without using a retry.
    folder, _ = make_job(tmp_path / "claimed", "import os; os.makedirs('results', exist_ok=True)\n")
    job = submit_job(app.store, app.home, app.config, folder).job
    [claim] = app.store.claim("local", 1)
    assert app.store.tasks(job.seq)[0].status is TaskStatus.DISPATCHED

    app.dispatcher().run(until_idle=0.3)
    task = app.store.tasks(job.seq)[0]
    assert task.status is TaskStatus.DONE
    assert task.failures == 0
    outcomes = [a["outcome"] for a in app.store.attempts(job.seq)]
    assert outcomes == ["host_lost", "succeeded"]


def test_sigterm_stops_running_tasks_and_requeues_them(app, tmp_path):
    params = [{"i": i, "sleep": 60} for i in range(2)]
    folder, params_file = make_job(tmp_path / "interrupted", SLEEPY_TASK, params=params)
    job = submit_job(app.store, app.home, app.config, folder, params=params_file).job
    env = {**os.environ, "SPARECYCLES_HOME": str(app.home.data_dir)}
    master = start_master(env)
    try:
        running = wait_until(lambda: len(running_scripts(job.id)) == 2 and running_scripts(job.id),
                             what="both tasks to start")
        master.send_signal(signal.SIGTERM)
        master.wait(20)
    finally:
        if master.poll() is None:
            master.kill()
    assert master.returncode == 0
    assert all_ended(p for procs in running.values() for p in procs)
    assert [t.status for t in app.store.tasks(job.seq)] == [TaskStatus.QUEUED] * 2
    assert all(t.failures == 0 for t in app.store.tasks(job.seq))
