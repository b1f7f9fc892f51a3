"""Each side of the protocol dispatches through one explicit table, and the
tables match the protocol's lists: every message one side sends has exactly
one handler on the other side, and no handler waits for a message nobody sends."""

from __future__ import annotations

import sys

from trayapp.master.driver import DriverSettings, HostDriver
from trayapp.run.posix import PosixRunner
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import Spool
from trayapp.wire.protocol import AGENT_TO_SLAVE, MASTER_TO_SLAVE, REQUIRED, SLAVE_TO_MASTER


def test_the_two_directions_cover_every_message_type_of_the_protocol():
    assert set(MASTER_TO_SLAVE) | set(SLAVE_TO_MASTER) | set(AGENT_TO_SLAVE) == set(REQUIRED)
    assert len(set(MASTER_TO_SLAVE)) == len(MASTER_TO_SLAVE) and len(set(SLAVE_TO_MASTER)) == len(SLAVE_TO_MASTER)


def test_the_slave_engine_handles_each_message_a_master_sends_and_nothing_else(tmp_path):
    engine = SlaveEngine(Spool(tmp_path / "spool"), SlaveSettings(slots=1, python=sys.executable),
                         slave_id="e" * 16, runner=PosixRunner())
    try:
        assert sorted(engine.handlers) == sorted(MASTER_TO_SLAVE)
        assert all(callable(handler) for handler in engine.handlers.values())
    finally:
        engine.close()


def test_the_host_driver_handles_each_message_a_slave_sends_and_nothing_else(tmp_path):
    driver = HostDriver("h", store_factory=lambda: None, connect=lambda: None,
                        settings=DriverSettings("d" * 16, "tester@pc"))
    assert sorted(driver.handlers) == sorted(SLAVE_TO_MASTER)
    assert all(callable(handler) for handler in driver.handlers.values())
