"""Stopping every task's whole process tree the instant the user returns.

:meth:`trayapp.run.posix.PosixTask.kill_whole_tree` ends one tree
thoroughly (group, descendants, marker sweep, then it *waits*) and the
slave settles each task after it (packing results). Done task by task, the
second task would run on while the first is settled. So preemption first
*signals* every tree of every task, in a few milliseconds, and only then
does the thorough, slow part (the runner's ``kill_at_once``, ``suspend``
and ``resume`` are this first pass).
The first pass:

- each task's cgroup (:mod:`trayapp.run.cgroup`): ``cgroup.kill`` or
  ``cgroup.freeze``, one write, and it is over;
- each task's process group (``killpg``: a task starts as a session leader);
- the descendants that left the group (``setsid``) but are still in the
  tree, found in one pass over the process table for all tasks;
- without a cgroup, orphans that left both group and tree (their parent
  exited) carry the attempt's marker in their environment: one sweep for all
  tasks finds them.
"""

from __future__ import annotations

import os
import signal
from typing import Iterable, Protocol

import psutil

from trayapp.run.cgroup import TaskCgroups
from trayapp.run.proctree import MARKER_VARIABLE, same_process


class TaskTree(Protocol):
    """One attempt as preemption sees it: its root process and its marker."""

    pid: int
    created: float
    token: str


def _live_roots(procs: list[TaskTree]) -> list[psutil.Process]:
    return [root for root in (same_process(p.pid, p.created) for p in procs) if root is not None]


def _signal_groups(roots: list[psutil.Process], sig: int) -> None:
    for root in roots:
        try:
            os.killpg(root.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _descendants(roots: list[psutil.Process]) -> list[psutil.Process]:
    """Every descendant of every root, from one pass over the process table
    (psutil's ``children()`` makes a pass per call)."""
    children: dict[int, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info["ppid"]
        if ppid:
            children.setdefault(ppid, []).append(proc)
    found, stack = [], [r.pid for r in roots]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child.pid)
    return found


def _signal_trees(procs: list[TaskTree], sig: int) -> None:
    """``sig`` to every task's group, then to its descendants outside the group.

    The groups are stopped first (SIGSTOP, microseconds each): a stopped
    process neither forks nor dies, so the parent links the descendant pass
    follows are still there when it runs, and nothing new appears meanwhile.
    """
    roots = _live_roots(procs)
    if not roots:
        return
    _signal_groups(roots, signal.SIGSTOP)
    descendants = _descendants(roots)
    if sig == signal.SIGKILL:
        _signal_groups(roots, sig)
    for proc in descendants:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass
    if sig not in (signal.SIGKILL, signal.SIGSTOP):
        _signal_groups(roots, sig)


def _marked_processes(tokens: set[str]) -> list[psutil.Process]:
    """Processes of this user carrying any of these attempts' markers: one pass
    over the process table for all tasks (each pass reads every environment)."""
    found, my_uid, me = [], os.getuid(), os.getpid()
    for proc in psutil.process_iter(["uids"]):
        try:
            uids = proc.info["uids"]
            if uids is None or uids.real != my_uid or proc.pid == me:
                continue
            if proc.environ().get(MARKER_VARIABLE) in tokens:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_trees(procs: Iterable[TaskTree], cgroups: TaskCgroups | None) -> None:
    """SIGKILL every process of every task, without waiting for them to die."""
    procs = list(procs)
    for proc in procs:  # the one-write kills first, for every task
        if cgroups is not None:
            cgroups.kill(proc.token)
    _signal_trees(procs, signal.SIGKILL)
    # Orphans that left the group are out of reach of both nets above; without
    # a cgroup only their marker finds them, so sweep now, for every task at once.
    uncontained = {p.token for p in procs if cgroups is None or not cgroups.has(p.token)}
    if uncontained:
        for straggler in _marked_processes(uncontained):
            try:
                straggler.kill()
            except psutil.Error:
                pass


def suspend_trees(procs: Iterable[TaskTree], cgroups: TaskCgroups | None) -> None:
    """Stop (freeze) every process of every task; :func:`resume_trees` undoes it."""
    procs = list(procs)
    loose = [p for p in procs if cgroups is None or not cgroups.freeze(p.token)]
    if loose:
        _signal_trees(loose, signal.SIGSTOP)
        for straggler in _marked_processes({p.token for p in loose}):
            try:
                straggler.send_signal(signal.SIGSTOP)
            except psutil.Error:
                pass


def resume_trees(procs: Iterable[TaskTree], cgroups: TaskCgroups | None) -> None:
    procs = list(procs)
    for proc in procs:
        if cgroups is not None:
            cgroups.freeze(proc.token, False)
    # SIGCONT is harmless to a process that was frozen rather than stopped.
    _signal_trees(procs, signal.SIGCONT)
    loose = {p.token for p in procs if cgroups is None or not cgroups.has(p.token)}
    if loose:
        for straggler in _marked_processes(loose):
            try:
                straggler.send_signal(signal.SIGCONT)
            except psutil.Error:
                pass
