"""Preemption in the slave engine: when the user comes back, every process of
every task dies (or is suspended, then killed after a grace time), and the
master hears "preempted".

The engine runs on a thread (as the master's local slave does) and a test
speaks the protocol to it over a socket pair. The task is a real process
tree: a child, a grandchild, one process that calls ``setsid`` to leave the
task's process group, and an orphan that did the same and whose parent
exited (init adopted it). Each writes its pid to a file, so the test knows
every one of them; a process is dead when it is gone or a zombie.
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path

import pytest
from conftest import make_job, pid_alive, wait_until
from support.peer import ProtocolPeer

from trayapp.wire.archive import pack
from trayapp.slave.availability import SlaveState
from trayapp.run.cgroup import TaskCgroups
from trayapp.master.kinds.local import LocalSlave
from trayapp.run.posix import PosixRunner
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import Spool
from trayapp.run.sandbox import UNSANDBOXED_WARNING
from trayapp.status import AttemptOutcome

ROLES = {"main", "child", "grandchild", "setsid", "orphan"}

TREE_TASK = """
import json, os, sys, time
p = json.loads(sys.argv[1])

def note(role):
    open(os.path.join(p["pids"], f"{role}-{os.getpid()}"), "w").close()

def beat_forever(role):
    # A heartbeat file per process: it grows while the process runs.
    with open(os.path.join(p["pids"], f"beat-{role}"), "a") as fh:
        while True:
            fh.write("."); fh.flush(); time.sleep(0.02)

note("main")
if os.fork() == 0:
    note("child")
    if os.fork() == 0:
        note("grandchild"); beat_forever("grandchild")
    beat_forever("child")
if os.fork() == 0:
    os.setsid()  # leaves the task's process group and session
    note("setsid"); beat_forever("setsid")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(0.1)  # until its parent has exited: init adopts it
        note("orphan"); beat_forever("orphan")
    os._exit(0)
beat_forever("main")
"""


class Master(ProtocolPeer):
    """One master's session into the engine, over a socket pair."""

    def __init__(self, engine: SlaveEngine):
        super().__init__(engine, timeout=20)
        self.hello()

    def start_tree_task(self, archive, pids: Path, idx: int) -> str:
        pids.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        self.send("start", token=token, job="j1", idx=idx, params={"pids": str(pids)}, main="main.py",
                  archive_sha=archive.sha256)
        assert self.expect("started", "declined")["type"] == "started"
        return token


@pytest.fixture(params=["cgroup", "process-group"])
def engine(request, tmp_path):
    cgroups = None
    if request.param == "cgroup":
        cgroups = TaskCgroups.create()
        if cgroups is None:
            pytest.skip("this system does not let the slave create cgroups (the fallback is tested)")
    runner = PosixRunner(cgroups=cgroups)
    eng = SlaveEngine(Spool(tmp_path / "spool"), SlaveSettings(slots=2, python=sys.executable, nice=0),
                      slave_id="e" * 16, runner=runner)
    local = LocalSlave(eng).start()
    yield eng
    local.stop()
    # A failed test may leave its tasks running (or suspended): end them here,
    # then let the runner remove the cgroups their end emptied.
    runner.kill_at_once(eng.running.handles())
    eng.stop_all_tasks(AttemptOutcome.HOST_LOST, "the test is over")
    eng.close()


@pytest.fixture
def archive(tmp_path):
    folder, _ = make_job(tmp_path / "tree-job", TREE_TASK)
    packed = pack(folder, ["main.py"], tmp_path / "packed")
    return packed


def upload(master: Master, archive) -> None:
    assert master.upload(Path(archive.path), archive.sha256)["type"] in ("archive_ok", "archive")


def tree_pids(folder: Path) -> dict[str, int]:
    found = {}
    for path in folder.iterdir():
        role, _, pid = path.name.partition("-")
        if role in ROLES:
            found[role] = int(pid)
    return found


def wait_for_trees(folders: list[Path]) -> list[dict[str, int]]:
    return wait_until(lambda: all(tree_pids(f).keys() == ROLES for f in folders) and
                      [tree_pids(f) for f in folders], timeout=30, what="every process of every task tree")


def beats(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.glob("beat-*")}


def test_user_returns_every_process_of_every_task_dies_and_the_master_hears_preempted(engine, archive, tmp_path):
    master = Master(engine)
    upload(master, archive)
    folders = [tmp_path / "pids-0", tmp_path / "pids-1"]
    tokens = [master.start_tree_task(archive, folder, i) for i, folder in enumerate(folders)]
    trees = wait_for_trees(folders)
    pids = [pid for tree in trees for pid in tree.values()]
    assert len(pids) == 10 and all(pid_alive(p) for p in pids)

    returned = time.monotonic()
    engine.availability.report_idle(False, "the PC's user is active")
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=5, interval=0.001,
               what="every task process to die")
    took = time.monotonic() - returned
    finished = {m["token"]: m for m in (master.expect("finished") for _ in tokens)}
    assert finished.keys() == set(tokens)
    assert {m["outcome"] for m in finished.values()} == {"preempted"}
    assert engine.state is SlaveState.WAITING and engine.describe()["reason"] == "the PC's user is active"
    # Generous for a shared CI machine; bench/preemption_latency.py measures it properly.
    assert took < 1.0, f"preemption took {took:.3f} s"


def test_no_new_work_until_the_pc_is_idle_again(engine, archive, tmp_path):
    master = Master(engine)
    upload(master, archive)
    engine.availability.report_idle(False, "waiting for 1 min without keyboard or mouse input")
    wait_until(lambda: engine.state is SlaveState.WAITING, what="the engine to wait")
    master.send("start", token=secrets.token_hex(8), job="j1", idx=0, params={"pids": str(tmp_path)},
                main="main.py", archive_sha=archive.sha256)
    declined = master.expect("declined", "started")
    assert declined["type"] == "declined" and declined["retry"] is True
    state = master.expect("state")
    while state["state"] != "waiting":
        state = master.expect("state")
    assert state["reason"] == "waiting for 1 min without keyboard or mouse input"
    engine.availability.report_idle(True)
    wait_until(lambda: engine.state is SlaveState.READY, what="the engine to be ready again")
    folder = tmp_path / "pids-again"
    master.start_tree_task(archive, folder, 1)
    wait_for_trees([folder])
    engine.availability.report_idle(False, "back")
    master.expect("finished")


def test_donating_keeps_tasks_running_while_the_user_is_there(engine, archive, tmp_path):
    master = Master(engine)
    upload(master, archive)
    engine.availability.donate()
    folder = tmp_path / "pids"
    master.start_tree_task(archive, folder, 0)
    (tree,) = wait_for_trees([folder])
    engine.availability.report_idle(False, "the PC's user is active")
    wait_until(lambda: engine.state is SlaveState.DONATING, what="the donating state")
    assert master.expect("state", state="donating")["reason"] == "lent by its user until resumed"
    time.sleep(0.2)
    assert all(pid_alive(p) for p in tree.values())
    engine.availability.resume()  # the donation ends while the user is at the PC: now they stop
    wait_until(lambda: not any(pid_alive(p) for p in tree.values()), timeout=5, what="the tree to die")
    assert master.expect("finished")["outcome"] == "preempted"


@pytest.mark.slow
def test_suspend_then_thaw_when_idle_again_then_kill_after_the_grace_time(engine, archive, tmp_path):
    engine.availability.preempt_mode = "suspend"
    engine.availability.suspend_grace_s = 3600.0
    master = Master(engine)
    upload(master, archive)
    folder = tmp_path / "pids"
    master.start_tree_task(archive, folder, 0)
    (tree,) = wait_for_trees([folder])
    wait_until(lambda: len(beats(folder)) == 5, what="every process to beat")

    engine.availability.report_idle(False, "the PC's user is active")
    wait_until(lambda: engine.availability.suspended_since is not None, what="the tasks to be suspended")
    time.sleep(0.1)  # a beat already under way finishes
    before = beats(folder)
    time.sleep(0.5)
    assert beats(folder) == before, "no process of the tree may run while suspended"
    assert all(pid_alive(p) for p in tree.values())
    assert engine.state is SlaveState.WAITING and "1 task(s) suspended" in engine.describe()["reason"]

    engine.availability.report_idle(True)  # the user left again before the grace time ran out
    wait_until(lambda: all(beats(folder)[name] > size for name, size in before.items()), timeout=5,
               what="every process to run again")
    assert engine.state is SlaveState.WORKING

    engine.availability.suspend_grace_s = 0.3
    engine.availability.report_idle(False, "the PC's user is active")
    wait_until(lambda: not any(pid_alive(p) for p in tree.values()), timeout=10, what="the tree to die")
    finished = master.expect("finished")
    assert finished["outcome"] == "preempted" and "stayed longer than 0.3 s" in finished["message"]


def test_a_slave_without_an_idle_watcher_works_all_the_time(tmp_path):
    eng = SlaveEngine(Spool(tmp_path / "spool"), SlaveSettings(slots=1, python=sys.executable), slave_id="e" * 16,
                      runner=PosixRunner())
    assert eng.availability.available and eng.accepts_work() and eng.state is SlaveState.READY
    eng.tick()
    # Nothing holds it back; its reason only says that it lends without a sandbox.
    assert eng.state is SlaveState.READY and eng.describe()["reason"] == UNSANDBOXED_WARNING
