"""Ending a task's whole process tree, whatever it did to hide.

A task may fork children and grandchildren, and one of them may call
``setsid()`` to leave the task's process group, or be orphaned and re-parented
to init. Three nets catch them all:

1. the process group (every task starts as a session leader, so its pgid is
   its pid): one ``killpg`` reaches everything that stayed in the group;
2. a snapshot of the descendants taken *before* killing, while parent links
   still exist (catches ``setsid`` escapees that are still children);
3. a sweep for processes whose environment carries the attempt's marker
   (``SPARECYCLES_ATTEMPT``), which catches orphans whose parent is gone.

The slave's preemption (the user came back) reuses this module. The tree's
CPU time, for the idle policy where no cgroup counts it, is here too.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

MARKER_VARIABLE = "SPARECYCLES_ATTEMPT"


def same_process(pid: int | None, created: float | None) -> psutil.Process | None:
    """The process ``pid`` if it is still the one started at ``created``
    (pids are recycled, so a bare pid is not an identity)."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if created is not None and abs(proc.create_time() - created) > 0.05:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def processes_with_marker(token: str) -> list[psutil.Process]:
    """Processes of this user whose environment carries the attempt's marker."""
    needle = f"{token}"
    found = []
    my_uid = os.getuid()
    for proc in psutil.process_iter(["uids"]):
        try:
            uids = proc.info["uids"]
            if uids is None or uids.real != my_uid or proc.pid == os.getpid():
                continue
            if proc.environ().get(MARKER_VARIABLE) == needle:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_tree(pid: int | None, created: float | None, token: str, timeout: float = 2.0) -> list[int]:
    """SIGKILL every process of one attempt and wait until they are gone.

    Returns the pids that were still alive after ``timeout`` (empty when all
    died, which is the only outcome seen in practice: SIGKILL cannot be caught).
    """
    victims: dict[int, psutil.Process] = {}
    root = same_process(pid, created)
    if root is not None:
        victims[root.pid] = root
        try:
            for child in root.children(recursive=True):
                victims[child.pid] = child
        except psutil.Error:
            pass
        try:
            os.killpg(root.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in victims.values():
        _kill(proc)
    # The marker sweep reads every process's environment (a few ms); it runs
    # after the fast kills above so the common case is already over.
    for proc in processes_with_marker(token):
        victims[proc.pid] = proc
        _kill(proc)
    return _wait_until_dead(list(victims.values()), timeout)


def _wait_until_dead(procs: list[psutil.Process], timeout: float) -> list[int]:
    """Wait until every process is gone or a zombie. A killed task's orphans
    stay zombies until init reaps them, which on some systems takes seconds;
    a zombie runs nothing and holds no memory, so it counts as dead here."""
    deadline = time.monotonic() + timeout
    alive = procs
    while True:
        still = []
        for proc in alive:
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    still.append(proc)
            except psutil.Error:
                pass
        if not still or time.monotonic() >= deadline:
            return [p.pid for p in still]
        alive = still
        time.sleep(0.002)


def _kill(proc: psutil.Process) -> None:
    try:
        proc.kill()
    except psutil.Error:
        pass


def descendants_cpu_seconds(me: psutil.Process | None = None) -> float:
    """CPU time of this process's descendants, living and reaped: every task's
    time, where tasks cannot be counted through a cgroup. A reaped child's time
    moves into its parent's ``children_*`` fields, so the sum never drops."""
    me = me or psutil.Process()
    try:
        own = me.cpu_times()
        total = own.children_user + own.children_system
        for child in me.children(recursive=True):
            try:
                t = child.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0.0
