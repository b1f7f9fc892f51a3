"""One process of a kind per home: the dispatcher's and the slave daemon's lock."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path


class InstanceLock:
    """Makes sure only one process of a kind (dispatcher, slave daemon) runs for one home.

    An ``flock`` on a file that also records the holder's pid: the kernel drops the lock
    when the process dies, however it dies, so a crash never leaves a stale lock."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait_s: float = 0.0) -> bool:
        """Take the lock; with ``wait_s``, keep trying that long. A starting
        dispatcher waits a moment because, where :meth:`holder` cannot read the
        kernel's lock table, it probes by taking the lock for an instant, and a
        dispatcher that gave up at that instant would leave the queue without one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> int | None:
        """The pid of the running dispatcher, or None if there is none.

        On Linux it reads the kernel's table of file locks (/proc/locks), which
        takes no lock itself, so asking never gets in the way of a dispatcher
        starting at that moment; elsewhere it tries the lock for an instant."""
        held = _flock_holder(self.path)
        if held is None:
            if self.acquire():
                self.release()
                return None
        elif not held:
            return None
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return -1


def _flock_holder(path: Path, locks: str = "/proc/locks") -> bool | None:
    """Whether some process holds a flock() on ``path``; None if this system
    cannot tell without trying (no /proc/locks)."""
    try:
        st = os.stat(path)
        table = Path(locks).read_text()
    except FileNotFoundError:
        return False if Path(locks).exists() else None  # no lock file: nobody holds it
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 9973 fe:00:2146507 0 EOF": the holder's pid, then the
    # device as hex major:minor and the inode. On an overlay file system the device
    # shown is the layer's, not the one stat() gives: then the pid written in the
    # file (by the holder, after locking) must match instead.
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        written = path.read_text().strip()
    except OSError:
        written = ""
    for fields in (line.split() for line in table.splitlines()):
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{st.st_ino}"):
            if fields[5] == device or fields[4] == written:
                return True
    return False
