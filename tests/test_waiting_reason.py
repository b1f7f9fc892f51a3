"""A slave that goes on waiting for another reason says so: the idle watcher's
new reason reaches the log (the state callback) and every master, even though
the state itself ("waiting") did not change. Waiting for the user and waiting
for other programs' load once looked the same in the log, which read as a
watcher that had stopped."""

from __future__ import annotations

import sys

from support.peer import ProtocolPeer

from trayapp.run.posix import PosixRunner
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import Spool


def test_a_new_reason_to_wait_is_told_though_the_state_stays_waiting(tmp_path):
    engine = SlaveEngine(Spool(tmp_path / "spool"), SlaveSettings(slots=1, python=sys.executable, nice=0),
                         slave_id="e" * 16, runner=PosixRunner())
    told = []
    engine.on_state_change = told.append
    master = ProtocolPeer(engine)
    master.send("hello", master=ProtocolPeer.MASTER_ID, name="test master")
    try:
        engine.availability.report_idle(False, "waiting for 3 s without keyboard or mouse input")
        engine._step(None, 0.01)
        engine.availability.report_idle(False, "other programs use 95% of the CPU (lending below 50%)")
        engine._step(None, 0.01)
        assert [(d["state"], d["reason"]) for d in told][-2:] == [
            ("waiting", "waiting for 3 s without keyboard or mouse input"),
            ("waiting", "other programs use 95% of the CPU (lending below 50%)")]
        master.expect("hello")
        reasons = []
        while not reasons or reasons[-1] != "other programs use 95% of the CPU (lending below 50%)":
            reasons.append(master.expect("state")["reason"])
    finally:
        engine.close()
