"""The slave's spool: its durable folder of archives, task folders and results.

Layout under ``<data>/spool/``::

    archives/<sha>.tar        job archives, verified against their name on arrival
    incoming/<master>/.upload-*   uploads in progress, one folder per master (copied into
                              archives/ and checked there)
    held/<master>/<sha>       the archives each master uploaded (empty marks): a master is
                              told only of these, never of another master's
    unpacked/<sha>/           each archive unpacked once; task folders are copied from it
    tasks/<token>/task.json   one attempt: who asked, what to run, how it ended
    tasks/<token>/work/       its working folder (stdout.txt, stderr.txt, exitcode beside it)
    results/<master>/<token>.tar  finished results waiting for their master to fetch and ack
    slot-cache/<master>/<n>/  each master's compiler caches, per slot (trayapp.run.taskcache)
    trash/                    folders on their way out, deleted off the engine's loop (trayapp.slave.trash)

Everything a slave knows about its tasks is in these files, so a slave daemon
killed at any moment and restarted knows what it was doing. A ``task.json``
is one JSON record per line: the task's whole record, written before its
process starts, then one line per change (its pid once it runs, how it
ended), each appended in one write: a daemon killed mid-way leaves whole
lines (a torn last line, from a crash of the PC, is left out as never
written). Appending costs a few microseconds; the temporary file and rename
it replaces cost a few hundred, three times per task (and on ext4 a rename
over a file also flushes it). A record this engine did not write itself
(taken up after a restart) is rewritten whole (temporary name, then rename).
Each ``task.json`` names its format (:data:`TASK_FORMAT`) in its first line:
an older file is upgraded as it is read, and a file this version cannot read
is reported, never skipped or touched, so a downgraded or damaged slave
cannot quietly forget a task.

``<master>`` is the folder of the master's key (:attr:`trayapp.slave.identity.Principal.folder`).
A master's SFTP reaches only its own ``incoming/<master>/`` (to write) and
``results/<master>/`` (to read); see :mod:`trayapp.slave.forced`. Uploads land
apart from the verified archives, and are copied out before their hash is
checked, so that a master can never overwrite another master's job, nor change
its own upload after the check.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path, PurePath
from typing import Callable, Iterator

from trayapp.run.taskfiles import NotPlainFile, open_folder, open_folder_fd, open_regular, plain_files, read_regular
from trayapp.slave.identity import UNBOUND_FOLDER, folder_of
from trayapp.slave.trash import Trash
from trayapp.wire.archive import ChecksumMismatchError
from trayapp.wire.fields import Field, number, one_of, refusal, text, whole
from trayapp.wire.protocol import INLINE_RESULTS_MAX, MAX_LINE, TASK_REPORT, TO_SLAVE_FIELDS

log = logging.getLogger(__name__)

# The format of task.json, written into each file as "format". Any change to
# SpoolTask's fields is a new format: bump this and append the step that
# upgrades the previous one to _UPGRADES, so files on disk keep their meaning
# and an older SpareCycles refuses the new files instead of misreading them.
TASK_FORMAT = 3


@dataclass
class SpoolTask:
    token: str
    master: str
    job: str
    idx: int
    params: dict
    main: str
    archive_sha: str
    time_limit_s: float | None = None
    cores: int = 1
    memory_mb: int | None = None  # what the job asked for; the task's memory cap
    # The slot it holds (and so its compiler cache): a restarted engine adopts it there.
    # None: not started yet, or started by a version that kept it beside task.json.
    slot: int | None = None
    state: str = "running"  # running -> finished -> (acked: removed)
    pid: int | None = None
    created: float | None = None  # the process's create time: pid + created identify it
    started: float | None = None
    ended: float | None = None
    outcome: str | None = None
    exit_code: int | None = None
    message: str | None = None
    results_path: str | None = None
    results_sha: str | None = None
    results_size: int | None = None

    def summary(self) -> dict:
        """What the master hears about this task in ``finished`` and ``tasks``
        messages: the protocol's list of fields, whatever else the spool keeps."""
        return {name: getattr(self, name) for name in TASK_REPORT}


# What each field of a task file must hold (trayapp.wire.fields): the start
# message's fields as the master sent them, then the spool's own. A file that
# does not fit is unreadable, reported and left alone: never a daemon that
# dies on it at every restart.
_START = TO_SLAVE_FIELDS["start"]
_MOMENT = number(0, float(1 << 40), what="a time (seconds since 1970)").maybe()
TASK_FIELDS: dict[str, Field] = {
    **{name: _START[name] for name in ("token", "job", "idx", "params", "main", "archive_sha", "time_limit_s",
                                       "cores", "memory_mb")},
    "master": text(200, what="a master's name or id"),
    "slot": whole(0, 1 << 16, "a slot number").maybe(),
    "state": one_of("running", "finished"),
    "pid": whole(0, 1 << 31, "a process id").maybe(),
    "created": _MOMENT, "started": _MOMENT, "ended": _MOMENT,
    "outcome": text(40, what="an outcome").maybe(),
    "exit_code": whole(-(1 << 31), 1 << 31, "an exit code").maybe(),
    "message": text(1 << 20).maybe(),
    "results_path": text(4096).maybe(),
    "results_sha": TO_SLAVE_FIELDS["need_archive"]["sha"].maybe(),
    "results_size": whole(0, 1 << 62, "a size in bytes").maybe(),
}
# A task file holds its parameter set (a message is at most MAX_LINE bytes) and little else.
_TASK_FILE_MAX = 4 * MAX_LINE


class UnreadableTaskFile(ValueError):
    """A task.json this version cannot read: damaged, or from a newer SpareCycles."""


def _from_unversioned(data: dict) -> dict:
    """Format 0, the 0.1 releases: no "format" key, an "extra" dict that was
    never used, and the results' absolute path (now relative to the spool, so
    a moved or restored spool still finds them). 0.1 kept results nowhere
    but ``results/``."""
    data = {k: v for k, v in data.items() if k != "extra"}
    if data.get("results_path"):
        data["results_path"] = f"results/{PurePath(data['results_path']).name}"
    return data


def _with_a_memory_cap(data: dict) -> dict:
    """Format 1 had no memory cap: such a task asked for no memory."""
    return {**data, "memory_mb": None}


def _with_a_slot(data: dict) -> dict:
    """Format 2 kept the task's slot in a file ``slot`` beside task.json (one
    more file per task): the engine still reads that file when the task's
    record names no slot (:meth:`trayapp.slave.engine.SlaveEngine._slot_recorded`)."""
    return {**data, "slot": None}


# Entry N upgrades a task file of format N to N+1. Append only: released
# spools were written in each format as it was.
_UPGRADES = [_from_unversioned, _with_a_memory_cap, _with_a_slot]


def _json_bytes(data: dict) -> bytes:
    # Compact: json's C encoder only runs without indent (three of these per task).
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def write_json_atomically(path: Path, data: dict) -> None:
    _write_aside_then(os.replace, path, _json_bytes(data) + b"\n")


def _write_aside_then(put: Callable[[str, Path], None], path: Path, text: bytes) -> None:
    """``text`` written to a temporary file beside ``path``, then ``put`` there whole
    (``os.replace``, or ``os.link`` where an existing file must not be replaced)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text)
        put(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # gone already once replaced


_ONE_WRITE_MAX = 4096  # one page: written whole or not at all, even by a process killed mid-write


def write_new_json(path: Path, data: dict) -> None:
    """Write ``data`` into ``path``, a file that must not exist yet: created and
    written in place (no temporary name, no rename: a rename is a directory
    update, and on ext4 one over an existing file also flushes the new one).
    Killed between the create and the one write, it leaves an empty file, which
    :meth:`Spool.load_all` takes for a start that never completed, as it would
    take no file; FileExistsError if ``path`` exists (replace it atomically then)."""
    text = _json_bytes(data) + b"\n"
    if len(text) > _ONE_WRITE_MAX:
        # A fatal signal can cut a write to a file at a page boundary: a large
        # record (big parameters) is written aside and linked in whole, never
        # left half written (link, unlike rename, refuses an existing name).
        _write_aside_then(partial(os.link, follow_symlinks=False), path, text)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, text)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def append_json_line(path: Path, data: dict) -> None:
    """Append ``data`` to ``path`` (which exists: never created, never followed)
    as one line, in one write where the system allows (a small one always)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _write_all(fd, _json_bytes(data) + b"\n")
    finally:
        os.close(fd)


def _write_all(fd: int, text: bytes) -> None:
    view = memoryview(text)
    while view:
        view = view[os.write(fd, view):]


def read_json_lines(text: bytes) -> dict:
    """A record and the changes appended to it (:meth:`Spool.save`), merged in
    order. A last line that does not parse is a write cut short by a crash of
    the PC: left out (what it said never happened). Anything else that does not
    parse makes the whole file unreadable (ValueError)."""
    whole = text.decode("utf-8")
    # The record itself spans lines in files of the 0.1 releases (indented).
    merged, end = json.JSONDecoder().raw_decode(whole, len(whole) - len(whole.lstrip()))
    if not isinstance(merged, dict):
        raise ValueError("not a JSON object")
    lines = [line for line in whole[end:].split("\n") if line.strip()]
    for n, line in enumerate(lines, 1):
        try:
            change = json.loads(line)
        except ValueError:
            if n == len(lines) and not whole.endswith("\n"):
                log.warning("the last change to a task record was cut short (a crash): left out")
                break
            raise
        if not isinstance(change, dict) or "format" in change:
            raise ValueError(f"change {n} is not a change to the record")
        merged.update(change)
    return merged


class Spool:
    def __init__(self, root: Path):
        self.root = root
        self.archives = root / "archives"
        self.incoming = root / "incoming"
        self.unpacked = root / "unpacked"
        self.tasks = root / "tasks"
        self.results = root / "results"
        self.held = root / "held"
        self.trash = Trash(root / "trash")
        self._made: set[str] = set()  # masters whose incoming/ and results/ folders exist
        self.packed: dict[str, bytes] = {}  # small results archives by token (pack_results)
        self._written: dict[str, dict] = {}  # each task's record as this engine last wrote it (save)
        # Task files the last load_all() could not read, by path, with why:
        # the slave's status shows them until someone deals with them.
        self.unreadable: dict[Path, str] = {}

    def ensure(self) -> "Spool":
        for folder in (self.archives, self.incoming, self.unpacked, self.tasks, self.results):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.held.is_dir():
            self._adopt_unmarked_archives()
        return self

    def _adopt_unmarked_archives(self) -> None:
        """A spool from before the marks (release 0.1.0): its archives came from
        masters with no key of their own, who can read the whole spool anyway;
        they stay theirs (no re-upload). A master on a key sends them once more."""
        for entry in os.scandir(self.archives):
            if entry.name.endswith(".tar") and not entry.name.startswith("."):
                self._hold(entry.name.removesuffix(".tar"), UNBOUND_FOLDER)
        self.held.mkdir(mode=0o700, exist_ok=True)

    # ----- problems that make the slave unavailable ------------------------------

    def problem(self, min_free_mb: int) -> str | None:
        """Why this spool cannot take work now (read-only, full), or None."""
        try:
            self.ensure()
            probe = self.root / f".probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"x")
            probe.unlink()
        except OSError as exc:
            return f"cannot write to the spool {self.root}: {exc.strerror or exc}"
        free_mb = shutil.disk_usage(self.root).free // (1 << 20)
        if free_mb < min_free_mb:
            return f"only {free_mb} MB free under {self.root} (needs {min_free_mb} MB)"
        return None

    # ----- archives ----------------------------------------------------------------

    def archive_path(self, sha: str) -> Path:
        return self.archives / f"{sha}.tar"

    def has_archive(self, sha: str) -> bool:
        return self.archive_path(sha).is_file()

    def holds(self, sha: str, folder: str) -> bool:
        """Whether master ``folder`` may use archive ``sha``: it is here and that
        master uploaded it. Telling a master of an archive another master sent
        would let it test guesses at their files by hash; each master sends each
        archive once, and the slave keeps one copy."""
        return self.has_archive(sha) and (self.held / folder / sha).is_file()

    def _hold(self, sha: str, folder: str) -> None:
        marks = self.held / folder
        marks.mkdir(mode=0o700, parents=True, exist_ok=True)
        (marks / sha).touch()

    def master_folders(self, folder: str) -> tuple[Path, Path]:
        """One master's upload and results folders (made if missing)."""
        incoming, results = self.incoming / folder, self.results / folder
        if folder not in self._made or not (incoming.is_dir() and results.is_dir()):  # per task: stat, not mkdir
            for path in (incoming, results):
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._made.add(folder)
        return incoming, results

    def upload_path(self, sha: str, folder: str) -> Path:
        incoming, _ = self.master_folders(folder)
        return incoming / f".upload-{sha[:16]}-{secrets.token_hex(4)}"

    def accept_upload(self, sha: str, uploaded: Path, folder: str, holder: str | None = None) -> None:
        """Take an upload of master ``folder`` into archives/ if its bytes hash to ``sha``,
        and mark the archive as held by ``holder`` (the master's folder of its tasks,
        by default ``folder``). A copy already here stays as it is (same bytes).

        The bytes are copied into a file only the slave can reach, and the copy
        is what is hashed, kept and unpacked: the master (or another) may still
        hold an SFTP write handle on the upload and write after the check."""
        if uploaded.parent != self.incoming / folder or not uploaded.name.startswith(".upload-"):
            raise ChecksumMismatchError(f"{uploaded} is not an upload slot of this master")
        try:
            actual, copy = _copy_hashing(uploaded, self.archives)
        finally:
            uploaded.unlink(missing_ok=True)
        if actual != sha:
            copy.unlink(missing_ok=True)
            raise ChecksumMismatchError(f"upload hashes to {actual[:12]}…, not {sha[:12]}… (damaged in transit)")
        if self.has_archive(sha):
            copy.unlink()  # another master's upload of the same bytes: its unpacked copy serves both
        else:
            os.replace(copy, self.archive_path(sha))
        self._hold(sha, holder or folder)

    # ----- tasks -----------------------------------------------------------------

    def task_dir(self, token: str) -> Path:
        return self.tasks / token

    def save(self, task: SpoolTask, *, first: bool = False) -> None:
        """Write the task's record. ``first``: its first save, into a task folder
        just made: written in place when no record is there (see :func:`write_new_json`).
        Later saves append what changed since this engine last wrote it (a task's
        ``params`` never change); a record it did not write, or an append that
        failed half-way, is rewritten whole."""
        # Shallow: the record is encoded at once (asdict would deep-copy the parameters).
        data = {"format": TASK_FORMAT, **{f.name: getattr(task, f.name) for f in fields(task)}}
        if task.results_path and Path(task.results_path).is_relative_to(self.root):
            data["results_path"] = Path(task.results_path).relative_to(self.root).as_posix()
        path, token = self.task_dir(task.token) / "task.json", task.token
        written = self._written.get(token)
        kept = {k: v for k, v in data.items() if k != "params"}
        if first:
            try:
                write_new_json(path, data)
                self._written[token] = kept
                return
            except FileExistsError:
                pass  # a record this start replaces (an empty one, of a start that never completed)
        elif written is not None:
            changes = {k: v for k, v in kept.items() if written.get(k, _UNSET) != v}
            if not changes:
                return
            try:
                append_json_line(path, changes)
                self._written[token] = kept
                return
            except OSError:
                self._written.pop(token, None)  # perhaps half a line there: rewritten whole below
        write_json_atomically(path, data)
        self._written[token] = kept

    def load_all(self) -> list[SpoolTask]:
        """Every task this spool holds. A file that cannot be read is logged
        and listed in :attr:`unreadable`, and left as it is. (A task folder
        without task.json, or with an empty one (:func:`write_new_json`), is a
        start that never completed: nothing was promised, no process started.)"""
        found = []
        self.unreadable = {}
        for path in sorted(self.tasks.glob("*/task.json")):
            try:
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    log.info("%s is empty: a start that never completed", path)
                    continue
                found.append(self.load(path))
            except (OSError, UnreadableTaskFile) as exc:
                log.error("cannot read the task file %s, left as it is: %s", path, exc)
                self.unreadable[path] = str(exc)
        return found

    def load(self, path: Path) -> SpoolTask:
        """One task file, upgraded from an older format as it is read."""
        try:
            text = read_regular(path, _TASK_FILE_MAX + 1)  # slave-written, but never followed
            if len(text) > _TASK_FILE_MAX:
                raise UnreadableTaskFile(f"larger than a task record can be ({_TASK_FILE_MAX} bytes)")
            data = read_json_lines(text)
        except NotPlainFile as exc:
            raise UnreadableTaskFile(str(exc)) from None
        except ValueError as exc:
            raise UnreadableTaskFile(f"not valid JSON ({exc})") from None
        version = data.pop("format", 0)
        if not isinstance(version, int) or version < 0:
            raise UnreadableTaskFile(f"no task format is called {version!r}")
        if version > TASK_FORMAT:
            raise UnreadableTaskFile(f"written in task format {version} by a newer SpareCycles (this one reads up "
                                     f"to {TASK_FORMAT}); upgrade SpareCycles on this PC to run or collect it")
        for upgrade in _UPGRADES[version:]:
            data = upgrade(data)
        known = {f.name for f in fields(SpoolTask)}
        if data.keys() - known:
            raise UnreadableTaskFile(f"unknown fields {', '.join(sorted(data.keys() - known))} "
                                     f"in task format {version}")
        problem = refusal(data, TASK_FIELDS)
        if problem:
            raise UnreadableTaskFile(f"incomplete or malformed: {problem}")
        task = SpoolTask(**data)
        if task.results_path:
            task.results_path = str(self.root / task.results_path)  # an absolute path stays as it is
        return task

    def results_of(self, task: SpoolTask) -> Path:
        """The results folder of the task's master."""
        return self.master_folders(folder_of(task.master))[1]

    def remove(self, task: SpoolTask) -> None:
        token = task.token
        self.packed.pop(token, None)
        self._written.pop(token, None)
        self.trash.discard(self.task_dir(token))
        for results in (self.results / folder_of(task.master), self.results):  # and where older spools kept them
            (results / f"{token}.tar").unlink(missing_ok=True)
            self.trash.discard(results / token)

    def stage_results(self, task: SpoolTask) -> Path:
        """For the master's own cores: the results as a folder, moved (not
        copied) into ``results/<token>/``, laid out like an unpacked archive,
        for the master to rename into place. No tar, no copy, no checksum: the
        master and this engine are one process."""
        run_dir = self.task_dir(task.token)
        target = self.results_of(task) / task.token
        target.mkdir(parents=True, exist_ok=True)
        produced = run_dir / "work" / "results"
        if produced.is_dir() and not produced.is_symlink():
            os.replace(produced, target / "results")
        for name in ("stdout.txt", "stderr.txt"):
            if (run_dir / name).is_file():
                os.replace(run_dir / name, target / name)
        for path in debug_files(run_dir / "tmp"):
            os.replace(path, target / path.name)
        return target

    def pack_results(self, task: SpoolTask, max_bytes: int) -> tuple[Path, str, int]:
        """Pack the task's ``results/`` and logs into ``results/<token>.tar``.

        What the task made is hostile (:mod:`trayapp.run.taskfiles`): only
        regular files and folders go in, none reached through a link; a link,
        FIFO, socket or device anywhere in ``results/`` refuses the whole
        results (:class:`NotPlainFile`, a ValueError to the engine's eyes:
        the task's fault), as the master refuses them in an archive. Raises
        ``ValueError`` when the results and logs together exceed ``max_bytes``.
        """
        with open_folder(self.task_dir(task.token)) as run_fd:
            total = sum(size for size in self._walk_results(run_fd, lambda _n, fd: os.fstat(fd).st_size))
            if total > max_bytes:
                raise ValueError(f"results of {total / 1e6:.1f} MB exceed this host's cap of "
                                 f"{max_bytes / 1e6:.0f} MB")
            target = self.results_of(task) / f"{task.token}.tar"
            tmp = target.with_name(f".{target.name}.partial")
            try:
                with open(tmp, "wb") as fh:
                    # Hashed as it is written, and kept when small enough to ride in the
                    # "finished" message: the archive is not read back.
                    out = _HashingWriter(fh, keep_up_to=INLINE_RESULTS_MAX)
                    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
                        packed = sum(self._walk_results(run_fd, lambda name, fd: _add_open_file(tar, name, fd)))
                        if packed > max_bytes:  # grown since it was measured: a task still writing
                            raise ValueError(f"results grew past this host's cap of {max_bytes / 1e6:.0f} MB "
                                             "while they were packed")
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)  # a full disk must not also keep the half it managed to write
                raise
        self._keep_packed(task.token, out.kept)
        return target, out.sha256.hexdigest(), out.size

    def _keep_packed(self, token: str, data: bytes | None) -> None:
        self.packed.pop(token, None)
        if data is not None:
            self.packed[token] = data
            while len(self.packed) > _PACKED_KEPT:  # their masters away: read from the file when they are back
                self.packed.pop(next(iter(self.packed)))

    def packed_results(self, task: SpoolTask) -> bytes | None:
        """The bytes of the task's results archive if it was small and packed by
        this engine (kept since), taken: the caller sends them once."""
        return self.packed.pop(task.token, None)

    @staticmethod
    def _walk_results(run_fd: int, each) -> Iterator[int]:
        """``each(name, fd)`` for the task's logs and every file of its ``results/``
        (the cap is on all that travels back), opened without following links."""
        for name in ("stdout.txt", "stderr.txt"):
            try:
                fd = open_regular(name, dir_fd=run_fd)
            except FileNotFoundError:
                continue
            try:
                yield each(name, fd)
            finally:
                os.close(fd)
        results_fd = None
        try:
            with open_folder("work", dir_fd=run_fd, shown="the task's folder") as work_fd:
                results_fd = open_folder_fd("results", dir_fd=work_fd, shown="results")
        except (FileNotFoundError, NotADirectoryError):
            pass  # no results (a file called "results" is none either): only the logs travel
        if results_fd is not None:
            try:
                for name, fd in plain_files(results_fd, "results"):
                    yield each(name, fd)
            finally:
                os.close(results_fd)
        yield from Spool._walk_debug_files(run_fd, each)

    @staticmethod
    def _walk_debug_files(run_fd: int, each) -> Iterator[int]:
        """``each(name, fd)`` for Brian's debug files in the task's TMPDIR (``tmp``),
        regular files only: a link or anything else a task made there is skipped."""
        try:
            with open_folder("tmp", dir_fd=run_fd, shown="the task's temporary folder") as tmp_fd:
                for name in debug_file_names(os.listdir(tmp_fd)):
                    try:
                        fd = open_regular(name, dir_fd=tmp_fd)
                    except (OSError, ValueError):
                        continue
                    try:
                        yield each(name, fd)
                    finally:
                        os.close(fd)
        except (OSError, ValueError):
            return  # no temporary folder (or not a plain one): nothing to bring back


_UNSET = object()

# Small results archives kept in memory from packing to the "finished" message.
_PACKED_KEPT = 64


class _HashingWriter:
    """A binary file that hashes and counts what is written through it to
    ``fh``, and keeps it while it is at most ``keep_up_to`` bytes (``kept``)."""

    def __init__(self, fh, keep_up_to: int):
        self.fh, self.sha256, self.size, self.keep_up_to = fh, hashlib.sha256(), 0, keep_up_to
        self._parts: list[bytes] | None = []

    def write(self, data) -> int:
        written = self.fh.write(data)
        self.sha256.update(data)
        self.size += len(data)
        if self._parts is not None and self.size <= self.keep_up_to:
            self._parts.append(bytes(data))
        else:
            self._parts = None
        return written

    def tell(self) -> int:
        return self.size

    @property
    def kept(self) -> bytes | None:
        return None if self._parts is None else b"".join(self._parts)


def _add_open_file(tar: tarfile.TarFile, name: str, fd: int) -> int:
    """Add the regular file open at ``fd`` as ``name``; its size."""
    st = os.fstat(fd)
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), stat.S_IMODE(st.st_mode) & 0o755
    with os.fdopen(os.dup(fd), "rb") as fh:
        tar.addfile(info, fh)
    return st.st_size


def _copy_hashing(source: Path, folder: Path) -> tuple[str, Path]:
    """Copy ``source`` (a regular file, never followed if a link) into a new
    private file in ``folder``; the sha256 of the bytes written, and the copy."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise ChecksumMismatchError(f"{source.name} is not a regular file")
        out_fd, tmp = tempfile.mkstemp(prefix=".verify-", dir=folder)
        digest = hashlib.sha256()
        try:
            with os.fdopen(out_fd, "wb") as out:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return digest.hexdigest(), Path(tmp)


# What Brian writes to the temporary folder when a run fails, and asks users to
# send with a bug report: it travels back with the task's logs, since the
# task's folder (its TMPDIR among it) is deleted once the results are packed.
DEBUG_FILE_PATTERNS = ("brian_debug_*.log", "brian_script_*.py")


def debug_file_names(names: list[str], most: int = 20) -> list[str]:
    """Of the names in a task's temporary folder, Brian's debug files (at most ``most``)."""
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in DEBUG_FILE_PATTERNS))[:most]


def debug_files(folder: Path) -> list[Path]:
    """The debug files in the task's temporary folder: regular files only (by
    lstat: a task-made link is never followed)."""
    try:
        names = debug_file_names(os.listdir(folder))
    except OSError:
        return []
    found = []
    for name in names:
        try:
            if stat.S_ISREG(os.lstat(folder / name).st_mode):
                found.append(folder / name)
        except OSError:
            continue
    return found
