"""The jobs service: the user's verbs on a job, shared by the CLI, the window
and the Python API: submit, cancel, retry (with the folder as it was at
submit, or packed again), remove, and making sure a dispatcher runs.

Like :mod:`trayapp.master.hosts`, these check the input, raise
:class:`UserError` naming the problem and the fix, print nothing, and start a
dispatcher when work was queued and none runs, here and nowhere else (each
caller used to do it, and a retry from the window forgot: its tasks sat queued).
What a job looks like to the user is :mod:`trayapp.master.jobview`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from trayapp.master.store import JobRecord, Store
from trayapp.wire.archive import PackedArchive


class Submission(Protocol):
    """What the folder side made of a submitted folder (trayapp.job.submit.Submission)."""

    job: JobRecord
    notes: tuple[str, ...]


class JobFolders(Protocol):
    """The user's side of a job's folder (trayapp.job.refolder, wired in trayapp.app):
    the queue's side knows nothing of folders, parameter files or manifests."""

    def submit(self, store: Store, folder: str | Path, **options) -> Submission: ...

    def change(self, job: JobRecord) -> str | None: ...

    def repack(self, job: JobRecord) -> tuple[PackedArchive, tuple[str, ...]]: ...


@dataclass(frozen=True)
class Submitted:
    submission: Submission  # the job, the folder's files, the archive's size, notes for the user
    dispatcher_pid: int | None  # the dispatcher this submit started; None: one ran already, or not asked

    @property
    def job(self) -> JobRecord:
        return self.submission.job


@dataclass(frozen=True)
class RetryResult:
    job: JobRecord
    requeued: int
    # What differs between the job's folder now and what was packed at submit
    # ("main.py changed"), None when nothing does; with ``repacked`` the tasks run it.
    folder_change: str | None
    repacked: bool = False
    dispatcher_pid: int | None = None

    def describe(self) -> str:
        """What ``retry`` prints."""
        text = f"queued {self.requeued} failed or cancelled task{'s' if self.requeued != 1 else ''} " \
               f"of job {self.job.id} again"
        if self.repacked:
            text += f", with the folder as it is now ({self.folder_change or 'unchanged'})"
        return text

    def warning(self) -> str | None:
        """Said (on stderr) when the tasks rerun the old code though the folder changed."""
        if self.repacked or not self.folder_change:
            return None
        return (f"the job's folder {self.job.folder} changed since it was submitted ({self.folder_change}); "
                f"this retry runs the files packed at submit\n"
                f"  fix: sparecycles retry {self.job.id} --repack  (packs the folder as it is now)")


@dataclass(frozen=True)
class Removed:
    job: JobRecord
    results_removed: bool


class Jobs:
    def __init__(self, store: Store, folders: JobFolders, ensure_dispatcher: Callable[[], int | None]):
        self.store = store
        self._folders = folders
        self._ensure_dispatcher = ensure_dispatcher

    def ensure_dispatcher(self) -> int | None:
        """Start a background dispatcher for this queue unless one runs; its pid, or None."""
        return self._ensure_dispatcher()

    def submit(self, folder: str | Path, *, start: bool = True, **options) -> Submitted:
        """Queue ``folder`` as a job (``options``: trayapp.job.submit.submit_job's:
        params, param_sets, name, main, time_limit_s, retries, follow_links) and,
        with ``start``, make sure a dispatcher runs it. Raises :class:`UserError`
        before anything is queued when the folder or its parameters are wrong."""
        submission = self._folders.submit(self.store, folder, **options)
        return Submitted(submission, self.ensure_dispatcher() if start else None)

    def cancel(self, ref: str) -> int:
        """Cancel every unfinished task (the dispatcher kills running ones); how many."""
        return self.store.cancel_job(ref)

    def retry(self, ref: str, *, repack: bool = False, indexes: list[int] | None = None,
              start: bool = True) -> RetryResult:
        """Queue the job's failed and cancelled tasks (or those of them in
        ``indexes``) again, with fresh retries; ``repack``: with the job folder
        packed as it is now (same job id; done tasks and their results stay).
        ``start=False``: only queue them (the user paused this master in the tray)."""
        job = self.store.job(ref)
        change = self.folder_change(job)
        if repack:
            self._repack(job)
        self.store.forget_declines(job_seq=job.seq)  # what hosts refused may suit them now
        n = self.store.retry_job(job.id, indexes)
        pid = self.ensure_dispatcher() if n and start else None
        return RetryResult(self.store.job(job.id), n, change, repack, pid)

    def folder_change(self, job: JobRecord) -> str | None:
        """What changed in the job's folder since it was packed, in a few words, or None."""
        return self._folders.change(job)

    def _repack(self, job: JobRecord) -> None:
        archive, requires = self._folders.repack(job)
        self.store.replace_archive(job.seq, archive.sha256, str(archive.path), requires)

    def remove(self, ref: str, *, results: bool = False) -> Removed:
        """Forget a finished job; its results folder stays unless ``results``."""
        job = self.store.remove_job(ref)
        if not self.store.archive_in_use(job.archive_path):
            Path(job.archive_path).unlink(missing_ok=True)
        removed = False
        if results and Path(job.results_dir).is_dir():
            shutil.rmtree(job.results_dir)
            removed = True
        return Removed(job, removed)
