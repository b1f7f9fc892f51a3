"""Masters push tasks to slave daemons over a real sshd and collect every result."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import cli, make_job, run_master_to_the_end, start_master, stop_process, wait_until

pytestmark = pytest.mark.pool

# Which slave ran a task is the queue's to say (its attempt's host): the sandbox
# keeps the slave's own settings, SPARECYCLES_HOME among them, from the task.
WHERE_TASK = """
import json, os, sys
p = json.loads(sys.argv[1])
os.makedirs("results", exist_ok=True)
json.dump({"p": p}, open("results/where.json", "w"))
print("ran", p["i"])
"""


def submit(folder, params, *extra) -> dict:
    return json.loads(cli("submit", str(folder), "--params", str(params), "--no-start", "--json", *extra,
                          check=True).stdout)


def test_tasks_run_on_slaves_over_ssh_and_every_result_comes_back(pool, tmp_path):
    a, b = pool.add_slave("a"), pool.add_slave("b")
    folder, params = make_job(tmp_path / "sweep", WHERE_TASK, params=[{"i": i} for i in range(12)],
                              extra_files={"data/table.csv": "x,y\n1,2\n"})
    job = submit(folder, params)
    master = start_master("--no-local", "--until-idle", "1")
    out = stop_process(master, timeout=120) if master.wait(120) is not None else ""
    status = json.loads(cli("status", job["job"], "--json").stdout)
    assert status["status"] == "done", out + a.log() + b.log()
    for i in range(12):
        where = json.loads((Path(job["results"]) / str(i) / "where.json").read_text())
        assert where["p"] == {"i": i}
        assert (Path(job["results"]) / str(i) / "stdout.txt").read_text() == f"ran {i}\n"
    assert {t["host"] for t in status["tasks"]} == {"a", "b"}, "both slaves should have worked"
    for slave in (a, b):
        spool = slave.home / "spool"
        # The archive went once to each slave, and the spool was cleaned after every ack.
        assert [p.name for p in (spool / "archives").iterdir()] == [f"{job['archive']}.tar"]
        assert list((spool / "tasks").iterdir()) == []
        assert [p for p in (spool / "results").rglob("*") if not p.is_dir()] == []
    hosts = {h["name"]: h for h in json.loads(cli("hosts", "list", "--json", check=True).stdout)}
    assert hosts["a"]["python"] and hosts["a"]["slots"] == 2


# Each task notes that it started in its own folder (seen from outside in the
# slave's spool), sleeps, and writes a result saying where and when it started:
# a test tells a task that was rerun from one that was collected by the
# attempts the queue recorded and by what came back.
SLEEPY_TASK = """
import json, os, sys, time
started = time.time()
open("started", "w").close()
p = json.loads(sys.argv[1])
time.sleep(p["sleep"])
os.makedirs("results", exist_ok=True)
json.dump({**p, "home": os.environ.get("SPARECYCLES_HOME"), "started": started}, open("results/done.json", "w"))
"""


def started_on(*slaves) -> set[int]:
    """The tasks (indices) that have started and not yet been packed up on these slaves."""
    found = set()
    for slave in slaves:
        for marker in (slave.home / "spool" / "tasks").glob("*/work/started"):
            try:
                found.add(json.loads((marker.parent / "params.json").read_text())["i"])
            except (OSError, ValueError, KeyError):
                continue  # a folder being made or removed right now
    return found


def attempts(home) -> list[tuple[int, str, str]]:
    """Every attempt the queue recorded: (task index, host, outcome)."""
    with sqlite3.connect(home.queue_db) as db:
        return db.execute("SELECT idx, host, outcome FROM attempts ORDER BY id").fetchall()


def assert_each_task_done_once(job: dict, n: int, home) -> list[dict]:
    """Every task done, its result back, and one attempt each: none ran twice. The results."""
    status = json.loads(cli("status", job["job"], "--json").stdout)
    assert status["status"] == "done", status
    done = []
    for i in range(n):
        done.append(json.loads((Path(job["results"]) / str(i) / "done.json").read_text()))
        assert done[-1]["i"] == i
        marker = json.loads((Path(job["results"]) / str(i) / ".sparecycles.json").read_text())
        assert marker["task"] == i
    tried = attempts(home)
    assert sorted(i for i, _, _ in tried) == list(range(n)), f"each task must run exactly once: {tried}"
    return done


def test_slave_daemon_killed_mid_task_its_tasks_finish_elsewhere(pool, tmp_path):
    doomed = pool.add_slave("doomed", slots=2)
    pool.add_slave("healthy", slots=1)  # where the doomed slave's tasks finish
    params = [{"i": i, "sleep": 2.0} for i in range(4)]
    folder, params_file = make_job(tmp_path / "job", SLEEPY_TASK, params=params)
    job = submit(folder, params_file)
    master = start_master("--no-local", "--until-idle", "1")
    try:
        wait_until(lambda: started_on(doomed), what="a task to start on the doomed slave")
        doomed.kill()  # SIGKILL: no goodbye to anyone
        assert master.wait(120) == 0
    finally:
        out = stop_process(master)
    status = json.loads(cli("status", job["job"], "--json").stdout)
    assert status["status"] == "done", out
    # Tasks orphaned on the dead slave may still end there, but their results
    # are never collected: every result folder came from a slave that lived.
    for i in range(4):
        marker = json.loads((Path(job["results"]) / str(i) / ".sparecycles.json").read_text())
        assert marker["task"] == i
    lost = [t for t in status["tasks"] if t["failures"]]
    assert not lost, "a lost host must not use up a task's retries"
    hosts = {h["name"]: h for h in json.loads(cli("hosts", "list", "--json").stdout)}
    assert hosts["doomed"]["state"] == "offline"


def test_sshd_down_for_a_while_then_back_results_are_collected_not_rerun(pool, home, tmp_path):
    slave = pool.add_slave("a", slots=2)
    params = [{"i": i, "sleep": 1.5} for i in range(2)]
    folder, params_file = make_job(tmp_path / "job", SLEEPY_TASK, params=params)
    job = submit(folder, params_file)
    master = start_master("--no-local", "--until-idle", "1")
    try:
        wait_until(lambda: started_on(slave) == {0, 1}, what="both tasks to start")
        pool.sshd.stop()
        # The tasks finish while the master cannot reach the slave: their results wait in its spool.
        # (each master's results wait in a folder of its own: spool/results/<master>/)
        wait_until(lambda: len(list((slave.home / "spool" / "results").rglob("*.tar"))) == 2,
                   what="tasks to end offline")
        wait_until(lambda: json.loads(cli("hosts", "list", "--json").stdout)[-1]["state"] == "unreachable",
                   what="the master to notice")
        back = time.time()
        pool.sshd.start()
        assert master.wait(120) == 0
    finally:
        out = stop_process(master)
    done = assert_each_task_done_once(job, 2, home)
    assert all(d["started"] < back for d in done), f"nothing may run twice: {done}\n{out}"


def test_master_killed_and_restarted_mid_job_reconciles_with_its_slaves(pool, home, tmp_path):
    slaves = pool.add_slave("a", slots=2), pool.add_slave("b", slots=2)
    params = [{"i": i, "sleep": 1.0} for i in range(10)]
    folder, params_file = make_job(tmp_path / "job", SLEEPY_TASK, params=params)
    job = submit(folder, params_file)
    first = start_master("--no-local")
    try:
        running = wait_until(lambda: len(tasks := started_on(*slaves)) >= 4 and tasks, what="four tasks to start")
    finally:
        stop_process(first, signal.SIGKILL)
    restarted = time.time()
    second = start_master("--no-local", "--until-idle", "1")
    try:
        assert second.wait(180) == 0
    finally:
        out = stop_process(second)
    # Tasks running at the kill were kept, not started again: one attempt each, results from before the restart.
    done = assert_each_task_done_once(job, 10, home)
    assert all(done[i]["started"] < restarted for i in running), f"{sorted(running)}: {done}\n{out}"
    # Each result was collected once: one attempt per task succeeded.
    status = json.loads(cli("status", job["job"], "--json").stdout)
    assert all(t["status"] == "done" for t in status["tasks"])


@pytest.mark.brian
def test_a_real_brian_task_runs_through_the_pool(pool, tmp_path):
    from trayapp.install.bundled import resource_path

    pool.add_slave("a", slots=2)
    demo = resource_path("demo")
    params = tmp_path / "two.json"
    params.write_text(json.dumps([{"input_rate_hz": 40, "g_inh": 7, "duration_ms": 300},
                                  {"input_rate_hz": 75, "g_inh": 5, "duration_ms": 300}]))
    job = submit(demo, params)
    status, out = run_master_to_the_end(job["job"], timeout=180)
    assert status["status"] == "done", out
    low = json.loads((Path(job["results"]) / "0" / "summary.json").read_text())["rate_hz"]
    high = json.loads((Path(job["results"]) / "1" / "summary.json").read_text())["rate_hz"]
    assert 0 < low < high


def test_a_slave_whose_task_environment_lacks_a_requirement_builds_one_for_the_job(pool, tmp_path):
    # Slave "old" runs tasks with an interpreter without Brian; "new" has Brian 2.9.0. The job pins
    # 2.8.0, as a user writes it (no numpy cap): each builds an environment for it.
    # (tests/test_envs_pool.py follows such jobs in detail.)
    import subprocess
    import sys

    bare = tmp_path / "bare env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    old = pool.add_slave("old", slots=1, config=f'task_python = "{bare / "bin" / "python"}"\n')
    pool.add_slave("new", slots=1)
    folder, params = make_job(tmp_path / "needs-brian", WHERE_TASK, params=[{"i": i} for i in range(4)],
                              extra_files={"sparecycles.toml": 'requires = ["brian2 == 2.8.0"]\n'})
    job = submit(folder, params)
    status, out = run_master_to_the_end(job["job"], timeout=300)
    assert status["status"] == "done", out
    assert all(t["failures"] == 0 for t in status["tasks"])
    hosts = {h["name"]: h for h in json.loads(cli("hosts", "list", "--json").stdout)}
    assert hosts["old"]["brian"] is None and hosts["new"]["brian"]
    if "old" in {t["host"] for t in status["tasks"]}:  # it ran there: in an environment built for the job, not in the bare one
        envs = json.loads(cli("envs", "list", "--json", env={"SPARECYCLES_HOME": str(old.home)}).stdout)
        assert [e["requirements"] for e in envs] == [["brian2==2.8.0"]]
