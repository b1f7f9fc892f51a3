"""Tasks start at low CPU and I/O priority; the thread that starts them does not
lose its own (the slave engine must stay quick to stop tasks)."""

from __future__ import annotations

import json
import os
import sys
import threading

import psutil
from conftest import wait_until

from trayapp.run.posix import Launcher, LaunchSettings, TaskSpec, prepare

REPORT = """
import json, os, psutil
json.dump({"nice": os.nice(0), "ionice": int(psutil.Process().ionice().ioclass)}, open("../me.json", "w"))
"""


def run_one(tmp_path, launcher: Launcher, token: str) -> dict:
    template = tmp_path / "job"
    template.mkdir(exist_ok=True)
    (template / "main.py").write_text(REPORT)
    spec = TaskSpec(token, "j1", 0, {}, "main.py")
    run_dir = tmp_path / token
    prepare(spec, run_dir, template)
    proc = launcher.start(spec, run_dir)
    wait_until(proc.has_ended, what="the task to end")
    assert proc.exit_code() == 0, (run_dir / "stderr.txt").read_text()
    return json.loads((run_dir / "me.json").read_text())


def test_tasks_run_niced_and_in_the_idle_io_class_while_the_caller_keeps_its_priority(tmp_path):
    mine = os.nice(0)
    tid = threading.get_native_id()
    launcher = Launcher(LaunchSettings(python=sys.executable, nice=10))
    try:
        seen = [run_one(tmp_path, launcher, f"t{i}") for i in range(2)]  # the spawner thread is reused
    finally:
        launcher.close()
    assert [one["ionice"] for one in seen] == [int(psutil.IOPRIO_CLASS_IDLE)] * 2
    assert all(one["nice"] >= 10 for one in seen), seen
    assert os.getpriority(os.PRIO_PROCESS, tid) == mine
    assert psutil.Process(tid).ionice().ioclass != psutil.IOPRIO_CLASS_IDLE


def test_nice_zero_starts_tasks_at_the_callers_priority(tmp_path):
    launcher = Launcher(LaunchSettings(python=sys.executable, nice=0))
    assert run_one(tmp_path, launcher, "t0")["nice"] == os.nice(0)
