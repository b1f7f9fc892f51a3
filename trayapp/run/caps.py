"""A task's memory and process caps, and how a task over its memory is told apart.

Two ways to hold a task to its caps, the better one where the system allows:

- its cgroup (:mod:`trayapp.run.cgroup`) with the memory and pids controllers:
  ``memory.max`` counts what the task really uses, and the kernel's OOM
  killer ends the whole task when it goes over; ``pids.max`` stops a fork
  bomb at the cap;
- otherwise resource limits set by the shell that starts the task:
  ``RLIMIT_AS`` (address space: an allocation over the cap fails, which
  Python reports as ``MemoryError``) and ``RLIMIT_NPROC``. The process count
  is per user, so it is set only inside the sandbox, whose user namespace
  (Linux 5.14+) counts the task's processes alone; outside one it would count
  every program of the lender's. The kernel does not apply ``RLIMIT_NPROC``
  to root, so a slave run as root caps processes only through a cgroup.

The memory cap of a task is what its job asks for (``memory`` in the job's
``sparecycles.toml``), within the slave's ``max_task_memory_mb``; a job that
asks for more than a slave lends is declined there.

The disk cap (``max_task_disk_mb``; by default half the spool's free space,
shared among the slots) holds what a task writes into its folder and its
writable caches. No unprivileged mechanism caps a folder's size (quotas and
size-limited loop or tmpfs mounts need root, and a tmpfs would count the
task's files against the PC's memory), so two nets hold it:

- ``RLIMIT_FSIZE`` at the cap, set by the same shell as the other rlimits:
  no single file grows past it, at once (Python ignores SIGXFSZ, so the
  write fails with "File too large" and the task ends with that);
- the slave measures each running task's folder every few seconds
  (:mod:`trayapp.slave.diskwatch`, on a thread of its own: the event loop
  and a returning user's preemption never wait for it) and kills a task
  over its cap, which fails with "over its disk cap of N MB".

Between two measurements a task may overshoot by what it writes in that
time; the slave's own free-space floor (``min_free_mb``) still stops new
work before the disk is full.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

# Stops well before the PC itself runs out, whatever the task asked for.
AUTOMATIC_SHARE_OF_RAM = 0.75
# Half the free disk, shared among the slots: every slot's task together
# leaves the other half to the lender.
AUTOMATIC_SHARE_OF_FREE_DISK = 0.5

_ALLOCATION_FAILED = re.compile(r"MemoryError|Cannot allocate memory|std::bad_alloc|[Oo]ut of memory")
_FILE_TOO_LARGE = re.compile(r"File too large|EFBIG")


@dataclass(frozen=True)
class TaskCaps:
    memory_mb: int | None = None
    processes: int | None = None
    disk_mb: int | None = None


def physical_memory_mb() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
    except (ValueError, OSError, AttributeError):
        return None


def slave_memory_limit_mb(max_task_memory_mb: int) -> int | None:
    """The most one task may use here: the setting, or (0) three quarters of the PC's memory."""
    if max_task_memory_mb > 0:
        return max_task_memory_mb
    total = physical_memory_mb()
    return int(total * AUTOMATIC_SHARE_OF_RAM) if total else None


def memory_refusal(requested_mb: int | None, limit_mb: int | None) -> str | None:
    """Why this slave cannot take a task that asks for ``requested_mb``, or None."""
    if requested_mb is not None and limit_mb is not None and requested_mb > limit_mb:
        return (f"the job asks for {requested_mb} MB of memory per task; this PC lends at most "
                f"{limit_mb} MB (max_task_memory_mb)")
    return None


def caps_for(requested_mb: int | None, limit_mb: int | None, processes: int, disk_mb: int | None = None) -> TaskCaps:
    return TaskCaps(memory_mb=requested_mb or limit_mb, processes=processes or None, disk_mb=disk_mb)


def task_disk_cap_mb(max_task_disk_mb: int, folder: Path, slots: int) -> int | None:
    """The most disk one task may fill here: the setting, or (0) its slot's share
    of half the free space under ``folder`` (the spool) now; None if that cannot
    be known (the spool's own problem then keeps the slave from taking work)."""
    if max_task_disk_mb > 0:
        return max_task_disk_mb
    try:
        free_mb = shutil.disk_usage(folder).free >> 20
    except OSError:
        return None
    return max(1, int(free_mb * AUTOMATIC_SHARE_OF_FREE_DISK / max(1, slots)))


def limits_prefix(memory_mb: int | None, processes: int | None, disk_mb: int | None = None) -> list[str]:
    """A command prefix that sets the given rlimits (hard and soft) and then
    runs the rest; empty when there is nothing to set. ``ulimit`` is built into
    ``sh``: no extra program, one exec of the shell."""
    settings = []
    if memory_mb:
        settings.append(f"ulimit -v {memory_mb * 1024}")  # in KiB
    if processes:
        settings.append(f"ulimit -p {processes}" if _shell_is_dash() else f"ulimit -u {processes}")
    if disk_mb:
        settings.append(f"ulimit -f {disk_mb * 2048}")  # in 512-byte blocks (POSIX sh, dash, bash as sh)
    if not settings:
        return []
    return ["/bin/sh", "-c", " && ".join(settings) + ' && exec "$@"', "sparecycles-limits"]


def _shell_is_dash() -> bool:
    """dash names the process limit ``-p``, bash and busybox ``-u``."""
    try:
        return os.path.basename(os.path.realpath("/bin/sh")) == "dash"
    except OSError:
        return False


def memory_failure(caps: TaskCaps, exit_code: int | None, stderr_tail: str, *, oom_killed: bool) -> str | None:
    """The reason a task ended, when it ended over its memory cap; else None."""
    if not caps.memory_mb:
        return None
    if oom_killed:
        return f"killed: over its memory cap of {caps.memory_mb} MB"
    if exit_code not in (None, 0) and _ALLOCATION_FAILED.search(stderr_tail or ""):
        return (f"failed: over its memory cap of {caps.memory_mb} MB (an allocation was refused, "
                f"exit code {exit_code})")
    return None


def disk_failure(caps: TaskCaps, exit_code: int | None, stderr_tail: str) -> str | None:
    """The reason a task ended, when a file of it grew past its disk cap (RLIMIT_FSIZE); else None."""
    if caps.disk_mb and exit_code not in (None, 0) and _FILE_TOO_LARGE.search(stderr_tail or ""):
        return (f"failed: over its disk cap of {caps.disk_mb} MB (a file grew past it, "
                f"exit code {exit_code})")
    return None
