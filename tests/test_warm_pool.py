"""Warm starts on a real slave daemon over SSH, and on the master's own cores,
as users get them: ``sparecycles submit`` and ``sparecycles master``, the
sandbox on. A job whose script imports numpy runs its later tasks forked from
a warm interpreter (they find numpy imported before their first line), with
fresh random numbers each, and the lender's ``warm_starts = false`` keeps a
slave's tasks cold."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import cli, make_job, run_master_to_the_end, start_master, stop_process

pytestmark = pytest.mark.pool

# Sleeps a little, so the warm parent imports while a slot's first task runs.
NUMPY_TASK = """
import sys
PRELOADED = "numpy" in sys.modules
import json, os, time
import numpy
p = json.loads(sys.argv[1])
time.sleep(0.3)
os.makedirs("results", exist_ok=True)
json.dump({"preloaded": PRELOADED, "draw": float(numpy.random.random()), "task": os.environ["SPARECYCLES_TASK"]},
          open("results/report.json", "w"))
"""
TASKS = 12


def submit(folder, params) -> dict:
    return json.loads(cli("submit", str(folder), "--params", str(params), "--no-start", "--json", check=True).stdout)


def reports(job: dict) -> list[dict]:
    return [json.loads((Path(job["results"]) / str(i) / "report.json").read_text()) for i in range(TASKS)]


def numpy_job(tmp_path: Path) -> dict:
    folder, params = make_job(tmp_path / "numpy-job", NUMPY_TASK, params=[{"i": i} for i in range(TASKS)])
    return submit(folder, params)


def test_a_slave_forks_a_jobs_later_tasks_warm_over_ssh(pool, tmp_path):
    pool.add_slave("a", slots=1)
    job = numpy_job(tmp_path)
    status, out = run_master_to_the_end(job["job"], timeout=240)
    assert status["status"] == "done", out
    found = reports(job)
    assert [r["task"] for r in found] == [str(i) for i in range(TASKS)]
    assert not found[0]["preloaded"] and sum(r["preloaded"] for r in found) >= TASKS // 2, found
    assert len({r["draw"] for r in found}) == TASKS  # numpy's state is every task's own


def test_a_lender_turns_warm_starts_off(pool, tmp_path):
    pool.add_slave("a", slots=1, config="warm_starts = false\n")
    job = numpy_job(tmp_path)
    status, out = run_master_to_the_end(job["job"], timeout=240)
    assert status["status"] == "done", out
    assert not any(r["preloaded"] for r in reports(job))


def test_the_masters_own_cores_fork_warm_too(home, tmp_path):
    home.config_file.write_text("slots = 1\n")
    job = numpy_job(tmp_path)
    master = start_master("--until-idle", "1")
    try:
        assert master.wait(240) == 0
    finally:
        out = stop_process(master)
    status = json.loads(cli("status", job["job"], "--json").stdout)
    assert status["status"] == "done", out
    found = reports(job)
    assert not found[0]["preloaded"] and sum(r["preloaded"] for r in found) >= TASKS // 2, found
