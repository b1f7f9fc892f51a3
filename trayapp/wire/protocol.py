"""The master ↔ slave protocol: versioned, newline-delimited JSON.

One message per line, each a JSON object with ``"v"`` (the protocol version)
and ``"type"``. No pickle, nothing executable: a message is data, checked here
against the list of known types and their required fields before anyone acts
on it. A line that is not valid JSON, or of another version, is a
:class:`ProtocolError`: the receiver closes that connection with a logged
reason and does nothing else.

Conversation (master M, slave S; files move by SFTP or, for the local host,
by the file system; the one exception is a small results archive, which also
rides in its ``finished`` message as ``results_inline``)::

    M: hello {master, name}            S: hello {slave, state, slots, python, brian, spool}
    M: demand {queued}                 S: grant {n}            the slave decides who gets a slot
    M: start ... for each granted slot, or release {n} for those it cannot use
    M: need_archive {sha}              S: archive {sha, present, upload_path}
    M: archive_uploaded {sha, path}    S: archive_ok {sha} | archive_bad {sha, reason}
    M: start {task...}                 S: started {token} | declined {token, reason, code, retry, ...}
                                       S: preparing {token, detail}   (every few s while its job's environment is built)
                                       S: finished {token, outcome, exit_code, results_path, results_sha,
                                                    results_inline (base64, when small), ...}
    M: ack {token}                     S: (frees the spool)
    M: cancel {token}                  S: finished {token, outcome: cancelled}
    M: sync                            S: tasks {tasks: [...]}  every task it holds for this master
                                       S: state {state, reason, slots, running}
    M: bye {stop_tasks}

The PC's own user (tray menu, ``sparecycles pause|donate|resume``) speaks to
the local daemon the same way: ``control {action, until}`` answered by ``state``;
only they may (a master's ``control`` is answered with ``error``). An agent's
first line to the daemon is ``agent {principal, name}``: whose key it relays for.
A master hears nothing about other masters but their number (``state``:
``running_mine``, ``share``, ``other_masters``).

``declined`` says why a start was not acted on, for the master to decide on
codes and show the words (its fields: :data:`TO_MASTER_FIELDS`):

- ``reason``: the sentence people read; never decided on;
- ``code``: why, as one of :data:`DECLINE_CODES` (absent from a slave of a
  release before codes: the master then assumes the least it can);
- ``retry``: false when the task would fail the same way on any host (the
  attempt is rejected); true or absent, it goes back to the queue;
- ``requirements``: true when the job needs an environment this host cannot
  give: the master offers the job elsewhere and not here for a while;
- ``package``: with code ``unresolvable``, the requirement no index has;
- ``host_failed``: true when the start failed on the host (maybe the host,
  maybe the task): counts toward the host's quarantine and the task's failures.
"""

from __future__ import annotations

import json
from typing import Any

from trayapp.wire.fields import FLAG, OBJECT, Field, hex_text, list_of, number, one_of, text, whole

VERSION = 1
MAX_LINE = 1 << 20  # no legitimate message comes near 1 MiB; a bigger line is an attack or a bug
# Results archives up to this size also travel base64-encoded inside their
# `finished` message (a third bigger): four SFTP round trips fewer per task.
INLINE_RESULTS_MAX = 256 << 10

REQUIRED: dict[str, tuple[str, ...]] = {
    # master -> slave
    "hello": (),
    "demand": ("queued",),
    "release": ("n",),  # grants the master could not use (another host took the work)
    "need_archive": ("sha",),
    "archive_uploaded": ("sha", "path"),
    "start": ("token", "job", "idx", "params", "main", "archive_sha"),
    "cancel": ("token",),
    "ack": ("token",),
    "sync": (),
    "bye": (),
    "control": ("action",),  # pause / donate / resume / status, from the PC's own user
    # agent -> slave daemon, first and once: whose key the agent relays for (trayapp.slave.identity)
    "agent": ("principal",),
    # slave -> master
    "grant": ("n",),
    "archive": ("sha", "present"),
    "archive_ok": ("sha",),
    "archive_bad": ("sha", "reason"),
    "started": ("token",),
    "preparing": ("token", "detail"),  # the task waits for its job's environment ("preparing environment (...), 40 s")
    "declined": ("token", "reason"),  # and the optional fields of TO_MASTER_FIELDS["declined"]
    "finished": ("token", "outcome"),
    "tasks": ("tasks",),
    "state": ("state",),
    "error": ("reason",),
}

# Who sends what; each side keeps one table of handlers, one per type the
# other side sends (a test holds them to these lists). The hello goes both ways.
MASTER_TO_SLAVE = ("hello", "demand", "release", "need_archive", "archive_uploaded", "start", "cancel", "ack",
                   "sync", "bye", "control")
AGENT_TO_SLAVE = ("agent",)  # never from a master: the agent says it before relaying the master's lines
SLAVE_TO_MASTER = ("hello", "grant", "archive", "archive_ok", "archive_bad", "started", "preparing", "declined",
                   "finished", "tasks", "state", "error")


# Every field of every message a slave receives, and what it must hold
# (trayapp.wire.fields): the slave checks a message against its line before
# any handler acts on it, and refuses the message with the reason if a field
# does not fit. Required fields are REQUIRED's; the others may be absent or null.
TOKEN = hex_text(16, 64, "a task token (16 to 64 hex digits)")
SHA256 = hex_text(64, 64, "a sha256 (64 hex digits)")
COUNT = whole(0, 1 << 31, "a count")
SECONDS = number(0, 10 * 365 * 86400, what="a number of seconds (0: no limit)")
# A job names the packages it imports, not their dependencies: a few dozen
# lines at most in practice. Each line is parsed on the slave's loop (about
# 20 us), so 100,000 of them held every master's session up for 2 s a start.
MAX_REQUIREMENTS = 500
TO_SLAVE_FIELDS: dict[str, dict[str, Field]] = {
    "hello": {"master": hex_text(8, 64, "a master id (8 to 64 hex digits)").maybe(), "name": text(1000).maybe()},
    "demand": {"queued": COUNT},
    "release": {"n": COUNT},
    "need_archive": {"sha": SHA256},
    "archive_uploaded": {"sha": SHA256, "path": text(4096)},
    "start": {
        "token": TOKEN,
        "job": text(64, r"[0-9A-Za-z][0-9A-Za-z._-]*", "a job id (letters, digits, . _ -)"),
        "idx": whole(0, 1 << 31, "a task index"),
        "params": OBJECT,
        # A file at the top of the job's folder: no path, nothing hidden.
        "main": text(255, r"[^./\\][^/\\]*", "a script name at the top of the job's folder"),
        "archive_sha": SHA256,
        "time_limit_s": SECONDS.maybe(),
        "cores": whole(1, 4096, "a number of cores").maybe(),
        "memory_mb": whole(0, 1 << 40, "megabytes (0: none asked for)").maybe(),
        "requires": list_of(text(1000, what="a requirement line"), MAX_REQUIREMENTS).maybe(),
    },
    "cancel": {"token": TOKEN},
    "ack": {"token": TOKEN},
    "sync": {},
    "bye": {"stop_tasks": FLAG.maybe()},
    "control": {"action": one_of("pause", "donate", "resume", "status"),
                "until": number(0, float(1 << 40), what="a time (seconds since 1970)").maybe()},
}


# Why a slave declines a start: the code a master decides on, and what it means.
DECLINE_CODES: dict[str, str] = {
    "refused": "the start broke the rules (a field that does not fit): it would fail anywhere",
    "unreadable": "the slave cannot read the task's file in its spool",
    "unavailable": "the slave is paused, stopping, or has a problem of its own",
    "no_slot": "no free slot, and no grant for this start",
    "memory": "the task asks for more memory than this slave gives one task",
    "requirements": "a requirement line the slave does not install (a URL, a path)",
    "environment": "the job's environment could not be built here",
    "unresolvable": "no version of a required package on the index matches (``package`` names it)",
    "archive_missing": "the job archive is not on the slave: send it again",
    "archive_damaged": "the job archive on the slave does not match its checksum: send it again",
    "archive_unpack": "the job archive could not be unpacked on the slave (its disk)",
    "archive_unsafe": "the job archive holds what no job may (a link, a device, a name outside it)",
    "start_failed": "the task could not be started (``host_failed``)",
    "disk": "the slave's disk is full or cannot be written",
}
# After these, a master no longer counts on the slave holding the job archive.
ARCHIVE_GONE = frozenset({"archive_missing", "archive_damaged", "archive_unpack"})

# Fields of messages a master receives, checked the same way before it acts
# (more types may be added here; `finished` has trayapp.master.bounds.check_finished).
TO_MASTER_FIELDS: dict[str, dict[str, Field]] = {
    "declined": {"token": TOKEN, "reason": text(MAX_LINE), "code": text(64, r"[a-z_]+", "a decline code").maybe(),
                 "retry": FLAG.maybe(), "requirements": FLAG.maybe(), "host_failed": FLAG.maybe(),
                 "package": text(1000, what="a package name").maybe()},
}


# What a slave says about one task: the ``finished`` message (with
# ``results_inline`` when small) and each entry of ``tasks``. Named here, not
# taken from the slave's spool record, so a field the spool adds for itself
# never reaches the wire unannounced.
TASK_REPORT: tuple[str, ...] = (
    "token", "master", "job", "idx", "main", "archive_sha", "time_limit_s", "cores", "state", "pid", "created",
    "started", "ended", "outcome", "exit_code", "message", "results_path", "results_sha", "results_size",
)


class ProtocolError(Exception):
    """A message that must not be acted on; the connection is closed."""


def encode(kind: str, **fields: Any) -> bytes:
    if kind not in REQUIRED:
        raise ValueError(f"unknown message type {kind!r}")
    line = (json.dumps({"v": VERSION, "type": kind, **fields}, separators=(",", ":")) + "\n").encode()
    if len(line) > MAX_LINE:  # the peer would close the connection on it: refuse to send it instead
        raise ProtocolError(f"a '{kind}' message of {len(line)} bytes is over the {MAX_LINE}-byte limit")
    return line


def decode(line: bytes | str) -> dict:
    if len(line) > MAX_LINE:
        raise ProtocolError(f"message of {len(line)} bytes is over the {MAX_LINE}-byte limit")
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    if message.get("v") != VERSION:
        raise ProtocolError(f"protocol version {message.get('v')!r} is not {VERSION}; update SpareCycles on both PCs")
    kind = message.get("type")
    if kind not in REQUIRED:
        raise ProtocolError(f"unknown message type {kind!r}")
    missing = [f for f in REQUIRED[kind] if f not in message]
    if missing:
        raise ProtocolError(f"'{kind}' message lacks {', '.join(missing)}")
    return message


class LineBuffer:
    """Splits a byte stream into protocol lines, refusing runaway lines."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        lines = []
        while (end := self._buffer.find(b"\n")) >= 0:
            lines.append(bytes(self._buffer[:end]))
            del self._buffer[: end + 1]
        if len(self._buffer) > MAX_LINE:
            raise ProtocolError(f"a line longer than {MAX_LINE} bytes")
        return lines
