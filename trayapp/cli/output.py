"""What the command line prints and how it exits, shared by every verb."""

from __future__ import annotations

import sys

from trayapp.master.progress import FINAL_JOB_STATES, describe_counts
from trayapp.master.store import JobRecord
from trayapp.status import TaskStatus

EXIT_OK, EXIT_FAILED_TASKS, EXIT_TIMEOUT, EXIT_USER_ERROR = 0, 1, 2, 3
EXIT_USAGE = 2  # as argparse exits on a wrong command line


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def exit_for(job: JobRecord) -> int:
    if job.status not in FINAL_JOB_STATES:
        print(f"sparecycles: timed out waiting for job {job.id}: {describe_counts(job)}", file=sys.stderr)
        return EXIT_TIMEOUT
    if job.count(TaskStatus.FAILED) or job.count(TaskStatus.CANCELLED):
        print(f"job {job.id} ended: {describe_counts(job)}; see: sparecycles status {job.id}", file=sys.stderr)
        return EXIT_FAILED_TASKS
    return EXIT_OK
