"""What a warm parent says is checked like any message from outside
(trayapp/run/warmparent.py): the parent imported a master's modules, which may
replace its sending code, and a reply the slave cannot read must end that
parent, never the slave daemon (tests/test_warm.py runs real parents)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from conftest import wait_until

from trayapp.run import warm
from trayapp.run.runner import Launch
from trayapp.run.warm import WarmTask
from trayapp.run.warmparent import WarmFailed, WarmParent

JUNK = [b'{"op": "exited", "code": "x"}', b'{"op": "exited", "code": 1e99}', b'[1, 2]', b'not json',
        b'{"op": "exited", "code": true}',
        b"[" * 100_000]  # nested past json's depth: RecursionError, not ValueError (it ended the slave's loop)


@pytest.fixture
def parent(tmp_path):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    one = WarmParent("key", 0, tmp_path / "box", "python3", ("numpy", "/home/ana", "../x", "pkg.sub"))
    one.chan = ours
    yield one, theirs
    ours.close()
    theirs.close()


@pytest.mark.parametrize("junk", JUNK)
def test_an_exit_report_the_slave_cannot_read_counts_as_no_report(parent, junk):
    one, theirs = parent
    theirs.send(junk)
    assert one.wait_exit(1.0) is None  # the runner then ends the parent: nothing in it is trusted


def test_a_good_exit_report_still_reads(parent):
    one, theirs = parent
    theirs.send(b'{"op": "exited", "code": 3}')
    assert one.wait_exit(1.0) == 3


@pytest.mark.parametrize("junk", [b'{"op": "forked", "pid": "1"}', b'{"op": "forked"}', b'7'])
def test_a_fork_reply_the_slave_cannot_read_fails_the_fork(parent, junk):
    one, theirs = parent
    theirs.send(junk)
    with pytest.raises(WarmFailed):
        one.fork({"argv": ["python3", "main.py"]}, 1, 2)


def test_a_ready_reply_that_does_not_fit_fails_the_parent(parent):
    one, theirs = parent
    one.popen = type("Running", (), {"poll": lambda self: None})()
    theirs.send(b'{"op": "ready", "pid": "x"}')
    assert not one.poll_ready() and one.failure


def test_only_module_names_are_imported_or_copied(parent):
    one, _ = parent
    assert one.modules == ("numpy", "pkg.sub")


def test_a_flood_of_other_messages_is_no_report_and_ends(parent):
    """Master code in the parent (or a task holding a copy of its channel) can write
    there without end: reading stops, as for no report, instead of looping on."""
    one, theirs = parent
    theirs.setblocking(False)
    try:
        while True:
            theirs.send(b'{"op": "chatter"}')
    except BlockingIOError:
        pass
    began = time.monotonic()
    assert one.wait_exit(0) is None
    assert time.monotonic() - began < 1.0


def test_a_silent_parent_never_blocks_the_engines_loop(parent, tmp_path, monkeypatch):
    """A forked task is gone but its parent (master code) does not report: has_ended
    answers at once (the engine's loop serves every master and a returning user's
    preemption), and after EXIT_REPORT_TIMEOUT_S the task ends without a code and the
    parent is ended. Before, has_ended waited there 10 s, once per such task."""
    one, theirs = parent
    one.popen = type("Running", (), {"poll": lambda self: None, "pid": 0})()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    launch = Launch(token="t" * 16, task_dir=tmp_path / "task", argv=("python3", "main.py"))
    (tmp_path / "task" / "work").mkdir(parents=True)
    one.box.mkdir(parents=True)
    one.work.mkdir()
    task = WarmTask(launch, gone.pid, None, one)
    monkeypatch.setattr(warm, "same_process", lambda pid, created: None)  # its pid is free again
    monkeypatch.setattr(warm, "EXIT_REPORT_TIMEOUT_S", 0.5)
    killed = []
    monkeypatch.setattr(one, "kill", lambda **_: killed.append(True))
    began = time.monotonic()
    assert task.has_ended() is False
    assert time.monotonic() - began < 0.2
    wait_until(task.has_ended, what="the silent parent's task to end", timeout=5)
    assert task.exit_code() is None and killed


def test_a_late_report_still_counts(parent, tmp_path, monkeypatch):
    one, theirs = parent
    one.popen = type("Running", (), {"poll": lambda self: None, "pid": 0})()
    launch = Launch(token="u" * 16, task_dir=tmp_path / "task", argv=("python3", "main.py"))
    (tmp_path / "task" / "work").mkdir(parents=True)
    one.box.mkdir(parents=True)
    one.work.mkdir()
    task = WarmTask(launch, 1, None, one)
    monkeypatch.setattr(warm, "same_process", lambda pid, created: None)
    assert task.has_ended() is False
    # Until the report comes, the engine waits on the parent's channel, not on the
    # task's pidfd (readable since the task ended: the engine's loop would spin).
    assert task.wait_fd() == one.chan.fileno()
    theirs.send(b'{"op": "exited", "code": 4}')
    wait_until(task.has_ended, what="the late report", timeout=5)
    assert task.exit_code() == 4

