"""Masters push tasks to slave daemons over a real sshd and collect every result."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import cli, make_job, start_master, stop_process

# Records which slave ran it: a slave daemon's tasks inherit its SPARECYCLES_HOME.
WHERE_TASK = """
import json, os, sys
p = json.loads(sys.argv[1])
os.makedirs("results", exist_ok=True)
json.dump({"p": p, "home": os.environ.get("SPARECYCLES_HOME")}, open("results/where.json", "w"))
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
    homes = set()
    for i in range(12):
        where = json.loads((Path(job["results"]) / str(i) / "where.json").read_text())
        assert where["p"] == {"i": i}
        homes.add(where["home"])
        assert (Path(job["results"]) / str(i) / "stdout.txt").read_text() == f"ran {i}\n"
    assert homes == {str(a.home), str(b.home)}, "both slaves should have worked"
    for slave in (a, b):
        spool = slave.home / "spool"
        # The archive went once to each slave, and the spool was cleaned after every ack.
        assert [p.name for p in (spool / "archives").iterdir()] == [f"{job['archive']}.tar"]
        assert list((spool / "tasks").iterdir()) == [] and list((spool / "results").iterdir()) == []
    hosts = {h["name"]: h for h in json.loads(cli("hosts", "list", "--json", check=True).stdout)}
    assert hosts["a"]["python"] and hosts["a"]["slots"] == 2
