"""One job view for every face: the command line (``status``, ``status --json``),
the Python API (``Summary``) and the window (its jobs table and the tray's
words) read the same counts of a job in mid-flight, run by a real dispatcher
(``sparecycles master``) with the sandbox on."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import ui_desktop  # noqa: F401 - the window's models offscreen
import pytest

import sparecycles
import trayapp
from conftest import cli, make_job, start_master, stop_process, wait_until
from trayapp.config import Config, save_config
from trayapp.master.jobview import job_view
from trayapp.master.store import Store
from sparecycles_ui.jobsmodel import FAILED_COLUMN, PROGRESS_COLUMN, TASKS_COLUMN, JobsModel
from sparecycles_ui.snapshot import SnapshotReader
from sparecycles_ui.traylook import master_look

# Tasks 0 and 1 end at once; the others run until the test is done looking.
HALF_FAST = """
import os, time
if int(os.environ["SPARECYCLES_TASK"]) >= 2:
    time.sleep(600)
print("done")
"""


@pytest.mark.slow
def test_cli_api_and_window_show_the_same_counts_mid_flight(tmp_path, home, qtbot):
    save_config(home, Config(mode="master", slots=2, poll_interval_s=0.1))
    folder, params = make_job(tmp_path / "half-fast", HALF_FAST, params=[{"n": i} for i in range(6)])
    job_id = json.loads(cli("submit", str(folder), "--params", str(params), "--no-start", "--json",
                            check=True).stdout)["job"]
    master = start_master()
    store = Store(home.queue_db)
    try:
        # Two done, two running in the two slots, two queued behind them: it stays so for minutes.
        wait_until(lambda: (lambda v: (v.done, v.running, v.queued))(job_view(store, job_id)) == (2, 2, 2),
                   120, 0.2, "two tasks done, two running, two queued")

        listed = json.loads(cli("status", "--json", check=True).stdout)[0]
        one = json.loads(cli("status", job_id, "--json", check=True).stdout)
        table = cli("status", check=True).stdout
        summary = sparecycles.job(job_id).summary()
        snapshot = SnapshotReader(lambda: Store(home.queue_db)).read()
        model = JobsModel()
        model.apply(snapshot.jobs)
        row = snapshot.jobs[0]
    finally:
        cli("cancel", job_id)
        stop_process(master)

    cli_counts = {k: v for k, v in one["counts"].items() if v}
    assert listed["counts"] == one["counts"] and listed["in_flight"] == one["in_flight"] == 2
    assert cli_counts == {"done": 2, "queued": 2, "running": 2}, one["counts"]
    # The API and the window: the same numbers, in flight counted the same way.
    for done, failed, cancelled, in_flight, queued, total in (
            (summary.done, summary.failed, summary.cancelled, summary.running, summary.queued, summary.total),
            (row.done, row.failed, row.cancelled, row.in_flight, row.queued, row.total)):
        assert (done, failed, cancelled, in_flight, queued, total) == (
            one["counts"]["done"], one["counts"]["failed"], one["counts"]["cancelled"], one["in_flight"],
            one["counts"]["queued"], one["total"])
    assert summary.waiting == row.why == one["why"]
    # The words each face prints from those counts.
    assert summary.counts == "2/6 done, 2 running, 2 queued"
    assert str(summary).startswith(f"job {job_id} (half-fast): running, 2/6 done, 2 running, 2 queued")
    line = next(line.split() for line in table.splitlines() if line.startswith(job_id))
    assert line[:6] == [job_id, "half-fast", "running", "2", "0", "6"], table
    texts = [model.index(0, c).data() for c in (PROGRESS_COLUMN, FAILED_COLUMN, TASKS_COLUMN)]
    assert texts == ["33 % (2/6)", "0", "6"]
    tooltip = master_look(snapshot).tooltip
    assert tooltip.startswith("Working: 2 tasks running on ") and tooltip.endswith(", 2 queued"), tooltip
    # Time left at the pace so far: the same estimate, read a few seconds apart.
    estimates = [one["left_s"], listed["left_s"], summary.left_s, row.left_s(snapshot.taken)]
    assert all(e is not None and e > 0 for e in estimates), estimates
    assert max(estimates) - min(estimates) < 120, estimates


# ----- the dispatcher reads the queue through the store's methods ---------------------

ROOT = Path(trayapp.__file__).parent


def private_store_uses(path: Path) -> list[str]:
    """``store._db``, ``self.store._write()``...: a private member reached on something named store."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name in ("store", "_store"):
                found.append(f"{path.name}:{node.lineno}: {name}.{node.attr}")
    return found


def test_private_store_uses_are_found(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(self):\n    return self.store._db.execute('SELECT 1')\n")
    assert private_store_uses(bad) == ["bad.py:2: store._db"]


@pytest.mark.parametrize("module", ["master/dispatcher.py", "master/jobs.py", "master/jobview.py",
                                    "master/waits.py"])
def test_the_dispatcher_and_the_jobs_service_use_only_store_methods(module):
    assert private_store_uses(ROOT / module) == []
