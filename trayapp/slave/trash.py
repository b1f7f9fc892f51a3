"""The spool's trash: task folders out of the way at once, deleted off the engine's loop.

Deleting a task's folder (its copy of the job, its scratch folder, whatever
it wrote) is one unlink or rmdir per entry, and on a busy disk each costs a
millisecond or more: done on the engine's thread, between a task's end and
the next start, it held every slot of the PC for 10-20 ms per task. So a
folder is first renamed into ``<spool>/trash/`` (one rename, atomic: its old
path is free at once, and nothing reads a half-deleted folder), then removed
by :func:`trayapp.run.taskfiles.remove_tree` on one helper thread, about once
a second for all of them, with the same care as before (no link followed, folders a task locked opened up).
Whatever a stopped or killed slave left in the trash is removed when the next
one starts.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path

from trayapp.run.taskfiles import remove_tree

log = logging.getLogger(__name__)


class Trash:
    def __init__(self, folder: Path, *, every_s: float = 1.0):
        self.folder = folder
        self.every_s = every_s
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._due = threading.Event()
        self._idle = threading.Event()
        self._idle.set()

    def discard(self, path: Path) -> None:
        """Take ``path`` (a folder, or anything: a link is moved, never followed)
        away now and delete it in the background; nothing if it is missing."""
        target = self.folder / f"{path.name}-{secrets.token_hex(6)}"
        for attempt in range(2):
            try:
                os.rename(path, target)
                break
            except FileNotFoundError:
                if not os.path.lexists(path):
                    return  # nothing to remove
                if attempt == 0:  # no trash folder yet
                    try:
                        self.folder.mkdir(mode=0o700, exist_ok=True)
                        continue
                    except OSError:
                        pass
                remove_tree(path)  # no trash folder to be had: the slow way, here
                return
            except OSError as exc:
                log.debug("cannot move %s into the trash (%s): removing it in place", path, exc)
                remove_tree(path)
                return
        # Not woken per folder: the remover empties the trash about every ``every_s``,
        # so it does not contend with the engine's thread task by task.
        self._start()

    def empty(self) -> None:
        """Delete, in the background, whatever is in the trash (an earlier slave's leftovers)."""
        self._start()
        self._due.set()

    def wait(self, timeout: float = 60.0) -> None:
        """Until everything discarded so far is deleted (tests, and a slave that
        stops; what is left after ``timeout`` goes at the next start)."""
        if self._thread is None:
            return
        self._idle.clear()
        self._due.set()
        self._idle.wait(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="spool-trash", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._due.wait(self.every_s)
            self._due.clear()
            try:
                leftovers = [self.folder / name for name in os.listdir(self.folder)]
            except OSError:
                leftovers = []
            for path in leftovers:
                try:
                    _remove(path)
                except Exception:  # noqa: BLE001 - a bug here must not end the remover (wait() would hang)
                    log.exception("could not delete %s from the spool's trash", path)
            if not self._due.is_set():
                self._idle.set()


def _remove(path: Path) -> None:
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            remove_tree(path)
    except OSError as exc:  # left for the next pass, or the next slave's start
        log.warning("could not delete %s from the spool's trash: %s", path, exc)
