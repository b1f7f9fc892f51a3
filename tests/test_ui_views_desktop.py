"""The job manager window on a real desktop (Xvfb + openbox + trayer), driven
with real clicks and keys (xdotool): a running job, a failed job, a
10,000-task job, an unreachable host and a SLURM host added through the
dialog. A real dispatcher (``sparecycles master``) runs the jobs with the
sandbox on; each view is saved as a screenshot (conftest's ``screenshots``;
scripts/screenshots.sh keeps them in docs/screenshots/)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_job
from support.desktop import WINDOW_MANAGER, Desktop, missing_tools
from trayapp.config import Config, save_config
from trayapp.master.store import Store
from trayapp.status import TaskStatus

MISSING = missing_tools() + ([] if shutil.which(WINDOW_MANAGER) else [WINDOW_MANAGER])
pytestmark = [pytest.mark.desktop, pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (scripts/system-packages.sh)")]

PROBE = Path(__file__).parent / "support" / "viewsprobe.py"

# Prints what it does as it goes (the task view's live log shows it); the first
# three tasks end at once, the others run on while the window is looked at.
SWEEP_TASK = """
import json, os, sys, time
p = json.loads(sys.argv[1])
fast = int(os.environ["SPARECYCLES_TASK"]) < 3
for step in range(2400):
    print(f"t = {step * 50} ms: LIF network at {p['rate_hz']} Hz, g_inh = {p['g_inh']}", flush=True)
    if fast and step >= 5:
        break
    time.sleep(0.25)
os.makedirs("results", exist_ok=True)
with open("results/rate.json", "w") as fh:
    json.dump({"rate_hz": p["rate_hz"] * 0.9}, fh)
"""

BROKEN_TASK = """
import json, sys
p = json.loads(sys.argv[1])
print("rate", p["rate_hz"])
if p["rate_hz"] >= 30:
    raise SystemExit("rate too high for this model: the network explodes above 30 Hz")
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tasks(store: Store, job: str) -> str:
    """The job's tasks, for a message when waiting on them timed out."""
    return "; ".join(f"{t.idx} {t.status.value} {t.message or ''}"[:200] for t in store.tasks(store.job(job).seq))


def _cli(env, *args, timeout=120) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "sparecycles", *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_every_view_driven_with_real_clicks(tmp_path, home, screenshots):
    desktop = Desktop(tmp_path / "desktop").start(window_manager=True)
    env = desktop.env(SPARECYCLES_HOME=str(home.data_dir))
    save_config(home, Config(mode="master", slots=2, poll_interval_s=0.1))
    master = subprocess.Popen([sys.executable, "-m", "sparecycles", "master"], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "master.log", "ab"))
    store = Store(home.queue_db)
    try:
        broken, _ = make_job(tmp_path / "lif-broken", BROKEN_TASK,
                             extra_files={"grid.toml": "rate_hz = [10, 20, 30, 40]\ng_inh = [5, 7]\n"})
        failed = json.loads(_cli(env, "submit", str(broken), "--params", str(broken / "grid.toml"), "--json").stdout)["job"]
        desktop.wait_for(lambda: store.job(failed).finished is not None, "the broken job to end", 240)
        sweep, _ = make_job(tmp_path / "lif-sweep", SWEEP_TASK,
                            extra_files={"grid.toml": "rate_hz = [10, 20, 40, 80]\ng_inh = [5, 7]\n"})
        running = json.loads(_cli(env, "submit", str(sweep), "--params", str(sweep / "grid.toml"), "--json").stdout)["job"]
        try:
            desktop.wait_for(lambda: store.job(running).count(TaskStatus.DONE) >= 3
                             and store.job(running).count(TaskStatus.RUNNING) >= 1, "three tasks done, one running",
                             240)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {_tasks(store, running)}") from None
        big, _ = make_job(tmp_path / "big-sweep", "print('one of many')\n",
                          extra_files={"grid.toml": f"rate_hz = {list(range(100))}\nseed = {list(range(100))}\n"})
        _cli(env, "submit", str(big), "--params", str(big / "grid.toml"), "--json")
        _cli(env, "hosts", "add", "lab-07", "--host", "127.0.0.1", "--port", str(_closed_port()))
        desktop.wait_for(lambda: store.host("lab-07").state == "unreachable", "lab-07 found unreachable", 120)
        to_submit, _ = make_job(tmp_path / "to-submit" / "brunel", "print('hi')\n",
                                extra_files={"sweep.csv": "rate_hz,g_inh\n10,5\n20,5\n30,7\n"})

        report_file = tmp_path / "report.json"
        probe = subprocess.run([sys.executable, str(PROBE), str(screenshots), str(report_file), str(to_submit)],
                               env={**env, "PYTHONPATH": os.pathsep.join(sys.path)}, capture_output=True,
                               text=True, timeout=600)
        assert report_file.exists(), probe.stdout + probe.stderr
        report = json.loads(report_file.read_text())
        assert report.get("ok"), report.get("error", "") + probe.stderr[-3000:]
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(60)
        except subprocess.TimeoutExpired:
            master.kill()
        desktop.stop()

    # Newest first; a bar's text is the share and the counts.
    assert report["job_order"] == ["big-sweep", "lif-sweep", "lif-broken"]
    assert report["progress_texts"]["lif-broken"] == "100 % (8/8)"
    assert report["progress_texts"]["big-sweep"] == "0 % (0/10000)"
    assert report["live_log"][1] > report["live_log"][0]
    assert report["failed_group"].startswith("4 task(s): exit code 1: rate too high")
    assert "open_10000_s" in report
    assert "fix" in report["host_test"][1] or "refused" in report["host_test"][1].lower()
    assert report["hosts"]["lab-07"] == "unreachable" and "cluster" in report["hosts"]
    assert {"In flight", "Pending"} <= set(report["host_columns"])
    assert report["submit_params"] == "sweep.csv" and report["submit_count"].startswith("3 tasks")
    assert report["grace_enabled"] is False  # preempt = kill: nothing is ever suspended
    for name in ("jobs-table.png", "task-view-running.png", "task-view-failed.png", "task-view-10000.png",
                 "hosts-tab.png", "host-test.png", "add-host-slurm.png", "pool-over-time.png", "settings.png",
                 "submit-dialog.png"):
        assert (screenshots / name).stat().st_size > 5000, name
    print("10,000-task view opened (double-click to filled table) in", report["open_10000_s"], "s")
