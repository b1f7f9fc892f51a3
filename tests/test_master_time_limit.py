"""The master keeps a job's time limit on other PCs itself: a slave that never
reports a task ended cannot hold it. The slave here is real (a slave daemon
behind the real sshd, sandbox on) but its agent is modified the way a hostile
lender could: its ``finished`` reports never reach the master."""

from __future__ import annotations

import json
import shlex
import time

import pytest
from conftest import cli, make_job, start_master, stop_process, wait_until
from support.pool import Pool

pytestmark = pytest.mark.pool

SLEEPER = "import time\ntime.sleep(60)\n"
FINISHED_REPORT = '"type":"finished"'  # how each of the slave's finished reports is spelt on the wire


def task_of(job_id: str) -> dict:
    return json.loads(cli("status", job_id, "--json", check=True).stdout)["tasks"][0]


def submit_sleeper(tmp_path, name: str) -> str:
    folder, _ = make_job(tmp_path / name, SLEEPER)
    return json.loads(cli("submit", str(folder), "--time-limit", "5s", "--retries", "0", "--no-start", "--json",
                          check=True).stdout)["job"]


def set_grace(home, seconds: float) -> None:
    home.config_file.write_text(f"time_limit_grace_s = {seconds}\n")


def test_a_slave_that_never_reports_loses_the_task_at_its_time_limit(home, sshd, tmp_path, monkeypatch):
    pool = Pool(tmp_path, sshd)
    try:
        slave = pool.add_slave("holder", slots=1)
        # The modified agent: everything but its "finished" reports reaches the master.
        hostile = f"{slave.agent_command} | grep --line-buffered -v {shlex.quote(FINISHED_REPORT)}"
        cli("hosts", "remove", "holder", check=True)
        cli("hosts", "add", "holder", "--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user,
            "--key", str(sshd.client_key), "--agent-command", hostile, check=True)
        cli("hosts", "trust", "holder", "--fingerprint", sshd.host_key_fingerprint(), check=True)

        # The protection off (a grace no job outlives): the slave stopped the task at 5 s,
        # but the master still shows it running, well past its limit.
        set_grace(home, 1e6)
        held = submit_sleeper(tmp_path, "held")
        master = start_master("--no-local")
        try:
            wait_until(lambda: task_of(held)["status"] == "running", timeout=60, what="the task to start")
            started = time.monotonic()
            time.sleep(5 + 3 + 6)  # its limit, the grace used below, and more
            assert task_of(held)["status"] == "running", "without the protection the task should be held"
            assert time.monotonic() - started >= 14
        finally:
            stop_process(master)
        cli("cancel", held, check=True)

        # The protection on: given up at its limit plus the grace, failed as a time limit fails.
        set_grace(home, 3)
        job = submit_sleeper(tmp_path, "bounded")
        master = start_master("--no-local")
        try:
            wait_until(lambda: task_of(job)["status"] == "running", timeout=60, what="the task to start")
            task = wait_until(lambda: (t := task_of(job))["status"] != "running" and t, timeout=60,
                              what="the master to give the task up")
        finally:
            out = stop_process(master)
        assert task["status"] == "failed" and task["outcome"] == "timed_out", task
        assert "did not report the task ended within its time limit of 5 s" in task["message"], task
        assert "the host was told to stop it" in task["message"], task
        assert "Traceback" not in out, out
    finally:
        pool.close()

