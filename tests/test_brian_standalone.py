"""Brian's compile-once path (resources/standalone) through the real pool, sandbox on,
the master's own cores on: each slot builds the C++ binary for its first task, and
every later task on that slot runs it with its own parameters, compiling nothing."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import cli, start_master, stop_process

from trayapp.install.bundled import resource_path

pytestmark = [pytest.mark.pool, pytest.mark.brian, pytest.mark.slow]

# Two settings, each run more than once: whichever slot runs it, and whether it
# compiled or reused the binary, the same parameters give the same spikes.
PARAMS = [{"input_rate_hz": 40, "g_inh": 5}, {"input_rate_hz": 75, "g_inh": 5}] * 2 + [{"input_rate_hz": 40, "g_inh": 5}]


def test_each_slot_compiles_once_and_later_tasks_only_run_the_binary(pool, home, tmp_path):
    home.config_file.write_text("slots = 1\n", encoding="utf-8")  # one own slot beside the slave's
    slave = pool.add_slave("a", slots=1)
    params = tmp_path / "sweep.json"
    params.write_text(json.dumps([dict(p, duration_ms=300) for p in PARAMS]))
    job = json.loads(cli("submit", str(resource_path("standalone")), "--params", str(params), "--no-start",
                         "--json", check=True).stdout)
    master = start_master("--until-idle", "1")
    try:
        assert master.wait(900) == 0
    finally:
        out = stop_process(master)
    status = json.loads(cli("status", job["job"], "--json").stdout)
    assert status["status"] == "done", out + slave.log()

    results = Path(job["results"])
    summaries = [json.loads((results / str(i) / "summary.json").read_text()) for i in range(len(PARAMS))]
    by_folder = defaultdict(list)
    for i, summary in enumerate(summaries):
        by_folder[summary["build_folder"]].append(summary)
        word = "compiled" if summary["compiled"] else "reused"
        assert f"{word} {summary['build_folder']}" in (results / str(i) / "stdout.txt").read_text()
    # Every binary lives in a slot's compiler cache: this PC's spool or the slave's.
    spools = (str(home.local_spool_dir / "slot-cache") + "/", str(slave.home / "spool" / "slot-cache") + "/")
    assert all(folder.startswith(spools) and "/brian-standalone/" in folder for folder in by_folder), by_folder
    assert max(len(tasks) for tasks in by_folder.values()) >= 2, "some slot should have run several tasks"
    for folder, tasks in by_folder.items():
        assert [t["compiled"] for t in tasks].count(True) == 1, (folder, tasks)
        # The binary is still the one its first task built: nobody compiled it again.
        built = next(t["binary_mtime_ns"] for t in tasks if t["compiled"])
        assert os.stat(Path(folder) / "main").st_mtime_ns == built
        assert all(t["binary_mtime_ns"] == built for t in tasks)
        assert all(t["build_s"] < next(c["build_s"] for c in tasks if c["compiled"]) for t in tasks if not t["compiled"])
    # The run arguments took effect, and did so the same way in every binary.
    spikes = defaultdict(set)
    for summary in summaries:
        spikes[(summary["input_rate_hz"], summary["g_inh"])].add(summary["n_spikes"])
    assert all(len(counts) == 1 for counts in spikes.values()), spikes
    low, high = (summaries[0]["rate_hz"], summaries[1]["rate_hz"])
    assert 0 < low < high
