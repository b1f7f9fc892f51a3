"""Reading a queue file as SQLite has it, for the upgrade tests: rows, version,
and where an upgrade moved a host's columns to."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

# Migration 5: a host's SSH login left the hosts table's columns for its options.
LOGIN_COLUMNS = {"address": "address", "port": "port", "user": "user", "key_path": "key",
                 "agent_command": "agent_command"}
# What the kinds kept there though they log in nowhere, gone with the columns.
PLACEHOLDERS = ("this PC", "(in-process)", "(none: a SLURM cluster)")


def rows(path: Path, table: str) -> list[dict]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY rowid")]


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def kind_of(row: dict) -> str:
    """A host row's kind, also in a queue from before hosts had one (0.1.0)."""
    return row.get("kind") or ("local" if row["agent_command"] == "(in-process)" else "ssh")


def options_after_upgrade(row: dict) -> dict:
    """The options a host row written by an older release has once upgraded:
    its own, plus its login if its kind logs in (an agent command if a slave's)."""
    kind = kind_of(row)
    moved = {}
    if kind != "local":
        columns = [c for c in LOGIN_COLUMNS if c != "agent_command" or kind == "ssh"]
        moved = {LOGIN_COLUMNS[c]: row[c] for c in columns if row[c] is not None}
    return {**json.loads(row.get("options") or "{}"), **moved}


def assert_rows_kept(written: dict[str, list[dict]], path: Path, dropped: dict[str, set[str]]) -> None:
    """Every row written is in the upgraded file, every field the same, except
    columns dropped (``dropped``) and the hosts' login, which must be in its options."""
    for table, before_rows in written.items():
        after_rows = rows(path, table)
        assert len(after_rows) == len(before_rows), table
        for before, after in zip(before_rows, after_rows):
            gone = dropped.get(table, set()) | (set(LOGIN_COLUMNS) | {"options"} if table == "hosts" else set())
            kept = {k: v for k, v in before.items() if k not in gone}
            assert {k: after.get(k) for k in kept} == kept, f"{table} row changed in the upgrade"
            if table == "hosts":
                assert set(LOGIN_COLUMNS).isdisjoint(after), "the login columns are gone"
                assert json.loads(after["options"]) == options_after_upgrade(before), before["name"]
                assert not any(p in after["options"] for p in PLACEHOLDERS), after


def jobs_read_back(store, expected: dict) -> dict:
    """The upgraded queue's jobs by id, checked against what the release wrote
    (``expected``: its fixture's expected.json): the four jobs' states, and
    every task's status, outcome, exit code, message, failures, host and params."""
    jobs = {j.id: j for j in store.jobs()}
    assert {kind: jobs[ref].status.value for kind, ref in expected["jobs"].items()} == {
        "done": "done", "failed": "failed", "cancelled": "cancelled", "running": "running"}
    written_tasks = {(t["job_seq"], t["idx"]): t for t in expected["queue"]["tasks"]}
    read_tasks = {(t.job_seq, t.idx): t for job in jobs.values() for t in store.tasks(job.seq)}
    assert read_tasks.keys() == written_tasks.keys()
    for key, task in read_tasks.items():
        row = written_tasks[key]
        assert (task.status.value, task.outcome, task.exit_code, task.message, task.failures, task.host,
                task.params) == (row["status"], row["outcome"], row["exit_code"], row["message"],
                                 row["failures"], row["host"], json.loads(row["params"]))
    return jobs
