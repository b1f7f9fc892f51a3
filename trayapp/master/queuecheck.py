"""Noticing a damaged queue file before trusting it.

A queue cut short (a full disk, a copy interrupted, a backup tool restoring
half a file) or with damaged pages must not silently become an empty queue,
nor fail later with a traceback in the middle of a write. The app checks the
file once when it starts (``PRAGMA quick_check``, a few milliseconds for a
queue of thousands of tasks) and, if it is damaged, says so with a way out
that keeps the results: they live in their own folders, not in the queue.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from trayapp.errors import UserError

# A queue file is written as soon as it is created; one of zero bytes older than
# this was cut short, not caught between creation and its first write.
EMPTY_GRACE_S = 10.0


def check_queue_file(path: Path, results_root: Path, *, now: float | None = None) -> None:
    """Raise :class:`UserError` if the queue file at ``path`` exists but is damaged."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return  # a new queue is made
    now = time.time() if now is None else now
    if info.st_size == 0 and now - info.st_mtime > EMPTY_GRACE_S:
        raise _damaged(path, results_root, "it is empty (0 bytes): it was cut short")
    if info.st_size == 0:
        return
    try:
        db = sqlite3.connect(path, timeout=60)
        try:
            verdict = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, results_root, str(exc)) from None
    if verdict != ["ok"]:
        raise _damaged(path, results_root, "; ".join(verdict))


def _damaged(path: Path, results_root: Path, detail: str) -> UserError:
    return UserError(
        f"the queue {path} is damaged ({detail}). Your results are safe in {results_root}",
        f"move the damaged file aside and SpareCycles starts with an empty queue: mv '{path}' '{path}.damaged' "
        f"(a backup, {path.name}.v*.bak, may sit beside it; 'sqlite3 {path}.damaged .recover' can often save "
        "the job list)")
