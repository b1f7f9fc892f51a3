"""Two masters share two slaves over a real sshd: the newcomer gets half the freed slots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli, make_job, start_master, stop_process, wait_until

from trayapp.master.store import Store

pytestmark = [pytest.mark.pool, pytest.mark.slow]

SLEEP_TASK = """
import json, os, sys, time
time.sleep(0.5)
os.makedirs("results", exist_ok=True)
open("results/i.txt", "w").write(sys.argv[1])
"""


def as_master(home: Path) -> dict:
    return {"SPARECYCLES_HOME": str(home)}


def test_second_master_gets_an_equal_share_whatever_the_queue_lengths(pool, home, tmp_path):
    for name in ("a", "b"):
        pool.add_slave(name, slots=2)
    home_b = tmp_path / "master-b"
    for name, slave in pool.slaves.items():
        env = as_master(home_b)
        cli("hosts", "add", name, "--host", "127.0.0.1", "--port", str(pool.sshd.port), "--key",
            str(pool.sshd.client_key), "--agent-command", slave.agent_command, env=env, check=True)
        cli("hosts", "trust", name, "--fingerprint", pool.sshd.host_key_fingerprint(), env=env, check=True)

    folder_a, params_a = make_job(tmp_path / "alice", SLEEP_TASK, params=[{"i": i} for i in range(200)])
    folder_b, params_b = make_job(tmp_path / "bob", SLEEP_TASK, params=[{"i": i} for i in range(40)])
    job_a = json.loads(cli("submit", str(folder_a), "--params", str(params_a), "--no-start", "--json",
                           check=True).stdout)
    master_a = start_master("--no-local", "--until-idle", "1")
    master_b = None
    try:
        wait_until(lambda: json.loads(cli("status", job_a["job"], "--json").stdout)["counts"]["running"] == 4,
                   timeout=60, what="master A to fill every slot")
        job_b = json.loads(cli("submit", str(folder_b), "--params", str(params_b), "--no-start", "--json",
                               env=as_master(home_b), check=True).stdout)
        master_b = start_master("--no-local", "--until-idle", "1", env=as_master(home_b))
        assert master_b.wait(180) == 0
        assert master_a.wait(240) == 0
    finally:
        out_a = stop_process(master_a)
        out_b = stop_process(master_b) if master_b else ""

    store_a, store_b = Store(home.queue_db), Store(home_b / "queue.sqlite3")
    a, b = store_a.job(job_a["job"]), store_b.job(job_b["job"])
    assert a.status.value == "done" and b.status.value == "done", out_a + out_b
    starts_a = [r["started"] for r in store_a.attempts(a.seq) if r["outcome"] == "succeeded"]
    starts_b = [r["started"] for r in store_b.attempts(b.seq) if r["outcome"] == "succeeded"]
    assert len(starts_a) == 200 and len(starts_b) == 40, "every task ran to completion exactly once"
    first_b, last_b = min(starts_b), max(starts_b)
    a_in_window = sum(1 for t in starts_a if first_b <= t <= last_b)
    share = len(starts_b) / (len(starts_b) + a_in_window)
    assert 0.4 <= share <= 0.6, f"B got {share:.0%} of the slots freed while it had work"
    assert b.finished < a.finished - 5, "B's 40 tasks must not wait behind A's 200"
    # The master sees its share on each slave; the slave's own status shows use per master.
    for host in json.loads(cli("hosts", "list", "--json", env=as_master(home_b)).stdout):
        assert 0.0 < host["share"] < 1.0
    slave_status = cli("status", env={"SPARECYCLES_HOME": str(pool.slaves["a"].home)}).stdout
    assert "recent use by master:" in slave_status
    assert slave_status.count("%") >= 2, slave_status
    for job in (job_a, job_b):
        results = Path(job["results"])
        assert len([p for p in results.iterdir() if (p / "i.txt").exists()]) == job["tasks"]
