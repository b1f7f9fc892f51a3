"""Watching a job until it ends: a bar on a terminal, plain lines in a pipe or log.

What it shows is the job's one view (:mod:`trayapp.master.jobview`), as ``status``,
the API and the window show it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Protocol, TextIO

from trayapp.master.jobview import FINAL_JOB_STATES, JobView, job_view
from trayapp.master.store import Store

__all__ = ["FINAL_JOB_STATES", "ProgressBar", "ProgressLines", "wait_for_job"]
REASON_EVERY_S = 1.0


class Display(Protocol):
    def update(self, job: JobView) -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


class ProgressBar:
    """A tqdm bar on a terminal; or, given ``tqdm_class`` (``tqdm.notebook.tqdm``), a Jupyter widget."""

    def __init__(self, job: JobView, stream: TextIO, tqdm_class=None):
        desc = f"{job.name}-{job.id}"
        self._shown = 0
        self._stream = stream
        if tqdm_class is not None:
            self._bar = tqdm_class(total=job.total, desc=desc, unit="task", leave=True)
            return
        from tqdm import tqdm

        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        # Some terminals (serial consoles, a fresh pty) report 0 columns, which
        # would make tqdm draw nothing at all: fall back to a fixed width.
        self._bar = tqdm(total=job.total, desc=desc, unit="task", file=stream,
                         dynamic_ncols=columns > 0, ncols=None if columns > 0 else 80, leave=True)

    def update(self, job: JobView) -> None:
        self._bar.set_postfix_str(job.describe_counts(), refresh=False)
        self._bar.update(job.finished_count - self._shown)
        self._shown = job.finished_count

    def note(self, text: str) -> None:
        """A line above the bar (why the job waits), kept when the bar moves on."""
        self._bar.write(text, file=self._stream)

    def close(self) -> None:
        self._bar.close()


class ProgressLines:
    """One line whenever the counts change, at most every ``interval`` s."""

    def __init__(self, stream: TextIO, interval: float = 2.0):
        self._stream = stream
        self._interval = interval
        self._last_text = ""
        self._last_time = 0.0

    def update(self, job: JobView) -> None:
        text = f"{job.name}-{job.id}: {job.describe_counts()}"
        now = time.monotonic()
        if text != self._last_text and (job.is_final or now - self._last_time >= self._interval):
            print(text, file=self._stream, flush=True)
            self._last_text, self._last_time = text, now

    def note(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def close(self) -> None:
        pass


def wait_for_job(store: Store, job_id: str, *, timeout: float | None = None, stream: TextIO | None = None,
                 poll: float = 0.25, show: bool = True, clock: Callable[[], float] = time.monotonic,
                 display_for: Callable[[JobView], Display] | None = None) -> JobView:
    """Block until the job ends or ``timeout`` passes; returns the job as last seen.
    The progress shown is a bar on a terminal, lines elsewhere, or ``display_for(job)``."""
    stream = stream or sys.stderr
    job = job_view(store, job_id)
    display = None
    if display_for is not None and show:
        display = display_for(job)
    elif show:
        display = ProgressBar(job, stream) if stream.isatty() else ProgressLines(stream)
    deadline = clock() + timeout if timeout is not None else None
    said, next_reason = "", 0.0
    try:
        while True:
            job = job_view(store, job.id)
            if display:
                display.update(job)
                if clock() >= next_reason or job.is_final:
                    # One line each time the reason changes, not one per poll.
                    next_reason = clock() + REASON_EVERY_S
                    if job.why and job.why != said:
                        display.note(f"{job.name}-{job.id} waits: {job.why}")
                    said = job.why or ""
            if job.is_final:
                return job
            if deadline is not None and clock() >= deadline:
                return job
            time.sleep(poll)
    finally:
        if display:
            display.close()
