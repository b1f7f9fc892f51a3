"""A job's tasks as the window's task view shows them, and each task's output.

Qt-free: the view's model gets plain :class:`TaskRow` rows read on a worker
thread (one query for the whole job, :meth:`Store.task_table`), so a sweep of
10,000 tasks opens without a widget or a query per row. A task's output is
read from where it is now: its results folder once it came back, this PC's
own spool while it runs here; a task running on another PC says where it is.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from trayapp.home import Home
from trayapp.master.results import LOG_FILES
from trayapp.master.store import JobRecord, Store
from trayapp.status import TaskStatus

TAIL_BYTES = 16_000  # what the view shows of a log: the end, where tracebacks are
LOCAL_HOST = "local"


@dataclass(frozen=True)
class TaskRow:
    idx: int
    params: dict
    status: str  # a TaskStatus value
    host: str | None
    attempts: int
    started: float | None  # of the latest attempt
    ended: float | None
    exit_code: int | None
    message: str | None
    token: str | None  # the latest attempt's, naming its folder on the host

    def elapsed_s(self, now: float) -> float | None:
        if self.started is None:
            return None
        return max(0.0, (self.ended or now) - self.started)

    @property
    def failure(self) -> str | None:
        """How it failed, for grouping identical failures: the exit code and the message's last line."""
        if self.status != TaskStatus.FAILED.value:
            return None
        last = (self.message or "").strip().splitlines()[-1:] or ["no message"]
        code = "" if self.exit_code is None else f"exit code {self.exit_code}: "
        return code + last[0]


def task_rows(store: Store, job_seq: int) -> list[TaskRow]:
    rows = []
    for r in store.task_table(job_seq):
        params = json.loads(r["params"])
        rows.append(TaskRow(r["idx"], params if isinstance(params, dict) else {"params": params}, r["status"],
                            r["host"], r["attempts"], r["started"], r["ended"], r["exit_code"], r["message"],
                            r["token"]))
    return rows


def param_names(rows: list[TaskRow]) -> list[str]:
    """Every parameter name, in the order the tasks first use them: one column each."""
    return list(dict.fromkeys(name for row in rows for name in row.params))


def failure_groups(rows: list[TaskRow]) -> list[tuple[str, list[int]]]:
    """Failed tasks grouped by identical failure, largest group first: [(failure, [task index, ...])]."""
    groups: dict[str, list[int]] = {}
    for row in rows:
        if row.failure is not None:
            groups.setdefault(row.failure, []).append(row.idx)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


@dataclass(frozen=True)
class TaskLog:
    where: str  # a sentence: where the output shown comes from
    stdout: str
    stderr: str
    folder: str | None  # the task's results folder, once it exists


def read_tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The end of a log file; never follows a link (a task may have made one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device is not a log
            return ""
        fh.seek(max(0, info.st_size - limit))
        return fh.read().decode("utf-8", errors="replace")


def task_log(home: Home, job: JobRecord, row: TaskRow) -> TaskLog:
    folder = Path(job.results_dir) / str(row.idx)
    if row.status in (TaskStatus.RUNNING.value, TaskStatus.DISPATCHED.value):
        if row.host == LOCAL_HOST and row.token:
            live = home.local_spool_dir / "tasks" / row.token
            return TaskLog(f"running on this PC; its output so far (from {live})",
                           *(read_tail(live / name) for name in LOG_FILES), None)
        return TaskLog(f"running on {row.host or 'a host'}; its output comes back when it ends", "", "", None)
    if folder.is_dir():
        return TaskLog(f"from {folder}", *(read_tail(folder / name) for name in LOG_FILES), str(folder))
    text = {TaskStatus.QUEUED.value: "queued: no output yet"}.get(row.status, f"{row.status}: no output came back")
    return TaskLog(text + (f" ({row.message})" if row.message else ""), "", "", None)
