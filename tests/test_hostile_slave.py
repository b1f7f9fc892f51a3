"""The master bounds what a slave may do: grants beyond its slots are ignored,
downloads are capped, a malformed `finished` is refused before anything moves,
only the master cancels, and a host that breaks the protocol is quarantined
and shown as such. The slave is ``fakes/fake_agent.py`` behind a real sshd."""

from __future__ import annotations

import json

import pytest
from conftest import cli, make_job, start_master, stop_process, wait_until
from support.results_refused import assert_results_refused
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


# ----- results limits: the same words as from a SLURM cluster (tests/test_slurm.py) -----------

def _the_task_when_settled(job_id: str) -> dict:
    return wait_until(lambda: (t := job_status(job_id)["tasks"][0])["status"] in ("failed", "done") and t,
                      timeout=90, what="the task to be settled")


def test_results_over_the_masters_cap_fail_the_task_and_the_host_stays_in_service(pool, home, tmp_path):
    # A slave whose own max_results_mb is far above this master's is not lying: the task fails, nothing is fetched.
    add_fake_host(pool, "big", "oversize", tmp_path / "big")
    job = echo_job(tmp_path, n=1)
    with Master(tmp_path) as master:
        task = _the_task_when_settled(job["job"])
        row = host_row(home, "big")
        assert master.proc.poll() is None, master.log()
    assert_results_refused(task, "oversized", host="big")
    assert row.state != "quarantined", row
    assert not list(home.default_results_dir.rglob("ok.txt")), "nothing may be moved into place"


def test_a_results_download_that_stalls_fails_the_task_after_fetch_timeout_s(pool, home, tmp_path):
    home.config_file.write_text("fetch_timeout_s = 3\n")
    add_fake_host(pool, "stuck", "stall", tmp_path / "stuck")
    job = echo_job(tmp_path, n=1)
    with Master(tmp_path) as master:
        task = _the_task_when_settled(job["job"])
        assert master.proc.poll() is None, master.log()
    assert (tmp_path / "stuck" / "sftp_stopped").read_text().strip(), "the fake found no SFTP server to stop"
    assert_results_refused(task, "stalled", host="stuck")
    assert not list(home.default_results_dir.rglob("ok.txt")), "nothing may be moved into place"
