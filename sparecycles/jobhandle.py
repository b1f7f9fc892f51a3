"""Jobs from Python: submit a folder, follow it, gather what its tasks wrote.

The same queue as the command line and the tray window (the home that
``SPARECYCLES_HOME`` or the platform's folders name), through the same
functions: a job submitted here shows in ``sparecycles status`` and in the
window, and ``job()`` finds one submitted there.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from sparecycles.errors import JobCancelled, WaitTimeout
from sparecycles.paramsets import ParamsArgument, param_sets_from
from sparecycles.results import TaskResult, results_frame, task_result
from trayapp.app import App
from trayapp.errors import UserError
from trayapp.job.manifest import parse_duration
from trayapp.master.jobview import JobView, view_of
from trayapp.master.progress import ProgressBar, ProgressLines, wait_for_job
from trayapp.master.resulttable import result_rows
from trayapp.master.store import JobRecord
from trayapp.master.waits import Wait
from trayapp.status import JobStatus


@dataclass(frozen=True)
class Summary:
    """A job's state and task counts at one moment; ``str()`` reads like ``status``.
    The counts are the job's one view (:mod:`trayapp.master.jobview`), as
    ``sparecycles status`` and the window show them."""

    id: str
    name: str
    state: JobStatus
    total: int
    done: int
    failed: int
    cancelled: int
    running: int  # in flight: claimed by a host (dispatched) or running there
    queued: int
    counts: str  # e.g. "4/6 done, 2 running"
    results_folder: Path
    notes: tuple[str, ...] = ()  # what submit had to say (e.g. a resource request not acted on)
    # Why its queued tasks do not run, in words ("declined by lab-07: ...; lab-08 paused until 14:00")
    waiting: str | None = None
    left_s: float | None = None  # estimated seconds until the last task ends, at the pace so far

    @classmethod
    def of(cls, view: JobView, notes: tuple[str, ...] = ()) -> "Summary":
        return cls(view.id, view.name, view.status, view.total, view.done, view.failed, view.cancelled,
                   view.in_flight, view.queued, view.describe_counts(), Path(view.results_dir), notes, view.why,
                   view.left_s(time.time()))

    @property
    def ok(self) -> bool:
        return self.state is JobStatus.DONE

    def __str__(self) -> str:
        text = f"job {self.id} ({self.name}): {self.state.value}, {self.counts}"
        return text + (f"; waits: {self.waiting}" if self.waiting else "")


class Job:
    """A job in the queue. Cheap to make; every method reads the queue afresh."""

    def __init__(self, app: App, record: JobRecord, notes: tuple[str, ...] = ()):
        self._app = app
        self._record = record
        self._notes = notes

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def results_folder(self) -> Path:
        """Where task N's results come back: ``results_folder / str(N)``."""
        return Path(self._record.results_dir)

    def __len__(self) -> int:
        return self._record.total

    def __repr__(self) -> str:
        return f"<sparecycles.Job {self.id} {self.name!r}: {self._refresh().status.value}>"

    def _refresh(self) -> JobRecord:
        self._record = self._app.store.job(self.id)
        return self._record

    def status(self) -> JobStatus:
        """``"queued"``, ``"running"``, ``"done"``, ``"failed"`` or ``"cancelled"`` (a str enum);
        :meth:`waiting` says why a job that is not running waits, ``summary()`` has both."""
        return self._refresh().status

    def waiting(self) -> list[Wait]:
        """Why the job's queued tasks do not run now, each with a ``code`` (a
        :class:`WaitCode`: ``declined``, ``paused``, ...) and ``words`` for people;
        empty when nothing holds them up."""
        return list(self._view().waits)

    def _view(self) -> JobView:
        return view_of(self._app.store, self._refresh())

    def summary(self) -> Summary:
        return Summary.of(self._view(), self._notes)

    def wait(self, timeout: float | str | None = None, progress: bool = True) -> Summary:
        """Block until every task has ended; returns the summary (``summary.ok``
        is true when all are done). ``timeout`` is seconds or text like ``"10m"``.

        Shows a progress bar on stderr (a widget in Jupyter) unless ``progress``
        is false. Raises :class:`WaitTimeout` when ``timeout`` passes first
        (the job goes on) and :class:`JobCancelled` if the job was cancelled.
        """
        seconds = as_seconds(timeout, "timeout")
        job = self._view()
        if job.status is JobStatus.CANCELLED:
            raise self._cancelled(job)
        if not job.is_final:
            self._app.jobs().ensure_dispatcher()  # the background one exits after a minute with nothing to do
        started = time.monotonic()
        job = wait_for_job(self._app.store, self.id, timeout=seconds, show=progress, display_for=_notebook_bar())
        if job.status is JobStatus.CANCELLED:
            raise self._cancelled(job)
        if not job.is_final:
            raise WaitTimeout(f"job {self.id} ({self.name}) has not ended after {time.monotonic() - started:.0f} s: "
                              f"{job.describe_counts()}",
                              "wait again (job.wait()), with a longer timeout, or stop it with job.cancel(); "
                              "the job goes on meanwhile")
        return self.summary()

    def _cancelled(self, job: JobView) -> JobCancelled:
        return JobCancelled(f"job {self.id} ({self.name}) was cancelled: {job.describe_counts()}",
                            "job.retry() queues its cancelled and failed tasks again, then wait(); "
                            "job.results() has what the finished tasks wrote")

    def cancel(self) -> int:
        """Cancel every unfinished task (running ones are killed); returns how many."""
        return self._app.jobs().cancel(self.id)

    def retry(self, repack: bool = False) -> int:
        """Queue failed and cancelled tasks again, with fresh retries; returns how many.
        ``repack``: with the job's folder as it is now (after a fix); without it the
        files packed at submit run again, and a folder changed since is warned of."""
        result = self._app.jobs().retry(self.id, repack=repack)
        if warning := result.warning():
            warnings.warn(warning.replace("sparecycles retry", "job.retry(repack=True), or: sparecycles retry"),
                          stacklevel=2)
        return result.requeued

    def remove(self, results: bool = False) -> None:
        """Forget this finished job (``sparecycles remove``); its results folder
        stays unless ``results``."""
        self._app.jobs().remove(self.id, results=results)

    def results(self) -> list[TaskResult]:
        """One :class:`TaskResult` per task, in task order, whatever its state."""
        job = self._refresh()
        messages = {t.idx: t.message for t in self._app.store.tasks(job.seq)}
        return [task_result(row, messages.get(row.index)) for row in result_rows(self._app.store, job)]

    def to_frame(self):
        """A pandas DataFrame: one row per task, its state, parameters and the
        scalars in its JSON results as columns. Needs pandas."""
        return results_frame(self.results())


def submit(folder: str | os.PathLike, params: ParamsArgument = None, *, name: str | None = None,
           main: str | None = None, retries: int | None = None, time_limit: float | str | None = None,
           start: bool = True) -> Job:
    """Queue the job folder ``folder`` (it holds ``main.py``), one task per parameter set.

    ``params``: a list of parameter sets (dicts of JSON values travel as JSON;
    anything else picklable is pickled and reaches the task as ``params.pkl``),
    a dict of axes for a grid (``{"rate": [5, 10], "g": np.linspace(1, 4, 4),
    "duration": 2.0}``: the TOML grid's rules), or the path of a parameter file
    (JSON, CSV or TOML). None: the folder's ``sparecycles.toml`` decides, else
    one task. ``time_limit`` is seconds or text like ``"10m"``.

    Starts a background dispatcher unless ``start`` is false (or one runs).
    Raises :class:`UserError` before queueing anything if the input is wrong.
    """
    app = App.from_environment()
    params_file, param_sets = param_sets_from(params)
    submission = app.jobs().submit(folder, start=start, params=params_file, param_sets=param_sets, name=name,
                                   main=main, time_limit_s=as_seconds(time_limit, "time_limit"),
                                   retries=_retries(retries)).submission
    return Job(app, submission.job, submission.notes)


def job(ref: str) -> Job:
    """A job by id, unique id prefix, or name (the newest of that name)."""
    app = App.from_environment()
    return Job(app, app.store.job(ref))


def jobs() -> list[Job]:
    """Every job in the queue, oldest first."""
    app = App.from_environment()
    return [Job(app, record) for record in app.store.jobs()]


def as_seconds(value: float | str | None, what: str) -> float | None:
    """Seconds from a number or text like "10m"; ``what`` names the argument in messages."""
    if value is None:
        return None
    if what == "timeout" and value == 0 and not isinstance(value, (bool, str)):
        return 0.0  # look once, do not wait
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UserError(f"{what}: {exc}", f"give seconds ({what}=90) or text like {what}='10m'") from None


def _retries(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise UserError(f"retries must be a whole number >= 0, not {value!r}", "e.g. retries=2")
    return value


def _notebook_bar():
    """In Jupyter, a tqdm widget (plain lines where ipywidgets is missing);
    elsewhere None: the command line's choice (a bar on a terminal, lines in a pipe)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return None
    if importlib.util.find_spec("ipywidgets") is None:  # tqdm's widget needs it
        return lambda record: ProgressLines(sys.stderr)
    from tqdm.notebook import tqdm

    return lambda record: ProgressBar(record, sys.stderr, tqdm_class=tqdm)
