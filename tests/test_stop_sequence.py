"""The engine's stop sequence, message by message: once stopping has begun no
task starts, a launch under way is killed once its process exists, and the
master's own cores stop their tasks whether or not the master said goodbye.

The engine runs on a thread (as the master's own cores do) and the test
speaks the protocol to it over a socket pair; tasks are real process trees.
``tests/test_stopping.py`` does the same to whole masters and slave daemons,
100 times each, in the sandbox.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import make_job, pid_alive, wait_until
from support.peer import ProtocolPeer

from trayapp.master.kinds.local import LocalSlave
from trayapp.run.posix import HOLD_LAUNCH_VARIABLE, PosixRunner
from trayapp.run.proctree import processes_with_marker
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import Spool
from trayapp.wire.archive import pack

# The task and a child, each noting its pid in the folder it is given.
TREE_TASK = """
import json, os, sys, time
p = json.loads(sys.argv[1])
child = os.fork()
open(os.path.join(p["pids"], str(os.getpid())), "w").close()
time.sleep(300)
"""


@pytest.fixture
def archive(tmp_path):
    folder, _ = make_job(tmp_path / "tree-job", TREE_TASK)
    return pack(folder, ["main.py"], tmp_path / "packed")


@pytest.fixture
def local(tmp_path):
    engine = SlaveEngine(Spool(tmp_path / "spool"), SlaveSettings(slots=2, python=sys.executable, nice=0),
                         slave_id="e" * 16, runner=PosixRunner())
    slave = LocalSlave(engine).start()
    yield slave
    slave.stop()


def start_tree(peer: ProtocolPeer, archive, pids: Path) -> str:
    pids.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    peer.send("start", token=token, job="j1", idx=0, params={"pids": str(pids)}, main="main.py",
              archive_sha=archive.sha256)
    return token


def pids_in(folder: Path) -> list[int]:
    return [int(p.name) for p in folder.iterdir()]


def test_the_masters_own_cores_stop_their_tasks_even_when_the_master_left_without_goodbye(local, archive,
                                                                                        tmp_path):
    peer = ProtocolPeer(local.engine)
    peer.hello()
    peer.upload(Path(archive.path), archive.sha256)
    start_tree(peer, archive, tmp_path / "pids")
    peer.expect("started")
    pids = wait_until(lambda: len(pids_in(tmp_path / "pids")) == 2 and pids_in(tmp_path / "pids"),
                      what="the task and its child")
    peer.sock.close()  # a driver that died: no bye, so no one asked for the tasks to stop
    wait_until(lambda: not local.engine.sessions, what="the engine to drop the session")
    assert all(pid_alive(p) for p in pids), "a master's connection alone does not own its tasks"

    local.stop()
    assert not any(pid_alive(p) for p in pids), "a stopped master must not leave its tasks running"


def test_a_launch_held_between_fork_and_exec_when_the_stop_comes_is_killed_once_it_exists(local, archive,
                                                                                        tmp_path, monkeypatch):
    monkeypatch.setenv(HOLD_LAUNCH_VARIABLE, "1.0")
    peer = ProtocolPeer(local.engine)
    peer.hello()
    peer.upload(Path(archive.path), archive.sha256)
    token = start_tree(peer, archive, tmp_path / "pids")
    spool = local.engine.spool
    wait_until(lambda: (spool.task_dir(token) / "task.json").exists(), interval=0.005, what="the launch to begin")
    stopping = threading.Thread(target=local.stop)
    stopping.start()
    # Once stopping has begun, no new task starts: a start now is declined.
    wait_until(lambda: local.engine.stopping, interval=0.005, what="the stop to begin")
    stopping.join(30)
    assert not stopping.is_alive()
    assert not processes_with_marker(token), "the held launch ran on after its engine stopped"
    # The task wrote nothing: it was killed right after exec, or before its main started.
    time.sleep(0.5)
    assert not processes_with_marker(token)
    assert not any(pid_alive(p) for p in pids_in(tmp_path / "pids"))


def test_no_task_starts_once_stopping_has_begun(tmp_path, archive):
    engine = SlaveEngine(Spool(tmp_path / "spool"), SlaveSettings(slots=2, python=sys.executable, nice=0),
                         slave_id="e" * 16, runner=PosixRunner())
    peer = ProtocolPeer(engine)
    engine.request_stop()
    assert not engine.accepts_work()
    # The session and its messages are handled as a loop step would, with the stop under way.
    peer.send("hello", master=ProtocolPeer.MASTER_ID, name="test master")
    token = start_tree(peer, archive, tmp_path / "pids")
    for _ in range(3):
        engine._step(None, 0.05)
    declined = peer.expect("declined", token=token)
    assert declined["reason"] == "this slave is stopping" and declined["retry"] is True
    assert not engine.running and not processes_with_marker(token)
    engine.close()
