"""Starting tasks at low CPU and I/O priority, cheaply, on POSIX systems.

On Linux a process's CPU and I/O priority belong to the thread that forks
it, so tasks are forked from a helper thread lowered once: that saves an
exec of ``nice`` and one of ``ionice`` per task (a few ms of a task's
start-up), and leaves the calling thread at full priority, which the slave
engine needs to stop tasks the instant the PC's user returns. Elsewhere,
``nice``/``ionice`` prefix the command, where they exist.

The master's own cores are the exception: their engine shares the master's
process, and its thread is lowered itself (``lower_caller``), which saves
the hop to a helper thread on every start.

A slave's task runner does without the helper thread too
(:meth:`LowPriorityStarts.lowers_after_start`): it starts the task's wrapper
from its own thread, held before it runs anything, lowers it with
:func:`lower_process` and then lets it go (:func:`trayapp.run.posix.start_process`).
The helper stays for what else starts at low priority (a warm parent).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import psutil

T = TypeVar("T")


def lower_this_threads_priority(nice: int) -> None:
    """Make every process this thread starts from now on inherit low CPU and I/O
    priority. On Linux both are per thread and copied by fork."""
    tid = threading.get_native_id()
    os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
    try:
        # Idle I/O class: a task's disk use waits whenever the PC's user needs the disk.
        psutil.Process(tid).ionice(psutil.IOPRIO_CLASS_IDLE)
    except (psutil.Error, AttributeError, OSError):
        pass


def lower_process(pid: int, nice: int) -> None:
    """Give process ``pid`` (one we just started, not yet running anything of
    a task's) low CPU priority and the idle I/O class; what it forks inherits both."""
    os.setpriority(os.PRIO_PROCESS, pid, max(os.getpriority(os.PRIO_PROCESS, pid), nice))
    try:
        psutil.Process(pid).ionice(psutil.IOPRIO_CLASS_IDLE)
    except (psutil.AccessDenied, AttributeError):
        pass


def priority_prefix(nice: int) -> list[str]:
    prefix = []
    if nice > 0 and shutil.which("nice"):
        prefix += ["nice", "-n", str(nice)]
    # Idle I/O class: a task's disk use waits whenever the PC's user needs the disk.
    if nice > 0 and shutil.which("ionice"):
        prefix += ["ionice", "-c", "3"]
    return prefix


class LowPriorityStarts:
    """Runs ``spawn(prefix)`` so that what it starts has the given niceness:
    on a lowered helper thread, on the lowered calling thread, or with a
    ``nice``/``ionice`` prefix, as described in the module's docstring."""

    def __init__(self, *, lower_caller: bool = False):
        self._lower_caller = lower_caller
        self._lowered_threads: set[int] = set()
        self._spawners: dict[int, ThreadPoolExecutor] = {}

    def lowers_after_start(self, nice: int) -> bool:
        """Whether a task runner should rather start its process itself and lower
        it before it runs anything (Linux; not for a caller that is lowered itself)."""
        return nice > 0 and not self._lower_caller and sys.platform.startswith("linux")

    def run(self, nice: int, spawn: Callable[[list[str]], T]) -> T:
        if nice <= 0:
            return spawn([])
        if self._lower_caller:
            tid = threading.get_native_id()
            if tid not in self._lowered_threads:
                lower_this_threads_priority(nice)
                self._lowered_threads.add(tid)
            return spawn([])
        if not sys.platform.startswith("linux"):
            return spawn(priority_prefix(nice))
        spawner = self._spawners.get(nice)
        if spawner is None:
            spawner = self._spawners[nice] = ThreadPoolExecutor(
                1, thread_name_prefix="task-spawner", initializer=lower_this_threads_priority, initargs=(nice,))
        return spawner.submit(spawn, []).result()

    def close(self) -> None:
        for spawner in self._spawners.values():
            spawner.shutdown(wait=False)
        self._spawners.clear()
