"""Every field of every message a slave receives is checked before anyone acts
on it: a bad one refuses that message with a reason, the session and the
daemon go on, and a task file that does not fit is left alone at recovery."""

from __future__ import annotations

import json
import sys

import pytest
from support.peer import ProtocolPeer
from test_slave_engine import engine  # noqa: F401 - a fixture: an engine serving on a thread

from trayapp.run.posix import PosixRunner
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import TASK_FIELDS, TASK_FORMAT, Spool, SpoolTask
from trayapp.wire.fields import refusal
from trayapp.wire.protocol import MASTER_TO_SLAVE, REQUIRED, TO_SLAVE_FIELDS

GOOD_START = {"token": "ab" * 8, "job": "9abf0938", "idx": 0, "params": {}, "main": "main.py",
              "archive_sha": "0" * 64}


def test_each_message_a_slave_receives_has_a_table_of_its_fields_and_its_required_ones_match():
    assert set(TO_SLAVE_FIELDS) == set(MASTER_TO_SLAVE)
    for kind, spec in TO_SLAVE_FIELDS.items():
        assert {name for name, field in spec.items() if not field.optional} == set(REQUIRED[kind]), kind


def test_what_a_master_sends_today_fits_the_table():
    start = {**GOOD_START, "time_limit_s": 90.0, "requires": ["brian2 == 2.8.0"], "memory_mb": 512, "cores": 2}
    assert refusal(start, TO_SLAVE_FIELDS["start"]) is None
    assert refusal({**GOOD_START, "time_limit_s": None, "memory_mb": None, "requires": []},
                   TO_SLAVE_FIELDS["start"]) is None


@pytest.mark.parametrize("field, value, words", [
    ("time_limit_s", "x", "time_limit_s must be a number of seconds (0: no limit), not 'x'"),
    ("time_limit_s", float("nan"), "time_limit_s must be a number of seconds"),
    ("idx", True, "idx must be a task index"),
    ("idx", "3", "idx must be a task index"),
    ("params", [1, 2], "params must be a JSON object"),
    ("main", "../../.bashrc", "main must be a script name at the top of the job's folder"),
    ("main", ".hidden.py", "main must be a script name"),
    ("job", "j\x00b", "job must be a job id"),
    ("archive_sha", "../x", "archive_sha must be a sha256"),
    ("cores", 0, "cores must be a number of cores"),
    ("memory_mb", -5, "memory_mb must be megabytes"),
    ("requires", "numpy", "requires must be a list"),
    ("requires", [1], "requires must be a list"),
])
def test_a_bad_field_is_named_with_what_it_must_be(field, value, words):
    assert words in refusal({**GOOD_START, field: value}, TO_SLAVE_FIELDS["start"])


def test_malformed_messages_are_refused_one_by_one_and_the_session_goes_on(engine):
    master = ProtocolPeer(engine)
    master.hello()
    master.send("start", **{**GOOD_START, "time_limit_s": "x"})
    declined = master.expect("declined", token=GOOD_START["token"])
    assert declined["retry"] is False, "it would fail the same way on any host"
    assert "refused a 'start' message: time_limit_s must be" in declined["reason"]
    for kind, fields, words in (("demand", {"queued": "3"}, "queued must be a count"),
                                ("need_archive", {"sha": 5}, "sha must be a sha256"),
                                ("cancel", {"token": ["ab"]}, "token must be a task token"),
                                ("bye", {"stop_tasks": "yes"}, "stop_tasks must be true or false"),
                                ("control", {"action": "status", "until": "soon"}, "until must be a time")):
        master.send(kind, **fields)
        error = master.expect("error")
        assert error["refused"] == kind and words in error["reason"], error
    master.send("sync")
    assert master.expect("tasks")["tasks"] == []
    assert not engine.tasks and not (engine.spool.tasks / GOOD_START["token"]).exists()


def test_recovery_leaves_a_malformed_task_file_alone_and_says_why(tmp_path):
    spool = Spool(tmp_path / "spool").ensure()
    task = SpoolTask(token="cd" * 8, master="m", job="j1", idx=0, params={}, main="main.py", archive_sha="0" * 64)
    path = spool.task_dir(task.token) / "task.json"
    path.parent.mkdir(parents=True)
    from dataclasses import asdict

    path.write_text(json.dumps({"format": TASK_FORMAT, **asdict(task), "state": "finished", "time_limit_s": "x"}))
    engine = SlaveEngine(spool, SlaveSettings(slots=1, python=sys.executable), slave_id="5b" * 8,
                         runner=PosixRunner())
    try:
        engine.recover()  # a file that does not fit is never acted on
        assert engine.tasks == {}
        assert "time_limit_s must be a number of seconds" in spool.unreadable[path]
        assert "time_limit_s must be" in engine.describe()["unreadable_tasks"][str(path)]
    finally:
        engine.close()


def test_every_field_of_a_task_file_has_a_line_in_its_table():
    from dataclasses import fields

    assert set(TASK_FIELDS) == {f.name for f in fields(SpoolTask)}
