"""The files a slave exchanges with its masters: job archives in, small results out.

A master asks whether the slave has a job's archive (``need_archive``),
uploads it by SFTP where the slave says, and tells it (``archive_uploaded``);
the slave checks its hash and unpacks it once, so each task's start copies
the unpacked folder. A master is told only of the archives it sent itself
(trayapp.slave.spool.Spool.holds); another master's same bytes are kept once. A finished task's results archive rides in its
``finished`` message when it is small; a larger one is fetched by SFTP.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

from trayapp.run.taskfiles import remove_tree
from trayapp.slave.identity import folder_of
from trayapp.slave.session import Session
from trayapp.slave.spool import Spool, SpoolTask
from trayapp.wire.archive import ChecksumMismatchError, UnsafeArchiveError, ensure_unpacked
from trayapp.wire.protocol import INLINE_RESULTS_MAX

log = logging.getLogger(__name__)


# A master's incoming folder: an upload untouched this long was abandoned; beyond
# its quota (the lender's incoming_quota_gb, all its uploads together) they go at once, largest first.
ABANDONED_AFTER_S = 24 * 3600.0
CLEAN_EVERY_S = 60.0


class ArchiveRefused(Exception):
    """A task cannot start from its archive; ``reason`` is what its master is told."""

    def __init__(self, reason: str, code: str, *, retry: bool = True, spool_problem: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.code = code  # trayapp.wire.protocol.DECLINE_CODES: the master decides on it, not on the words
        self.retry = retry
        self.spool_problem = spool_problem  # the spool itself is at fault: the slave takes no work


class Transfers:
    def __init__(self, spool: Spool, *, min_free_mb: int, quota_bytes: int,
                 abandoned_after_s: float = ABANDONED_AFTER_S):
        self.spool = spool
        self.min_free_mb = min_free_mb
        self.quota_bytes = quota_bytes
        self.abandoned_after_s = abandoned_after_s
        self._cleaned_at: float | None = None

    def tick(self, now: float) -> None:
        """Clean the masters' incoming folders now and then (and at the first tick
        after a start: the files' own times say what was abandoned meanwhile)."""
        if self._cleaned_at is None or abs(now - self._cleaned_at) >= CLEAN_EVERY_S:
            self._cleaned_at = now
            clean_incoming(self.spool.incoming, now, quota_bytes=self.quota_bytes,
                           abandoned_after_s=self.abandoned_after_s)

    def on_need_archive(self, session: Session, message: dict) -> None:
        sha = message["sha"]
        if self.spool.holds(sha, folder_of(session.master)):
            session.send("archive", sha=sha, present=True)
        else:
            upload = self.spool.upload_path(sha, session.principal.folder)
            session.send("archive", sha=sha, present=False, upload_path=str(upload))

    def on_archive_uploaded(self, session: Session, message: dict) -> None:
        sha, path = message["sha"], Path(message["path"])
        try:
            self.spool.accept_upload(sha, path, session.principal.folder, folder_of(session.master))
        except (OSError, ChecksumMismatchError) as exc:
            session.send("archive_bad", sha=sha, reason=str(exc))
        else:
            session.send("archive_ok", sha=sha)
            try:
                # Unpacked now, with the hash just checked: the first task's start
                # neither hashes the archive again nor waits for the unpacking.
                ensure_unpacked(self.spool.archive_path(sha), self.spool.unpacked, verified=True)
            except Exception as exc:  # noqa: BLE001 - the first start tries again and tells the master
                log.info("archive %s: not unpacked on arrival (%s); the first task's start will say why",
                         sha[:12], exc)

    def unpacked(self, sha: str, owner: str) -> Path:
        """The unpacked job folder of archive ``sha``, to copy for a task of
        ``owner`` (its recorded master); ArchiveRefused if none, or if that
        master never sent it (its start must not tell it another master did)."""
        archive = self.spool.archive_path(sha)
        if not self.spool.holds(sha, folder_of(owner)):
            raise ArchiveRefused("archive missing; send it first", "archive_missing")
        try:
            return ensure_unpacked(archive, self.spool.unpacked)
        except ChecksumMismatchError as exc:
            archive.unlink(missing_ok=True)  # so the master's next need_archive re-sends it
            raise ArchiveRefused(str(exc), "archive_damaged") from None
        except UnsafeArchiveError as exc:
            raise ArchiveRefused(f"refused the job archive: {exc}", "archive_unsafe", retry=False) from None
        except (OSError, EOFError, Exception) as exc:  # noqa: BLE001 - tarfile raises many kinds
            reason = self.spool.problem(self.min_free_mb) or f"cannot unpack the job archive: {exc}"
            raise ArchiveRefused(reason, "archive_unpack", spool_problem=True) from None

    def inline_results(self, task: SpoolTask) -> dict:
        """A small results archive rides in the message itself. The spool keeps
        it until the master acks, so a master that cannot use the copy (or
        predates it) fetches it by SFTP as before."""
        if not task.results_sha or task.results_size is None or task.results_size > INLINE_RESULTS_MAX:
            return {}
        data = self.spool.packed_results(task)  # just packed: not read back
        try:
            data = Path(task.results_path).read_bytes() if data is None else data
        except OSError:
            return {}  # the master's fetch will tell it what is wrong
        return {"results_inline": base64.b64encode(data).decode("ascii")}


def clean_incoming(incoming: Path, now: float, *, quota_bytes: int, abandoned_after_s: float) -> list[str]:
    """Remove from each master's incoming folder what is not an upload and the
    uploads abandoned, then, while the folder is over its quota, its largest uploads. Never follows a link;
    a file an SFTP session still holds open is emptied first, so its space is
    freed at once. Returns what went (for the log and tests)."""
    gone = []
    try:
        masters = [entry for entry in os.scandir(incoming) if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return gone
    for master in masters:
        try:
            entries = [(entry, entry.stat(follow_symlinks=False)) for entry in os.scandir(master.path)]
        except OSError:
            continue
        kept = []
        for entry, st in entries:
            if not (stat.S_ISREG(st.st_mode) and entry.name.startswith(".upload-")):
                gone.append(_remove(entry, st, "not an upload"))  # a master only ever writes those
            elif now - st.st_mtime > abandoned_after_s:
                gone.append(_remove(entry, st, "abandoned"))
            else:
                kept.append((entry, st))
        total = sum(st.st_size for _, st in kept)
        for entry, st in sorted(kept, key=lambda pair: -pair[1].st_size):
            if total <= quota_bytes:
                break
            total -= st.st_size
            gone.append(_remove(entry, st, "over the incoming quota"))
    return gone


def _remove(entry: os.DirEntry, st: os.stat_result, why: str) -> str:
    log.info("removing %s from incoming: %s", entry.path, why)
    try:
        if stat.S_ISDIR(st.st_mode):
            remove_tree(Path(entry.path))  # any depth: a master may make a folder a thousand levels deep
            return entry.path
        if stat.S_ISREG(st.st_mode):
            fd = os.open(entry.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)
        os.unlink(entry.path)
    except OSError as exc:
        log.warning("cannot remove %s from incoming: %s", entry.path, exc)
    return entry.path
