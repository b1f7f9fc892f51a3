"""What the command line prints and how it exits, shared by every verb."""

from __future__ import annotations

import sys

from trayapp.master.jobview import JobView

EXIT_OK, EXIT_FAILED_TASKS, EXIT_TIMEOUT, EXIT_USER_ERROR = 0, 1, 2, 3
EXIT_USAGE = 2  # as argparse exits on a wrong command line


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def exit_for(job: JobView) -> int:
    if not job.is_final:
        print(f"sparecycles: timed out waiting for job {job.id}: {job.describe_counts()}", file=sys.stderr)
        return EXIT_TIMEOUT
    if job.failed or job.cancelled:
        print(f"job {job.id} ended: {job.describe_counts()}; see: sparecycles status {job.id}", file=sys.stderr)
        return EXIT_FAILED_TASKS
    return EXIT_OK
