"""The queue's tables and their history: every migration a queue file goes through.

Apart from :mod:`trayapp.master.store` (which applies them, one transaction each,
and keeps a backup) so that the history reads in one place and grows by
appending, never by editing what released queues were upgraded with.
"""

from __future__ import annotations

# Version 1: the schema of every release before the queue carried a version
# (``PRAGMA user_version`` 0). "IF NOT EXISTS" lets migration 1 adopt such a
# file as it is, and create a new one.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS jobs (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order
    id           TEXT NOT NULL UNIQUE,               -- what users type
    name         TEXT NOT NULL,
    folder       TEXT NOT NULL,
    main         TEXT NOT NULL,
    archive_sha  TEXT NOT NULL,
    archive_path TEXT NOT NULL,
    params_file  TEXT,
    results_dir  TEXT NOT NULL,
    retries      INTEGER NOT NULL DEFAULT 0,
    time_limit_s REAL,
    requires     TEXT NOT NULL DEFAULT '[]',
    status       TEXT NOT NULL,
    created      REAL NOT NULL,
    finished     REAL
);
CREATE TABLE IF NOT EXISTS tasks (
    job_seq    INTEGER NOT NULL REFERENCES jobs(seq),
    idx        INTEGER NOT NULL,
    params     TEXT NOT NULL,
    status     TEXT NOT NULL,
    outcome    TEXT,            -- why it last left running (AttemptOutcome)
    exit_code  INTEGER,
    message    TEXT,            -- reason or stderr tail for people to read
    failures   INTEGER NOT NULL DEFAULT 0,  -- own-code failures, counted against retries
    attempt_id INTEGER,         -- current (or last) attempt
    host       TEXT,
    updated    REAL NOT NULL,
    PRIMARY KEY (job_seq, idx)
);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks(status, job_seq, idx);
CREATE INDEX IF NOT EXISTS tasks_by_job ON tasks(job_seq, status);
CREATE TABLE IF NOT EXISTS attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_seq     INTEGER NOT NULL,
    idx         INTEGER NOT NULL,
    host        TEXT NOT NULL,
    token       TEXT NOT NULL,  -- marks the attempt's processes and folders
    run_dir     TEXT,
    pid         INTEGER,
    pid_created REAL,           -- with pid, identifies the process across restarts
    started     REAL NOT NULL,
    ended       REAL,
    outcome     TEXT,
    exit_code   INTEGER,
    message     TEXT
);
CREATE INDEX IF NOT EXISTS open_attempts ON attempts(host, ended);
CREATE TABLE IF NOT EXISTS hosts (
    name          TEXT PRIMARY KEY,
    address       TEXT NOT NULL,
    port          INTEGER NOT NULL DEFAULT 22,
    user          TEXT,
    key_path      TEXT,
    agent_command TEXT NOT NULL DEFAULT 'sparecycles agent',
    slots         INTEGER,        -- most tasks this master runs there at once (NULL: as many as granted)
    added         REAL NOT NULL,
    -- what the host driver last saw, for `hosts list` and the tray window
    state         TEXT NOT NULL DEFAULT 'unknown',
    reason        TEXT,
    last_seen     REAL,
    info          TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      REAL NOT NULL,
    job_seq INTEGER,
    idx     INTEGER,
    kind    TEXT NOT NULL,
    detail  TEXT
);
"""


def _statements(script: str) -> list[str]:
    return [s for s in script.split(";") if s.strip()]


# The queue's history, oldest first: entry N (from 1) brings a queue from
# version N-1 to N. Append only; never edit a released entry, since existing
# queues were upgraded by it as it was. Each runs inside one transaction with
# the version bump, so a crash mid-upgrade leaves the old version intact.
MIGRATIONS: list[tuple[str, list[str]]] = [
    ("the tables of the first releases", _statements(SCHEMA_V1)),
    ("hosts have a kind (local, ssh, ...) and kind-specific options", [
        "ALTER TABLE hosts ADD COLUMN kind TEXT NOT NULL DEFAULT 'ssh'",
        "ALTER TABLE hosts ADD COLUMN options TEXT NOT NULL DEFAULT '{}'",
        # The master's own cores were the row with port 0 and this marker.
        "UPDATE hosts SET kind='local' WHERE agent_command='(in-process)'",
        # Never written or read since the slave engine took over its tasks.
        "ALTER TABLE attempts DROP COLUMN run_dir",
        "ALTER TABLE attempts DROP COLUMN pid_created",
    ]),
    ("jobs carry their memory request, which slaves hold each task to", [
        "ALTER TABLE jobs ADD COLUMN memory_mb INTEGER",
    ]),
    ("why a job waits: each host's refusal of it, as a code and words (trayapp.master.waits)", [
        "CREATE TABLE declines (job_seq INTEGER NOT NULL, host TEXT NOT NULL, code TEXT NOT NULL,"
        " reason TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (job_seq, host))",
    ]),
    ("hosts keep only what their kind needs: the SSH login moves from columns into the kind's options", [
        # Hosts reached over SSH (ssh, slurm); json_patch leaves out what was
        # NULL (no key given). The local host had placeholders ("this PC", port 0).
        "UPDATE hosts SET options=json_patch(options, json_object('address', address, 'port', port,"
        " 'user', user, 'key', key_path)) WHERE kind<>'local'",
        # A slave's agent; a cluster had a sentinel there, no agent runs on it.
        "UPDATE hosts SET options=json_patch(options, json_object('agent_command', agent_command))"
        " WHERE kind='ssh'",
        "ALTER TABLE hosts DROP COLUMN address",
        "ALTER TABLE hosts DROP COLUMN port",
        "ALTER TABLE hosts DROP COLUMN user",
        "ALTER TABLE hosts DROP COLUMN key_path",
        "ALTER TABLE hosts DROP COLUMN agent_command",
    ]),
]
SCHEMA_VERSION = len(MIGRATIONS)
