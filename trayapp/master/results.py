"""Bringing a task's ``results/`` home.

A finished attempt's ``results/`` folder becomes
``<results root>/<job name>-<job id>/<task index>/``, with the task's
``stdout.txt``, ``stderr.txt`` and ``params.json`` beside what it wrote, and a
hidden ``.sparecycles.json`` recording which attempt produced it.

The task's own files are data, never paths to follow: the master's files
are created with ``O_EXCL | O_NOFOLLOW`` after whatever the task left under
their names is moved aside, and only regular files are ever opened, so a
symlink, hard link or FIFO the task named ``params.json`` or
``.sparecycles.json`` can neither make the master write outside the folder
nor block it.

The move is one ``rename`` of a fully prepared folder, so the results folder
is either absent or complete, and collecting is idempotent: a dispatcher that
crashed between moving the results and recording it in the queue sees its own
marker on restart and only records it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

from trayapp.master.store import Claim

MARKER_FILE = ".sparecycles.json"
LOG_FILES = ("stdout.txt", "stderr.txt")


def results_path(claim: Claim) -> Path:
    return Path(claim.results_dir) / str(claim.idx)


def collected_by(folder: Path) -> int | None:
    """The attempt id that produced a results folder, if it is one of ours."""
    try:
        return int(json.loads(_read_regular_file(folder / MARKER_FILE, limit=1 << 16))["attempt"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_regular_file(path: Path, *, limit: int) -> bytes:
    """The start of a file, if it is a regular one: never follows a link, and
    never waits on a FIFO or device a task left in its place."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _write_new_file(folder: Path, name: str, text: str) -> None:
    """Create ``folder/name`` afresh; whatever the task left there under that
    name (even a link or FIFO) is kept under another name, never written through."""
    path = folder / name
    if os.path.lexists(path):
        os.rename(path, folder / free_name(folder, name))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    with os.fdopen(os.open(path, flags, 0o600), "w", encoding="utf-8") as fh:
        fh.write(text)


def merge_logs(unpacked: Path) -> Path:
    """An attempt's results in the layout of ``unpacked`` (``results/``, what
    the task wrote, beside ``stdout.txt``, ``stderr.txt`` and Brian's debug
    files: the master's own cores leave them so) made into one folder, the
    logs moved in beside what the task wrote; that folder."""
    staging = unpacked / "results"
    staging.mkdir(exist_ok=True)  # a task that wrote nothing is still done
    for name in (*LOG_FILES, *sorted(n for n in os.listdir(unpacked) if is_debug_file(n))):
        source = unpacked / name
        if source.exists():
            os.replace(source, staging / free_name(staging, name))
    return staging


def place(claim: Claim, staging: Path, *, exit_code: int | None, host: str) -> Path:
    """Move an attempt's results and logs, gathered in ``staging`` on this disk
    (:func:`merge_logs`, :func:`trayapp.master.incoming.unpack_results`), into
    the job's results folder, with the parameters and the marker beside them."""
    destination = results_path(claim)
    if collected_by(destination) == claim.attempt_id:
        return destination  # collected before a crash; nothing left to move
    if staging.parent != destination.parent:  # else it exists: the staging folder was made in it
        destination.parent.mkdir(parents=True, exist_ok=True)
    if not _is_regular_file(staging / "params.json"):  # the task's own copy, if it kept one
        _write_new_file(staging, "params.json", json.dumps(claim.params, indent=2) + "\n")
    marker = {"job": claim.job_id, "task": claim.idx, "attempt": claim.attempt_id, "host": host,
              "exit_code": exit_code, "collected": time.time()}
    _write_new_file(staging, MARKER_FILE, json.dumps(marker, indent=2) + "\n")
    if destination.exists():
        # An earlier attempt's output (the task failed, then the user retried it):
        # keep it under another name rather than overwrite anything.
        destination.rename(destination.parent / free_name(destination.parent, f"{destination.name}.previous"))
    _move_atomically(staging, destination)
    return destination


def paths_in_job_folder(text: str, token: str, folder: str, task_results: str) -> str:
    """``text`` (a traceback) with the attempt's folder on the host
    (``.../tasks/<token>/work/``, where the job folder was unpacked) replaced by
    the user's job folder, and its temporary folder (``.../tasks/<token>/tmp/``,
    where Brian leaves its debug files) by the task's results folder, where those
    files come back: paths the user can open. A task forked warm ran in its warm
    parent's box (``.../warm/<pid>-<n>/work/task/`` and ``.../warm/<pid>-<n>/tmp/``,
    :mod:`trayapp.run.warm`): the same."""
    for part, replacement in (("work", folder.rstrip("/")), ("tmp", task_results.rstrip("/"))):
        warm_part = "work/task" if part == "work" else part
        tail = r"(?:/" + re.escape(token) + "/" + part + r"|/warm/\d+-\d+/" + warm_part + r")(?=/|\b)"
        # In quotes (a traceback's File "..."), the path may hold spaces; bare, it ends at one.
        text = re.sub(r'(?<=")[^"\n]*' + tail, lambda _m: replacement, text)
        text = re.sub(r"""[^\s"'<>]*""" + tail, lambda _m: replacement, text)
    return text


def is_debug_file(name: str) -> bool:
    """Brian's debug files of a failed run, packed beside the logs (trayapp.slave.spool.debug_files)."""
    return (name.startswith("brian_debug_") and name.endswith(".log")) or \
        (name.startswith("brian_script_") and name.endswith(".py"))


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def free_name(folder: Path, name: str) -> str:
    """``name``, or ``name`` with a suffix if the task already used it."""
    if not os.path.lexists(folder / name):
        return name
    stem, dot, suffix = name.lstrip(".").partition(".")
    stem = name[: len(name) - len(name.lstrip("."))] + stem
    n = 1
    while os.path.lexists(folder / f"{stem}.sparecycles{n}{dot}{suffix}"):
        n += 1
    return f"{stem}.sparecycles{n}{dot}{suffix}"


def _move_atomically(source: Path, destination: Path) -> None:
    try:
        os.rename(source, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # the results root is on another file system
            raise
        partial = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
        try:
            shutil.copytree(source, partial, dirs_exist_ok=True)
            os.rename(partial, destination)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        shutil.rmtree(source, ignore_errors=True)
