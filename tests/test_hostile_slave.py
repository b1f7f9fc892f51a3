"""The master bounds what a slave may do: grants beyond its slots are ignored,
downloads are capped, a malformed `finished` is refused before anything moves,
only the master cancels, and a host that breaks the protocol is quarantined
and shown as such. The slave is ``fakes/fake_agent.py`` behind a real sshd."""

from __future__ import annotations

import json

import pytest
from conftest import cli, make_job, start_master, stop_process, wait_until
from test_pool_faults import Master, add_fake_host, echo_job, host_row, job_status

pytestmark = pytest.mark.pool

SECOND_TASK = """
import time
time.sleep(1)
"""


def test_grants_beyond_the_hosts_slots_are_ignored_and_local_cores_do_the_rest(pool, home, tmp_path):
    add_fake_host(pool, "flood", "flood", tmp_path / "flood")
    # Tasks of a second each: this PC's two slots must not finish the sweep
    # before the flooding host has connected over SSH (slow on a loaded machine).
    folder, params = make_job(tmp_path / "sweep", SECOND_TASK, params=[{"n": i} for i in range(16)])
    job = json.loads(cli("submit", str(folder), "--params", str(params), "--no-start", "--json",
                         check=True).stdout)
    master = start_master()  # with its own cores, as by default
    try:
        wait_until(lambda: sum(t["status"] == "done" for t in job_status(job["job"])["tasks"]) == 15,
                   timeout=90, what="the fifteen tasks the flooding host could not hold")
        held = [t for t in job_status(job["job"])["tasks"] if t["status"] != "done"]
    finally:
        stop_process(master)
    assert len(held) == 1 and held[0]["host"] == "flood", held


@pytest.mark.parametrize("mode, phrase", [
    ("devzero", "not a regular file"),
    ("resultsfile", "'results' as the wrong kind of file"),
    ("badexit", "exit_code"),
    ("selfcancel", "which only its master may do"),
])
def test_a_host_breaking_the_protocol_is_quarantined_and_its_task_runs_elsewhere(pool, home, tmp_path, mode,
                                                                                 phrase):
    add_fake_host(pool, "rogue", mode, tmp_path / "rogue")
    job = echo_job(tmp_path, n=1)
    with Master(tmp_path) as master:
        row = wait_until(lambda: (r := host_row(home, "rogue")).state == "quarantined" and r, timeout=30,
                         what="the host in quarantine")
        task = job_status(job["job"])["tasks"][0]
        assert master.proc.poll() is None, master.log()
    assert "broke the protocol" in row.reason and phrase in row.reason, row.reason
    assert (task["status"], task["failures"]) == ("queued", 0), task
    assert "broke the protocol" in task["message"], task
    assert not list(home.default_results_dir.rglob("ok.txt")), "nothing may be moved into place"
    assert "Traceback" not in master.log(), master.log()
