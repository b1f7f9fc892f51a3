"""The queue carries a schema version and is upgraded in place, never silently broken."""

from __future__ import annotations

import sqlite3

import pytest

from trayapp.errors import UserError
from trayapp.master.schema import MIGRATIONS, SCHEMA_V1, SCHEMA_VERSION
from trayapp.master.store import Store


def _version(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def test_a_new_queue_is_at_the_newest_version(tmp_path):
    Store(tmp_path / "q.sqlite3").close()
    assert _version(tmp_path / "q.sqlite3") == SCHEMA_VERSION == len(MIGRATIONS)
    assert not list(tmp_path.glob("*.bak"))  # nothing to back up on a fresh queue


def test_an_unversioned_queue_is_upgraded_with_a_backup(tmp_path):
    path = tmp_path / "q.sqlite3"
    with sqlite3.connect(path) as db:  # what releases before versioning wrote
        db.executescript(SCHEMA_V1)
        db.execute("INSERT INTO hosts(name, address, port, agent_command, added) VALUES"
                   " ('local', 'this PC', 0, '(in-process)', 1), ('lab-07', 'lab-07.example', 22, 'sparecycles agent', 2)")
    store = Store(path)
    assert {h.name: h.kind for h in store.hosts()} == {"local": "local", "lab-07": "ssh"}
    store.close()
    assert _version(path) == SCHEMA_VERSION
    backup = tmp_path / "q.sqlite3.v0.bak"
    assert _version(backup) == 0
    with sqlite3.connect(backup) as db:
        assert db.execute("SELECT count(*) FROM hosts").fetchone()[0] == 2


def test_a_queue_from_a_newer_release_is_refused(tmp_path):
    path = tmp_path / "q.sqlite3"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(UserError, match="newer SpareCycles") as caught:
        Store(path)
    assert "upgrade SpareCycles" in caught.value.fix


def test_processes_opening_a_new_queue_at_once_each_find_it_upgraded(tmp_path):
    # A submit beside a starting dispatcher: each sees version 0, and the one
    # that waited for the other's migration must not take the same step again.
    import threading

    for attempt in range(5):
        path = tmp_path / f"q{attempt}.sqlite3"
        with sqlite3.connect(path) as db:  # already in WAL mode: the race is the migrations' alone
            db.execute("PRAGMA journal_mode=WAL")
        start, failures = threading.Barrier(6), []

        def open_queue():
            start.wait()
            try:
                Store(path).close()
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=open_queue) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failures, failures
        assert _version(path) == SCHEMA_VERSION
