"""The user's verbs as the window calls them: the same functions the CLI runs.

Each takes the :class:`~sparecycles_ui.workers.PerThreadApp` and runs on a worker thread
(through the executor), so it may block on the queue, the disk or SSH. The
host verbs call the hosts service (:class:`trayapp.master.hosts.Hosts`) that
``sparecycles hosts ...`` calls, so both check and do exactly the same things.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trayapp.job.submit import Submission
from trayapp.master.hostkeys import PresentedKey
from trayapp.master.results import LOG_FILES
from trayapp.master.resulttable import ResultRow, result_rows
from trayapp.status import TaskStatus
from sparecycles_ui.workers import PerThreadApp

LOG_TAIL_CHARS = 20_000


def submit(apps: PerThreadApp, folder: str, *, params: str | None = None, main: str | None = None,
           start_dispatcher: bool = False, **options) -> Submission:
    """``sparecycles submit``, through the jobs service. In master mode the app's
    own dispatcher runs the job; otherwise (``start_dispatcher``) the service starts
    a background one, as the CLI does. ``options``: the submit dialog's name,
    time_limit_s and retries."""
    return apps.get().jobs().submit(folder, start=start_dispatcher, params=params, main=main, **options).submission


def cancel(apps: PerThreadApp, job_id: str) -> int:
    return apps.get().jobs().cancel(job_id)


def folder_change(apps: PerThreadApp, job_id: str) -> str | None:
    """What changed in the job's folder since submit ("main.py changed"), or None:
    for *Retry* to offer running the folder as it is now (``repack``)."""
    app = apps.get()
    return app.jobs().folder_change(app.store.job(job_id))


def retry(apps: PerThreadApp, job_id: str, *, repack: bool = False, start_dispatcher: bool = True) -> int:
    """``sparecycles retry [--repack]``; starts a dispatcher if none runs (unless
    not ``start_dispatcher``). How many tasks were queued."""
    return apps.get().jobs().retry(job_id, repack=repack, start=start_dispatcher).requeued


def remove(apps: PerThreadApp, job_id: str, *, results: bool = False) -> str:
    """``sparecycles remove [--results]``: forget a finished job; returns its results folder."""
    return apps.get().jobs().remove(job_id, results=results).job.results_dir


@dataclass(frozen=True)
class FailedTask:
    idx: int
    message: str
    log: str  # the task's stderr (tail), if it came back
    log_file: str | None


def failed_tasks(apps: PerThreadApp, job_id: str) -> list[FailedTask]:
    store = apps.get().store
    job = store.job(job_id)
    found = []
    for task in store.tasks(job.seq):
        if task.status is not TaskStatus.FAILED:
            continue
        log, log_file = "", None
        for name in reversed(LOG_FILES):  # stderr first: that is where tracebacks go
            path = Path(job.results_dir) / str(task.idx) / name
            if path.is_file():
                log_file = str(path)
                text = path.read_text(encoding="utf-8", errors="replace")
                log = text[-LOG_TAIL_CHARS:]
                if log.strip():
                    break
        found.append(FailedTask(task.idx, task.message or "", log, log_file))
    return found


def result_table(apps: PerThreadApp, job_id: str) -> list[ResultRow]:
    """The job's tasks with their parameters and the scalars of their JSON results (the plot's data)."""
    store = apps.get().store
    return result_rows(store, store.job(job_id))


def add_host(apps: PerThreadApp, name: str, kind: str, options: dict) -> str:
    """``sparecycles hosts add NAME --kind KIND`` with the kind's options (dest -> value)."""
    apps.get().hosts().add(name, kind, options)
    return name


def remove_host(apps: PerThreadApp, name: str) -> str:
    apps.get().hosts().remove(name)
    return name


def host_key(apps: PerThreadApp, name: str) -> PresentedKey:
    """Fetch the key a host presents, for the trust dialog to show."""
    return apps.get().hosts().presented_key(name)


def trust_host(apps: PerThreadApp, name: str, fingerprint: str, *, replace: bool = False) -> str:
    """Trust the key only if it still has the fingerprint the user saw (the CLI's --fingerprint)."""
    apps.get().hosts().trust_by_fingerprint(name, fingerprint, replace=replace)
    return name
