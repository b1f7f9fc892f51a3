"""Tasks start at low CPU and I/O priority; the thread that starts them does not
lose its own (the slave engine must stay quick to stop tasks)."""

from __future__ import annotations

import json
import os
import sys
import threading

import psutil
from conftest import wait_until

from trayapp.run.attempt import prepare, task_launch
from trayapp.run.posix import PosixRunner

REPORT = """
import json, os, psutil
json.dump({"nice": os.nice(0), "ionice": int(psutil.Process().ionice().ioclass)}, open("../me.json", "w"))
"""


def run_one(tmp_path, runner: PosixRunner, token: str, nice: int) -> dict:
    template = tmp_path / "job"
    template.mkdir(exist_ok=True)
    (template / "main.py").write_text(REPORT)
    run_dir = tmp_path / token
    prepare(run_dir, template, {})
    proc = runner.start(task_launch(token, run_dir, python=sys.executable, main="main.py", params={}, job_id="j1",
                                    idx=0, nice=nice))
    wait_until(proc.has_ended, what="the task to end")
    assert proc.exit_code() == 0, (run_dir / "stderr.txt").read_text()
    return json.loads((run_dir / "me.json").read_text())


def test_tasks_run_niced_and_in_the_idle_io_class_while_the_caller_keeps_its_priority(tmp_path):
    mine = os.nice(0)
    tid = threading.get_native_id()
    runner = PosixRunner()
    try:
        seen = [run_one(tmp_path, runner, f"t{i}", 10) for i in range(2)]  # the spawner thread is reused
    finally:
        runner.close()
    assert [one["ionice"] for one in seen] == [int(psutil.IOPRIO_CLASS_IDLE)] * 2
    assert all(one["nice"] >= 10 for one in seen), seen
    assert os.getpriority(os.PRIO_PROCESS, tid) == mine
    assert psutil.Process(tid).ionice().ioclass != psutil.IOPRIO_CLASS_IDLE


def test_nice_zero_starts_tasks_at_the_callers_priority(tmp_path):
    assert run_one(tmp_path, PosixRunner(), "t0", 0)["nice"] == os.nice(0)


def test_a_wrapper_started_to_be_lowered_runs_nothing_until_it_is(tmp_path):
    # The slave starts the wrapper itself and lowers it from outside; a wrapper
    # whose slave never says so (it died in between) must not run the task at
    # the slave's own priority. Its stdin closed unsaid, it leaves without an exit code.
    template = tmp_path / "job"
    template.mkdir()
    (template / "main.py").write_text(REPORT)
    run_dir = tmp_path / "unsaid"
    prepare(run_dir, template, {})
    launch = task_launch("unsaid", run_dir, python=sys.executable, main="main.py", params={}, job_id="j1", idx=0,
                         nice=10)
    import trayapp.run.posix as posix

    def never_lowered(pid, nice):
        raise ProcessLookupError(pid)  # as if it could not be reached

    original = posix.lower_process
    posix.lower_process = never_lowered
    try:
        proc = posix.start_process(launch, lower_to=10)
    finally:
        posix.lower_process = original
    wait_until(proc.has_ended, what="the wrapper to give up")
    assert proc.popen.returncode == 125
    assert proc.exit_code() is None and not (run_dir / "me.json").exists()

    # Lowered, the same start runs the task at that niceness.
    seen = run_one(tmp_path, PosixRunner(), "said", 10)
    assert seen["nice"] >= 10 and seen["ionice"] == int(psutil.IOPRIO_CLASS_IDLE)
