"""A dispatcher killed with SIGKILL and restarted loses no task and runs none twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_job, wait_until

from trayapp.job.submit import submit_job
from trayapp.status import JobStatus, TaskStatus

pytestmark = pytest.mark.slow

# Each task notes when it starts and when it completes in a ledger outside the
# job folder (one line per event, appended atomically), then writes a result.
LEDGER_TASK = """
import json, os, sys, time
p = json.loads(sys.argv[1])
ledger = p["ledger"]
def note(what):
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{what} {p['i']} {os.getpid()}\\n".encode())
    os.close(fd)
note("start")
time.sleep(p["sleep"])
os.makedirs("results", exist_ok=True)
json.dump(p, open("results/done.json", "w"))
note("end")
"""


def start_master(home_env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sparecycles", "master", "--slots", "2", *extra],
                            env=home_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def ledger_lines(ledger: Path) -> list[tuple[str, int]]:
    if not ledger.exists():
        return []
    return [(kind, int(i)) for kind, i, _ in (line.split() for line in ledger.read_text().splitlines())]


def test_sigkilled_dispatcher_restarts_without_losing_or_repeating_tasks(app, tmp_path):
    ledger = tmp_path / "ledger.txt"
    # Long enough tasks that the kill lands while two of them run.
    params = [{"i": i, "sleep": 1.5, "ledger": str(ledger)} for i in range(6)]
    folder, params_file = make_job(tmp_path / "durable", LEDGER_TASK, params=params)
    job = submit_job(app.store, app.home, app.config, folder, params=params_file).job
    env = {**os.environ, "SPARECYCLES_HOME": str(app.home.data_dir)}

    first = start_master(env)
    try:
        wait_until(lambda: sum(1 for k, _ in ledger_lines(ledger) if k == "start") >= 2, timeout=30,
                   what="two tasks to start")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    in_flight = {t.idx for t in app.store.tasks(job.seq) if t.status.is_in_flight}
    assert in_flight, "the kill should have left tasks in flight"

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
    ends = [i for kind, i in ledger_lines(ledger) if kind == "end"]
    assert sorted(ends) == list(range(6)), f"every task completes exactly once: {ledger.read_text()}"
    for i in range(6):
        assert json.loads((Path(job.results_dir) / str(i) / "done.json").read_text())["i"] == i
    # The tasks that were running when the dispatcher died were adopted, not restarted.
    starts = [i for kind, i in ledger_lines(ledger) if kind == "start"]
    assert sorted(starts) == list(range(6)), "an adopted task must not be started again"
    assert "adopting task" in output


def test_task_that_finished_while_no_dispatcher_ran_is_collected_not_rerun(app, tmp_path):
    ledger = tmp_path / "ledger.txt"
    params = [{"i": 0, "sleep": 1.0, "ledger": str(ledger)}]
    folder, params_file = make_job(tmp_path / "finished-alone", LEDGER_TASK, params=params)
    job = submit_job(app.store, app.home, app.config, folder, params=params_file).job
    env = {**os.environ, "SPARECYCLES_HOME": str(app.home.data_dir)}

    first = start_master(env)
    try:
        wait_until(lambda: ledger_lines(ledger), what="the task to start")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    wait_until(lambda: ("end", 0) in ledger_lines(ledger), what="the orphaned task to finish on its own")

    second = start_master(env, "--until-idle", "0.5")
    output, _ = second.communicate(timeout=60)
    assert "finished while no slave engine ran" in output
    job = app.store.job(job.id)
    assert job.status is JobStatus.DONE
    assert ledger_lines(ledger).count(("start", 0)) == 1
    assert (Path(job.results_dir) / "0" / "done.json").exists()


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
    ledger = tmp_path / "ledger.txt"
    params = [{"i": i, "sleep": 60, "ledger": str(ledger)} for i in range(2)]
    folder, params_file = make_job(tmp_path / "interrupted", LEDGER_TASK, params=params)
    job = submit_job(app.store, app.home, app.config, folder, params=params_file).job
    env = {**os.environ, "SPARECYCLES_HOME": str(app.home.data_dir)}
    master = start_master(env)
    try:
        wait_until(lambda: len(ledger_lines(ledger)) == 2, what="both tasks to start")
        pids = [int(line.split()[2]) for line in ledger.read_text().splitlines()]
        master.send_signal(signal.SIGTERM)
        master.wait(20)
    finally:
        if master.poll() is None:
            master.kill()
    assert master.returncode == 0
    from conftest import pid_alive

    assert not any(pid_alive(p) for p in pids)
    assert [t.status for t in app.store.tasks(job.seq)] == [TaskStatus.QUEUED] * 2
    assert all(t.failures == 0 for t in app.store.tasks(job.seq))
