"""The whole story on a real desktop: a slave on an Xvfb display lends its PC
after a short idle time, a real key press (xdotool) preempts its tasks, and
the master runs them again on another slave; no result is lost and no retry
is used up. Everything is real: Xvfb, xdotool, sshd, slave daemons, master."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from conftest import cli, make_job, run_master_to_the_end, start_master, stop_process, wait_until
from conftest import needs_xvfb
from support.tasks import all_ended, running_scripts
from support.xvfb import Xvfb

pytestmark = [pytest.mark.pool, pytest.mark.desktop, needs_xvfb]

# A task with a child it forked; its result says where it ran. The test sees
# the processes from outside (their environment carries the job and the slave's home).
TREE_TASK = """
import json, os, sys, time
p = json.loads(sys.argv[1])
child = os.fork()
if child == 0:
    time.sleep(3600)
    os._exit(0)
time.sleep(p["sleep"])
os.makedirs("results", exist_ok=True)
json.dump({**p, "home": os.environ.get("SPARECYCLES_HOME")}, open("results/done.json", "w"))
os.kill(child, 9)
"""


class KeepTyping:
    """The desk's user stays at the PC: a key press every half second."""

    def __init__(self, xvfb: Xvfb):
        self._xvfb, self._stop = xvfb, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._xvfb.key("shift")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def test_a_key_press_preempts_the_desks_tasks_and_the_master_reruns_them_elsewhere(pool, home, tmp_path, xvfb):
    # max_foreign_cpu = 1.0: the rest of the suite loads this shared CI machine,
    # which must not count as the desk's user working.
    desk = pool.add_slave("desk", slots=2, config="idle_after_s = 1.5\nmax_foreign_cpu = 1.0\n", start=False)
    desk.env["DISPLAY"] = xvfb.display  # only the desk's daemon sees the display
    desk.start()
    spare = pool.add_slave("spare", slots=1)  # no display, nobody logged in: idle from the start
    wait_until(lambda: "state: ready" in desk.log(), timeout=30, what="the desk to lend its PC")

    params = [{"i": i, "sleep": 4.0} for i in range(3)]
    folder, params_file = make_job(tmp_path / "job", TREE_TASK, params=params)
    job = json.loads(cli("submit", str(folder), "--params", str(params_file), "--no-start", "--json",
                         check=True).stdout)
    master = start_master("--no-local", "--until-idle", "1")
    try:
        on_desk = wait_until(lambda: len(tasks := running_scripts(job["job"], home=desk.home, at_least=2)) == 2
                             and tasks, timeout=60, what="two tasks and their children to start on the desk")
        desk_processes = [p for procs in on_desk.values() for p in procs]
        with KeepTyping(xvfb):
            pressed = xvfb.key("space")
            wait_until(lambda: all_ended(desk_processes), timeout=5, interval=0.005,
                       what="every process of the desk's tasks to die")
            assert time.monotonic() - pressed < 2.0
            wait_until(lambda: {h["name"]: h for h in json.loads(cli("hosts", "list", "--json").stdout)}
                       ["desk"]["state"] == "waiting", timeout=20, what="the master to see the desk waiting")
            desk_row = {h["name"]: h for h in json.loads(cli("hosts", "list", "--json").stdout)}["desk"]
            assert desk_row["reason"] == "waiting for 1.5 s without keyboard or mouse input"
            assert "desk" in (listing := cli("hosts", "list").stdout) and "desk waiting: waiting for 1.5 s" in listing
            assert master.wait(180) == 0
    finally:
        out = stop_process(master)

    status = json.loads(cli("status", job["job"], "--json").stdout)
    assert status["status"] == "done", out + desk.log() + spare.log()
    assert all(t["failures"] == 0 for t in status["tasks"]), "a preemption must not use up a retry"
    done = [json.loads((Path(job["results"]) / str(i) / "done.json").read_text()) for i in range(3)]
    assert [d["i"] for d in done] == [0, 1, 2]
    ran_on = {t["index"]: t["host"] for t in status["tasks"]}
    assert all(ran_on[i] == "spare" for i in on_desk), \
        "the preempted tasks ran again on the spare slave while the desk's user typed"
    with sqlite3.connect(home.queue_db) as db:
        attempts = db.execute("SELECT host, outcome FROM attempts").fetchall()
    assert [o for h, o in attempts if h == "desk"].count("preempted") == 2, attempts
    assert [o for h, o in attempts].count("succeeded") == 3, f"each task completes exactly once: {attempts}"
    assert "the PC's user is back: stopped 2 task(s)" in desk.log()


SPIN_TASK = """
import json, os, sys, time
p = json.loads(sys.argv[1])
end = time.monotonic() + p["spin_s"]
while time.monotonic() < end:  # a whole core, like a simulation
    pass
os.makedirs("results", exist_ok=True)
json.dump(p, open("results/done.json", "w"))
"""

HOG = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end:\n    pass\n"


def test_the_desks_own_tasks_are_not_load_but_another_programs_are(pool, home, tmp_path, xvfb):
    # The default threshold: lend while other programs use under half the CPU.
    desk = pool.add_slave("desk", slots=2, config="idle_after_s = 1\nmax_foreign_cpu = 0.5\n", start=False)
    desk.env["DISPLAY"] = xvfb.display
    desk.start()
    wait_until(lambda: "state: ready" in desk.log(), timeout=30, what="the desk to lend its PC")

    # Two tasks keep both cores busy for 15 s, longer than the load average's
    # 10 s time constant: counted as load, they would stop themselves.
    params = [{"i": i, "spin_s": 15.0} for i in range(2)]
    folder, params_file = make_job(tmp_path / "spin", SPIN_TASK, params=params)
    job = json.loads(cli("submit", str(folder), "--params", str(params_file), "--no-start", "--json",
                         check=True).stdout)
    status, out = run_master_to_the_end(job["job"], timeout=120)
    assert status["status"] == "done", out + desk.log()
    with sqlite3.connect(home.queue_db) as db:
        outcomes = [o for (o,) in db.execute("SELECT outcome FROM attempts")]
    assert outcomes == ["succeeded", "succeeded"], (outcomes, desk.log())
    assert "other programs use" not in desk.log()

    # The same load from programs that are not its tasks: the desk stops lending.
    import subprocess
    import sys

    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(2)]
    try:
        wait_until(lambda: "other programs use" in desk.log(), timeout=40, what="the desk to see the load")
        assert "(lending below 50%)" in desk.log()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(10)
    # With hysteresis: lending again once the load has fallen well below the threshold.
    after = len(desk.log())
    wait_until(lambda: "state: ready" in desk.log()[after:], timeout=60, what="the desk to lend again")
