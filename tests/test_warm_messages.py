"""What a warm parent says is checked like any message from outside
(trayapp/run/warmparent.py): the parent imported a master's modules, which may
replace its sending code, and a reply the slave cannot read must end that
parent, never the slave daemon (tests/test_warm.py runs real parents)."""

from __future__ import annotations

import socket

import pytest

from trayapp.run.warmparent import WarmFailed, WarmParent

JUNK = [b'{"op": "exited", "code": "x"}', b'{"op": "exited", "code": 1e99}', b'[1, 2]', b'not json',
        b'{"op": "exited", "code": true}']


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
