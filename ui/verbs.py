"""The user's verbs as the window calls them: the same functions the CLI runs.

Each takes the :class:`~ui.workers.PerThreadApp` and runs on a worker thread
(through the executor), so it may block on the queue, the disk or SSH. The
host verbs call ``trayapp.cli.hosts``'s handlers themselves, so the window and
``sparecycles hosts ...`` check and do exactly the same things.
"""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

from trayapp.cli import hosts as hostcli
from trayapp.job.submit import Submission, submit_job
from trayapp.master.results import LOG_FILES
from trayapp.master.resulttable import ResultRow, result_rows
from trayapp.status import TaskStatus
from ui.workers import PerThreadApp

LOG_TAIL_CHARS = 20_000


def submit(apps: PerThreadApp, folder: str, *, params: str | None = None, main: str | None = None,
           start_dispatcher: bool = False) -> Submission:
    """``sparecycles submit``. In master mode the app's own dispatcher runs the
    job; otherwise (``start_dispatcher``) a background one is started, as the CLI does."""
    app = apps.get()
    submission = submit_job(app.store, app.home, app.config, folder, params=params, main=main)
    if start_dispatcher:
        app.ensure_dispatcher()
    return submission


def cancel(apps: PerThreadApp, job_id: str) -> int:
    return apps.get().store.cancel_job(job_id)


def retry(apps: PerThreadApp, job_id: str) -> int:
    return apps.get().store.retry_job(job_id)


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


def add_host(apps: PerThreadApp, name: str, address: str, *, port: int = 22, user: str | None = None,
             key: str | None = None, agent_command: str = "sparecycles agent", slots: int | None = None) -> str:
    hostcli.cmd_add(apps.get(), Namespace(name=name, host=address, port=port, user=user or None, key=key or None,
                                          agent_command=agent_command, slots=slots, ask_secret=False))
    return name


def remove_host(apps: PerThreadApp, name: str) -> str:
    hostcli.cmd_remove(apps.get(), Namespace(name=name))
    return name


@dataclass(frozen=True)
class HostKey:
    host: str
    address: str
    port: int
    key_type: str
    fingerprint: str
    known: str  # "new", "trusted" or "changed"


def host_key(apps: PerThreadApp, name: str) -> HostKey:
    """Fetch the key a host presents, for the trust dialog to show."""
    from trayapp.wire.ssh import fingerprint

    host, key, existing = hostcli.presented_key(apps.get(), name)
    state = "new"
    if key.get_name() in existing:
        state = "trusted" if existing[key.get_name()] == key else "changed"
    return HostKey(host.name, host.address, host.port, key.get_name(), fingerprint(key), state)


def trust_host(apps: PerThreadApp, name: str, fingerprint: str, *, replace: bool = False) -> str:
    """Trust the key only if it still has the fingerprint the user saw (the CLI's --fingerprint)."""
    hostcli.cmd_trust(apps.get(), Namespace(name=name, yes=False, fingerprint=fingerprint, replace=replace))
    return name
