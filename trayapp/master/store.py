"""The queue: jobs, tasks, attempts and events in SQLite (WAL).

Several processes use the queue at once (the CLI submitting, the dispatcher
claiming, the GUI reading), so every write is one short
``BEGIN IMMEDIATE`` transaction and every row survives: a task is claimed by
changing its status, never by deleting it, and each try of it is an
``attempts`` row that records why it ended. State changes go through the
transition table in :mod:`trayapp.status`.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from trayapp.errors import UserError
from trayapp.master.schema import MIGRATIONS, SCHEMA_VERSION
from trayapp.status import (
    AttemptOutcome,
    JobStatus,
    TaskStatus,
    check_job_transition,
    check_task_transition,
    job_status_from_counts,
)

@dataclass(frozen=True)
class JobRecord:
    seq: int
    id: str
    name: str
    folder: str
    main: str
    archive_sha: str
    archive_path: str
    params_file: str | None
    results_dir: str
    retries: int
    time_limit_s: float | None
    status: JobStatus
    created: float
    finished: float | None
    counts: dict[str, int]
    # What the job waits on, when it is not simply its turn ("lab-07: preparing
    # environment (brian2==2.8.0), 40 s"): the notes on its unfinished tasks.
    waiting_on: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, status: TaskStatus) -> int:
        return self.counts.get(status.value, 0)


@dataclass(frozen=True)
class TaskRecord:
    job_seq: int
    idx: int
    params: dict
    status: TaskStatus
    outcome: str | None
    exit_code: int | None
    message: str | None
    failures: int
    attempt_id: int | None
    host: str | None
    updated: float


@dataclass(frozen=True)
class Claim:
    """A task handed to a host: everything needed to run one attempt."""

    attempt_id: int
    token: str
    job_id: str
    job_name: str
    job_seq: int
    idx: int
    params: dict
    main: str
    archive_path: str
    results_dir: str
    time_limit_s: float | None
    requires: tuple[str, ...] = ()  # e.g. ("brian2 >= 2.5",): a slave that cannot satisfy them declines
    memory_mb: int | None = None  # the job's memory request: each task's cap on the slave


@dataclass(frozen=True)
class HostRecord:
    name: str
    kind: str  # a name in trayapp.master.kinds' registry: "local", "ssh", ...
    slots: int | None
    state: str
    reason: str | None
    last_seen: float | None
    info: dict
    # The kind's own settings: how it is reached (an SSH login, see
    # trayapp.master.kinds.login), a cluster's partition; nothing for the local host.
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OpenAttempt:
    attempt_id: int
    token: str
    job_seq: int
    idx: int
    pid: int | None
    started: float  # when it was claimed, by the queue's clock
    time_limit_s: float | None = None  # its job's


class Store:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        # isolation_level=None: we issue BEGIN ourselves so that every write
        # takes the lock up front (IMMEDIATE) instead of failing on upgrade.
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across application crashes in WAL mode; only a
        # power cut can lose the last commits, never corrupt the file.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        """Bring the file up to :data:`SCHEMA_VERSION`, one migration per transaction."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UserError(f"the queue {self.path} was written by a newer SpareCycles (queue version {version}; "
                            f"this one knows up to {SCHEMA_VERSION})",
                            "upgrade SpareCycles on this PC, or set SPARECYCLES_HOME to use another folder")
        upgrading = self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='jobs'").fetchone()
        if version < SCHEMA_VERSION and upgrading:
            self._backup(version)
        for number, (_why, statements) in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._write() as db:
                # Another process opening the queue (a submit beside a starting
                # dispatcher) may have taken this step while we waited for the lock.
                if db.execute("PRAGMA user_version").fetchone()[0] >= number:
                    continue
                for statement in statements:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")  # no bind parameters in PRAGMA

    def _backup(self, version: int) -> None:
        """A copy of the queue as it was before an upgrade (``queue.sqlite3.v0.bak``),
        so a user can go back to the previous release with nothing lost."""
        target = self.path.with_name(f"{self.path.name}.v{version}.bak")
        if target.exists():
            return
        backup = sqlite3.connect(target)
        try:
            self._db.backup(backup)
        finally:
            backup.close()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def _event(self, kind: str, job_seq: int | None = None, idx: int | None = None, detail: str | None = None) -> None:
        self._db.execute("INSERT INTO events(ts, job_seq, idx, kind, detail) VALUES (?,?,?,?,?)",
                         (self._clock(), job_seq, idx, kind, detail))

    # ----- jobs -------------------------------------------------------------

    def add_job(self, *, name: str, folder: str, main: str, archive_sha: str, archive_path: str,
                params_file: str | None, param_sets: list[dict], results_root: Path, retries: int = 0,
                time_limit_s: float | None = None, requires: list[str] | tuple[str, ...] = (),
                memory_mb: int | None = None) -> JobRecord:
        now = self._clock()
        with self._write() as db:
            job_id = self._new_job_id(db)
            results_dir = str(Path(results_root) / f"{name}-{job_id}")
            cur = db.execute(
                "INSERT INTO jobs(id, name, folder, main, archive_sha, archive_path, params_file, results_dir,"
                " retries, time_limit_s, requires, memory_mb, status, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job_id, name, folder, main, archive_sha, archive_path, params_file, results_dir, retries,
                 time_limit_s, json.dumps(list(requires)), memory_mb, JobStatus.QUEUED.value, now))
            seq = cur.lastrowid
            db.executemany(
                "INSERT INTO tasks(job_seq, idx, params, status, updated) VALUES (?,?,?,?,?)",
                ((seq, i, json.dumps(p), TaskStatus.QUEUED.value, now)
                 for i, p in enumerate(param_sets)))
            self._event("submitted", seq, detail=f"{len(param_sets)} tasks from {folder}")
        return self.job(job_id)

    @staticmethod
    def _new_job_id(db: sqlite3.Connection) -> str:
        while True:
            job_id = secrets.token_hex(4)
            if not db.execute("SELECT 1 FROM jobs WHERE id=?", (job_id,)).fetchone():
                return job_id

    def _counts(self, job_seq: int) -> dict[str, int]:
        rows = self._db.execute("SELECT status, count(*) FROM tasks WHERE job_seq=? GROUP BY status", (job_seq,))
        return {status: n for status, n in rows}

    def _job_from_row(self, row: sqlite3.Row, counts: dict[str, int], waiting_on: str | None = None) -> JobRecord:
        return JobRecord(row["seq"], row["id"], row["name"], row["folder"], row["main"], row["archive_sha"],
                         row["archive_path"], row["params_file"], row["results_dir"], row["retries"],
                         row["time_limit_s"], JobStatus(row["status"]), row["created"], row["finished"], counts,
                         waiting_on)

    def _waiting_notes(self, job_seq: int | None = None) -> dict[int, str]:
        """Per job, the distinct notes on tasks under way (newest first, at most two)."""
        where, args = ("AND job_seq=?", (job_seq,)) if job_seq is not None else ("", ())
        rows = self._db.execute(
            f"SELECT job_seq, message FROM tasks WHERE status IN (?,?) AND message IS NOT NULL {where}"
            " ORDER BY updated DESC", (TaskStatus.DISPATCHED.value, TaskStatus.RUNNING.value, *args))
        notes: dict[int, list[str]] = {}
        for seq, message in rows:
            seen = notes.setdefault(seq, [])
            if message not in seen and len(seen) < 2:
                seen.append(message)
        return {seq: "; ".join(messages) for seq, messages in notes.items()}

    def job(self, ref: str) -> JobRecord:
        """A job by id, unique id prefix, or name (the newest job of that name)."""
        row = self._db.execute("SELECT * FROM jobs WHERE id=?", (ref,)).fetchone()
        if row is None:
            rows = self._db.execute("SELECT * FROM jobs WHERE id LIKE ? ESCAPE '\\'",
                                    (ref.replace("%", r"\%").replace("_", r"\_") + "%",)).fetchall()
            if len(rows) > 1:
                raise UserError(f"'{ref}' matches several jobs: {', '.join(r['id'] for r in rows)}",
                                "type more characters of the job id")
            row = rows[0] if rows else None
        if row is None:
            row = self._db.execute("SELECT * FROM jobs WHERE name=? ORDER BY seq DESC LIMIT 1", (ref,)).fetchone()
        if row is None:
            raise UserError(f"no job '{ref}'", "run 'sparecycles status' to list jobs and their ids")
        return self._job_from_row(row, self._counts(row["seq"]), self._waiting_notes(row["seq"]).get(row["seq"]))

    def jobs(self) -> list[JobRecord]:
        counts: dict[int, dict[str, int]] = {}
        for seq, status, n in self._db.execute("SELECT job_seq, status, count(*) FROM tasks GROUP BY job_seq, status"):
            counts.setdefault(seq, {})[status] = n
        rows = self._db.execute("SELECT * FROM jobs ORDER BY seq").fetchall()
        notes = self._waiting_notes()
        return [self._job_from_row(row, counts.get(row["seq"], {}), notes.get(row["seq"])) for row in rows]

    def tasks(self, job_seq: int) -> list[TaskRecord]:
        rows = self._db.execute("SELECT * FROM tasks WHERE job_seq=? ORDER BY idx", (job_seq,))
        return [TaskRecord(r["job_seq"], r["idx"], json.loads(r["params"]), TaskStatus(r["status"]), r["outcome"],
                           r["exit_code"], r["message"], r["failures"], r["attempt_id"], r["host"], r["updated"])
                for r in rows]

    def _refresh_job(self, job_seq: int) -> None:
        row = self._db.execute("SELECT status FROM jobs WHERE seq=?", (job_seq,)).fetchone()
        new = job_status_from_counts(self._counts(job_seq))
        if new.value == row["status"]:
            return
        check_job_transition(row["status"], new)
        final = new in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)
        self._db.execute("UPDATE jobs SET status=?, finished=? WHERE seq=?",
                         (new.value, self._clock() if final else None, job_seq))
        self._event(f"job_{new.value}", job_seq)

    def _set_task(self, job_seq: int, idx: int, new: TaskStatus, **columns) -> None:
        row = self._db.execute("SELECT status FROM tasks WHERE job_seq=? AND idx=?", (job_seq, idx)).fetchone()
        check_task_transition(row["status"], new)
        columns.update(status=new.value, updated=self._clock())
        assignments = ", ".join(f"{name}=?" for name in columns)
        self._db.execute(f"UPDATE tasks SET {assignments} WHERE job_seq=? AND idx=?",
                         (*columns.values(), job_seq, idx))

    # ----- the user's verbs ---------------------------------------------------

    def cancel_job(self, ref: str) -> int:
        """Cancel every unfinished task; the dispatcher kills the running ones."""
        job = self.job(ref)
        with self._write() as db:
            rows = db.execute("SELECT idx, status FROM tasks WHERE job_seq=? AND status IN (?,?,?)",
                              (job.seq, TaskStatus.QUEUED.value, TaskStatus.DISPATCHED.value,
                               TaskStatus.RUNNING.value)).fetchall()
            for row in rows:
                self._set_task(job.seq, row["idx"], TaskStatus.CANCELLED, outcome=AttemptOutcome.CANCELLED.value,
                               message="cancelled by the user")
            self._event("cancelled", job.seq, detail=f"{len(rows)} tasks")
            self._refresh_job(job.seq)
        return len(rows)

    def retry_job(self, ref: str, indexes: list[int] | None = None) -> int:
        """Queue the failed and cancelled tasks of a job again, with fresh retries;
        ``indexes``: only those of these tasks (the task view's "Retry selected")."""
        job = self.job(ref)
        with self._write() as db:
            rows = db.execute("SELECT idx FROM tasks WHERE job_seq=? AND status IN (?,?)",
                              (job.seq, TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)).fetchall()
            if indexes is not None:
                wanted = set(indexes)
                rows = [row for row in rows if row["idx"] in wanted]
            for row in rows:
                self._set_task(job.seq, row["idx"], TaskStatus.QUEUED, failures=0, outcome=None, exit_code=None,
                               message=None)
            self._event("retried", job.seq, detail=f"{len(rows)} tasks")
            self._refresh_job(job.seq)
        return len(rows)

    def replace_archive(self, job_seq: int, archive_sha: str, archive_path: str, requires: tuple[str, ...]) -> None:
        """The job runs from now on with the folder packed anew (``retry --repack``)."""
        with self._write() as db:
            db.execute("UPDATE jobs SET archive_sha=?, archive_path=?, requires=? WHERE seq=?",
                       (archive_sha, archive_path, json.dumps(list(requires)), job_seq))
            self._event("repacked", job_seq, detail=archive_sha)

    def remove_job(self, ref: str) -> JobRecord:
        """Forget a finished job: its rows go (the one place rows are deleted, at
        the user's word); its results folder is the caller's to keep or delete."""
        job = self.job(ref)
        with self._write() as db:
            status = db.execute("SELECT status FROM jobs WHERE seq=?", (job.seq,)).fetchone()[0]
            if status not in (JobStatus.DONE.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value):
                raise UserError(f"job {job.id} ({job.name}) is {status}; only a finished job can be removed",
                                f"cancel it first: sparecycles cancel {job.id}")
            for table in ("declines", "attempts", "events", "tasks"):
                db.execute(f"DELETE FROM {table} WHERE job_seq=?", (job.seq,))
            db.execute("DELETE FROM jobs WHERE seq=?", (job.seq,))
            self._event("removed", detail=f"{job.id} ({job.name})")
        return job

    def archive_in_use(self, archive_path: str) -> bool:
        return self._db.execute("SELECT 1 FROM jobs WHERE archive_path=? LIMIT 1", (archive_path,)).fetchone() is not None

    # ----- the dispatcher's side ---------------------------------------------

    @staticmethod
    def _not_in(column: str, values: frozenset[int]) -> tuple[str, tuple]:
        if not values:
            return "", ()
        return f" AND {column} NOT IN ({','.join('?' * len(values))})", tuple(sorted(values))

    def claim(self, host: str, limit: int, exclude_jobs: frozenset[int] = frozenset()) -> list[Claim]:
        """Hand up to ``limit`` queued tasks to ``host``, oldest job first,
        skipping jobs the host declined (it cannot meet their requirements)."""
        if limit <= 0:
            return []
        claims = []
        skip, skipped = self._not_in("t.job_seq", exclude_jobs)
        with self._write() as db:
            rows = db.execute(
                "SELECT t.job_seq, t.idx, t.params, j.id, j.name, j.main, j.archive_path, j.results_dir,"
                " j.time_limit_s, j.requires, j.memory_mb FROM tasks t JOIN jobs j ON j.seq = t.job_seq"
                f" WHERE t.status=?{skip} ORDER BY t.job_seq, t.idx LIMIT ?",
                (TaskStatus.QUEUED.value, *skipped, limit)).fetchall()
            touched = set()
            for r in rows:
                token = secrets.token_hex(8)
                cur = db.execute("INSERT INTO attempts(job_seq, idx, host, token, started) VALUES (?,?,?,?,?)",
                                 (r["job_seq"], r["idx"], host, token, self._clock()))
                # The last attempt's message stays in its attempts row; the task's is for this one now.
                self._set_task(r["job_seq"], r["idx"], TaskStatus.DISPATCHED, attempt_id=cur.lastrowid, host=host,
                               message=None)
                touched.add(r["job_seq"])
                claims.append(Claim(cur.lastrowid, token, r["id"], r["name"], r["job_seq"], r["idx"],
                                    json.loads(r["params"]), r["main"], r["archive_path"], r["results_dir"],
                                    r["time_limit_s"], tuple(json.loads(r["requires"])), r["memory_mb"]))
            for seq in touched:
                self._refresh_job(seq)
        return claims

    def _current(self, attempt_id: int) -> sqlite3.Row | None:
        """The attempt's task row if this attempt is still the one it waits on."""
        return self._db.execute(
            "SELECT t.* FROM attempts a JOIN tasks t ON t.job_seq=a.job_seq AND t.idx=a.idx"
            " WHERE a.id=? AND t.attempt_id=a.id AND t.status IN (?,?)",
            (attempt_id, TaskStatus.DISPATCHED.value, TaskStatus.RUNNING.value)).fetchone()

    def attempt_is_wanted(self, attempt_id: int) -> bool:
        """False once the user cancelled the task: its process must go."""
        return self._current(attempt_id) is not None

    def mark_running(self, attempt_id: int, pid: int) -> bool:
        with self._write() as db:
            db.execute("UPDATE attempts SET pid=? WHERE id=?", (pid, attempt_id))
            task = self._current(attempt_id)
            if task is None:
                return False
            if task["status"] == TaskStatus.DISPATCHED.value:
                # A note from before it ran (its environment being prepared) is done with.
                self._set_task(task["job_seq"], task["idx"], TaskStatus.RUNNING, message=None)
                self._refresh_job(task["job_seq"])
        return True

    def finish_attempt(self, attempt_id: int, outcome: AttemptOutcome, *, exit_code: int | None = None,
                       message: str | None = None) -> TaskStatus | None:
        """Record how an attempt ended and move its task on; returns the task's new
        status, or None if the task had already moved on (e.g. cancelled)."""
        with self._write() as db:
            db.execute("UPDATE attempts SET ended=?, outcome=?, exit_code=?, message=? WHERE id=? AND ended IS NULL",
                       (self._clock(), outcome.value, exit_code, message, attempt_id))
            task = self._current(attempt_id)
            if task is None:
                return None
            seq, idx = task["job_seq"], task["idx"]
            failures = task["failures"]
            if outcome is AttemptOutcome.SUCCEEDED:
                new = TaskStatus.DONE
            elif outcome in (AttemptOutcome.PREEMPTED, AttemptOutcome.HOST_LOST):
                new = TaskStatus.QUEUED  # not the task's fault: retries are not used up
            elif outcome is AttemptOutcome.HOST_FAILED:
                earlier = self._host_failures(seq, idx) - 1
                new = TaskStatus.FAILED if earlier >= 1 else TaskStatus.QUEUED
                if earlier >= 1:
                    message = f"could not be run by a host twice, so it will not be tried again: {message}"
            elif outcome is AttemptOutcome.CANCELLED:
                new = TaskStatus.CANCELLED
            elif outcome is AttemptOutcome.REJECTED:
                new = TaskStatus.FAILED
            else:
                failures += 1
                retries = db.execute("SELECT retries FROM jobs WHERE seq=?", (seq,)).fetchone()[0]
                new = TaskStatus.QUEUED if failures <= retries else TaskStatus.FAILED
            if new is TaskStatus.DONE and task["status"] == TaskStatus.DISPATCHED.value:
                # It ran: the host's report says so, though its "started" never
                # reached the queue (a master killed in between, then reconciled).
                self._set_task(seq, idx, TaskStatus.RUNNING)
            self._set_task(seq, idx, new, outcome=outcome.value, exit_code=exit_code, message=message,
                           failures=failures)
            self._event(outcome.value, seq, idx, message)
            self._refresh_job(seq)
        return new

    def _host_failures(self, job_seq: int, idx: int) -> int:
        """How many attempts of the task ended with a host unable to run it,
        counted since the user last queued it (``retry`` starts afresh)."""
        return self._db.execute(
            "SELECT count(*) FROM attempts WHERE job_seq=? AND idx=? AND outcome=? AND started >="
            " coalesce((SELECT max(ts) FROM events WHERE kind='retried' AND job_seq=?), 0)",
            (job_seq, idx, AttemptOutcome.HOST_FAILED.value, job_seq)).fetchone()[0]

    def note_running_task(self, attempt_id: int, message: str, *, event: bool = True) -> None:
        """A word on a task that is still under way (e.g. why its results wait);
        shown by ``status``, replaced by the outcome when the attempt ends.
        ``event=False`` for progress that is repeated (it would flood the history)."""
        with self._write() as db:
            task = self._current(attempt_id)
            if task is None or task["message"] == message:
                return
            db.execute("UPDATE tasks SET message=?, updated=? WHERE job_seq=? AND idx=?",
                       (message, self._clock(), task["job_seq"], task["idx"]))
            if event:
                self._event("note", task["job_seq"], task["idx"], message)

    def fail_queued_tasks(self, job_seq: int, message: str) -> int:
        """Fail a job's queued tasks that no host can run, with why (``wait`` then ends)."""
        with self._write() as db:
            rows = db.execute("SELECT idx FROM tasks WHERE job_seq=? AND status=?",
                              (job_seq, TaskStatus.QUEUED.value)).fetchall()
            for row in rows:
                self._set_task(job_seq, row["idx"], TaskStatus.FAILED, outcome=AttemptOutcome.REJECTED.value,
                               message=message)
            if rows:
                self._event("unrunnable", job_seq, detail=message)
                self._refresh_job(job_seq)
        return len(rows)

    def queued_jobs(self) -> list[int]:
        """The jobs with queued tasks, by seq."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT job_seq FROM tasks WHERE status=?",
                                               (TaskStatus.QUEUED.value,))]

    def open_attempts(self, host: str) -> list[OpenAttempt]:
        """Attempts on ``host`` that have not been settled: what a restarted
        dispatcher must reconcile."""
        rows = self._db.execute("SELECT a.*, j.time_limit_s FROM attempts a JOIN jobs j ON j.seq=a.job_seq"
                                " WHERE a.host=? AND a.ended IS NULL ORDER BY a.id", (host,))
        return [OpenAttempt(r["id"], r["token"], r["job_seq"], r["idx"], r["pid"], r["started"], r["time_limit_s"])
                for r in rows]

    def lose_open_attempts(self, host: str, message: str) -> int:
        """Every unsettled attempt on ``host`` ends as host lost (its tasks go back
        to the queue without using a retry); how many there were."""
        attempts = self.open_attempts(host)
        for attempt in attempts:
            self.finish_attempt(attempt.attempt_id, AttemptOutcome.HOST_LOST, message=message)
        return len(attempts)

    def claim_for(self, attempt_id: int) -> Claim:
        r = self._db.execute(
            "SELECT a.id, a.token, t.job_seq, t.idx, t.params, j.id AS job_id, j.name, j.main, j.archive_path,"
            " j.results_dir, j.time_limit_s, j.requires, j.memory_mb FROM attempts a"
            " JOIN tasks t ON t.job_seq=a.job_seq AND t.idx=a.idx JOIN jobs j ON j.seq=a.job_seq WHERE a.id=?",
            (attempt_id,)).fetchone()
        return Claim(r["id"], r["token"], r["job_id"], r["name"], r["job_seq"], r["idx"], json.loads(r["params"]),
                     r["main"], r["archive_path"], r["results_dir"], r["time_limit_s"],
                     tuple(json.loads(r["requires"])), r["memory_mb"])

    def count_queued(self, exclude_jobs: frozenset[int] = frozenset()) -> int:
        skip, skipped = self._not_in("job_seq", exclude_jobs)
        return self._db.execute(f"SELECT count(*) FROM tasks WHERE status=?{skip}",
                                (TaskStatus.QUEUED.value, *skipped)).fetchone()[0]

    def count_unfinished(self) -> int:
        return self._db.execute("SELECT count(*) FROM tasks WHERE status IN (?,?,?)",
                                (TaskStatus.QUEUED.value, TaskStatus.DISPATCHED.value,
                                 TaskStatus.RUNNING.value)).fetchone()[0]

    def attempt_by_token(self, token: str) -> sqlite3.Row | None:
        return self._db.execute("SELECT * FROM attempts WHERE token=?", (token,)).fetchone()

    # ----- declines: jobs a host refused for what they need (trayapp.master.waits) -----

    def record_decline(self, job_seq: int, host: str, code: str, reason: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO declines(job_seq, host, code, reason, ts) VALUES (?,?,?,?,?)",
                       (job_seq, host, code, reason, self._clock()))

    def declined_jobs(self, host: str) -> frozenset[int]:
        """The jobs ``host`` declined (by seq)."""
        return frozenset(r[0] for r in self._db.execute("SELECT job_seq FROM declines WHERE host=?", (host,)))

    def declines_of(self, job_seq: int) -> dict[str, tuple[str, str]]:
        """Per host that declined the job: (code, reason), oldest first."""
        rows = self._db.execute("SELECT host, code, reason FROM declines WHERE job_seq=? ORDER BY ts", (job_seq,))
        return {host: (code, reason) for host, code, reason in rows}

    def forget_declines(self, *, host: str | None = None, job_seq: int | None = None,
                        older_than: float | None = None) -> int:
        """Drop the declines of a host, of a job, or from before ``older_than`` (a clock time); how many."""
        where, args = [], []
        for column, value in (("host=?", host), ("job_seq=?", job_seq), ("ts<?", older_than)):
            if value is not None:
                where.append(column)
                args.append(value)
        with self._write() as db:
            return db.execute(f"DELETE FROM declines WHERE {' AND '.join(where) or '1'}", args).rowcount

    # ----- what a dispatcher did (its closing line) -----------------------------------

    def attempt_outcomes_since(self, since: float) -> dict[str, int]:
        """How many attempts started at or after ``since`` ended each way (``None``: not yet)."""
        rows = self._db.execute("SELECT outcome, count(*) FROM attempts WHERE started >= ? GROUP BY outcome",
                                (since,))
        return {outcome: n for outcome, n in rows}

    def count_failed_since(self, since: float) -> int:
        """Tasks that are failed now and changed at or after ``since``."""
        return self._db.execute("SELECT count(*) FROM tasks WHERE status=? AND updated >= ?",
                                (TaskStatus.FAILED.value, since)).fetchone()[0]

    # ----- hosts --------------------------------------------------------------------

    def add_host(self, name: str, *, kind: str, options: dict | None = None,
                 slots: int | None = None) -> HostRecord:
        """A new host of ``kind`` (a name in trayapp.master.kinds' registry) with
        that kind's ``options``, as its ``HostKind.record`` makes them."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM hosts WHERE name=?", (name,)).fetchone():
                raise UserError(f"a host named '{name}' exists already",
                                f"pick another name, or 'sparecycles hosts remove {name}' first")
            db.execute("INSERT INTO hosts(name, kind, slots, options, added) VALUES (?,?,?,?,?)",
                       (name, kind, slots, json.dumps(options or {}), self._clock()))
            self._event("host_added", detail=name)
        return self.host(name)

    def ensure_local_host(self, name: str) -> None:
        """The master's own cores appear in the host list like any other host."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO hosts(name, kind, added) VALUES (?,?,?)", (name, "local", self._clock()))

    def remove_host(self, name: str) -> None:
        self.host(name)
        with self._write() as db:
            db.execute("DELETE FROM hosts WHERE name=?", (name,))
            self._event("host_removed", detail=name)

    def host(self, name: str) -> HostRecord:
        row = self._db.execute("SELECT * FROM hosts WHERE name=?", (name,)).fetchone()
        if row is None:
            raise UserError(f"no host '{name}'", "run 'sparecycles hosts list' to see the hosts")
        return self._host_from_row(row)

    def hosts(self) -> list[HostRecord]:
        return [self._host_from_row(r) for r in self._db.execute("SELECT * FROM hosts ORDER BY name")]

    @staticmethod
    def _host_from_row(r: sqlite3.Row) -> HostRecord:
        return HostRecord(r["name"], r["kind"], r["slots"], r["state"], r["reason"], r["last_seen"],
                          json.loads(r["info"]), json.loads(r["options"]))

    def set_host_option(self, name: str, key: str, value) -> HostRecord:
        """Set one of the host's own settings (kept with its kind's options)."""
        with self._write() as db:
            row = db.execute("SELECT options FROM hosts WHERE name=?", (name,)).fetchone()
            if row is None:
                raise UserError(f"no host '{name}'", "run 'sparecycles hosts list' to see the hosts")
            options = {**json.loads(row["options"]), key: value}
            db.execute("UPDATE hosts SET options=? WHERE name=?", (json.dumps(options), name))
            self._event("host_changed", detail=f"{name}: {key} = {value!r}")
        return self.host(name)

    def set_host_state(self, name: str, state: str, reason: str | None = None, info: dict | None = None,
                       seen: bool = False) -> None:
        with self._write() as db:
            columns = {"state": state, "reason": reason}
            if info is not None:
                columns["info"] = json.dumps(info)
            if seen:
                columns["last_seen"] = self._clock()
            assignments = ", ".join(f"{k}=?" for k in columns)
            db.execute(f"UPDATE hosts SET {assignments} WHERE name=?", (*columns.values(), name))

    def running_on(self, host: str) -> int:
        return self._db.execute("SELECT count(*) FROM tasks WHERE host=? AND status IN (?,?)",
                                (host, TaskStatus.DISPATCHED.value, TaskStatus.RUNNING.value)).fetchone()[0]

    def task_table(self, job_seq: int) -> list[sqlite3.Row]:
        """Every task of a job with its attempt count and its latest attempt's
        times and token, in one query (the window's task view; 10,000 rows in
        tens of milliseconds)."""
        return self._db.execute(
            "SELECT t.idx, t.params, t.status, t.host, t.exit_code, t.message, t.outcome, t.failures,"
            " coalesce(n.attempts, 0) AS attempts, a.started, a.ended, a.token FROM tasks t"
            " LEFT JOIN (SELECT idx, count(*) AS attempts FROM attempts WHERE job_seq=? GROUP BY idx) n"
            " ON n.idx=t.idx LEFT JOIN attempts a ON a.id=t.attempt_id WHERE t.job_seq=? ORDER BY t.idx",
            (job_seq, job_seq)).fetchall()

    def attempts(self, job_seq: int) -> list[sqlite3.Row]:
        return self._db.execute("SELECT * FROM attempts WHERE job_seq=? ORDER BY id", (job_seq,)).fetchall()
