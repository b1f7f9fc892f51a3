"""The window's verbs beyond :mod:`sparecycles_ui.verbs`: a job's tasks, one task's
output, retrying some tasks, testing a host.

Like :mod:`sparecycles_ui.verbs` they take the :class:`~sparecycles_ui.workers.PerThreadApp` and run
on a worker thread; the work is :mod:`trayapp.master.tasktable`'s, the
store's and the hosts service's, the same the CLI calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from trayapp.errors import UserError
from trayapp.master.store import JobRecord
from trayapp.master.tasktable import TaskLog, TaskRow, task_log, task_rows
from sparecycles_ui.workers import PerThreadApp


@dataclass(frozen=True)
class JobTasks:
    job: JobRecord
    rows: list[TaskRow]


def job_tasks(apps: PerThreadApp, job_id: str) -> JobTasks:
    store = apps.get().store
    job = store.job(job_id)
    return JobTasks(job, task_rows(store, job.seq))


def log_of(apps: PerThreadApp, job: JobRecord, row: TaskRow) -> TaskLog:
    return task_log(apps.get().home, job, row)


def retry_tasks(apps: PerThreadApp, job_id: str, indexes: list[int], *, start_dispatcher: bool = True) -> int:
    """Queue these failed or cancelled tasks again (the others are left as they are);
    through the jobs service, so a dispatcher starts if none runs (unless not ``start_dispatcher``)."""
    return apps.get().jobs().retry(job_id, indexes=indexes, start=start_dispatcher).requeued


@dataclass(frozen=True)
class HostTest:
    lines: list[str]  # "label: what was found", as `sparecycles hosts test` prints them
    problem: str | None  # the step that failed, with its fix; None: every step passed


def test_host(apps: PerThreadApp, name: str) -> HostTest:
    """``sparecycles hosts test NAME``: its lines, and the problem it stopped at."""
    lines = []
    try:
        for finding in apps.get().hosts().test(name):
            lines.append(f"{finding.label}: {finding.text}")
    except UserError as exc:
        return HostTest(lines, str(exc))
    return HostTest(lines, None)
