"""The POSIX task runner: one attempt of a task as a process session on this machine.

Each attempt runs under a tiny ``sh`` wrapper that records the exit code in
``task_dir/exitcode``. That file is what lets a slave killed with SIGKILL and
restarted adopt tasks that kept running meanwhile, or collect the ones that
finished, instead of running them again: a process that is not our child
cannot be ``wait()``-ed for its exit status. ``sh`` costs a few milliseconds
per task; a Python wrapper would cost tens.

The attempt leads a session of its own (its pgid is its pid), carries a
marker in its environment, and is born inside its own cgroup where the
system gives us one (:mod:`trayapp.run.cgroup`): the three nets that
:mod:`trayapp.run.proctree` and :mod:`trayapp.run.preemption` stop it with.

What holds an attempt in besides is the runner's :class:`~trayapp.run.sandbox.Confinement`:
its cgroup takes the launch's memory and process caps where its controllers
allow, and the confinement wraps the command in rlimits for the rest, and in
a bubblewrap sandbox where :mod:`trayapp.run.choice` chose one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import psutil

from trayapp.run.taskfiles import read_regular, tail_of
from trayapp.run.caps import TaskCaps, disk_failure, memory_failure
from trayapp.run.cgroup import TaskCgroups
from trayapp.run.preemption import kill_trees, resume_trees, suspend_trees
from trayapp.run.priority import LowPriorityStarts, lower_process
from trayapp.run.proctree import MARKER_VARIABLE, descendants_cpu_seconds, kill_tree, same_process
from trayapp.run.runner import Launch
from trayapp.run.sandbox import UNSANDBOXED_WARNING, Confinement

HOLD_LAUNCH_VARIABLE = "SPARECYCLES_TEST_HOLD_LAUNCH_S"

# Readers look at the exit code file only once the wrapper has exited (or, after
# a restart, once its pid is gone), so a plain write is complete when read; an
# external `mv` would cost a process per task for nothing.
#
# $1 is a cgroup's `cgroup.procs` file or empty: the wrapper joins the task's
# cgroup before it starts anything, so no process of the task is born outside.
# If it cannot join, it runs nothing and leaves no exit code: the attempt is
# lost to the host (run again elsewhere), never run outside its cgroup. That is
# why the slave need not move it in as well: a move costs the kernel a few ms
# (an RCU grace period), once per task, on the engine's thread.
_WRAPPER = ('cg=$1; shift; [ -z "$cg" ] || echo $$ >"$cg" || exit 125; '
            '"$@" >../stdout.txt 2>../stderr.txt </dev/null; code=$?; echo "$code" >../exitcode; exit "$code"')
# Started at the slave's priority and lowered from outside (see start_process):
# the wrapper first waits for the word that it was, so nothing of the task runs
# before. Without it (the slave died in between) it runs nothing.
_HELD_WRAPPER = "read -r lowered || exit 125; " + _WRAPPER


@dataclass(eq=False)
class PosixTask:
    """One attempt's process session, whether we started it or adopted it after a restart."""

    launch: Launch
    pid: int
    created: float | None  # None when the spool did not record it: any process with that pid counts
    popen: subprocess.Popen | None = None
    on_close: Callable[[str], None] | None = field(default=None, repr=False)
    _pidfd: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None  # no pidfd (old kernel, not Linux): the engine polls

    @property
    def token(self) -> str:
        return self.launch.token

    def wait_fd(self) -> int | None:
        return self._pidfd

    def has_ended(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is not None
        return same_process(self.pid, self.created) is None

    def exit_code(self) -> int | None:
        try:
            # Written by the wrapper outside the sandbox; read as a task-made file all the same.
            return int(read_regular(self.launch.task_dir / "exitcode", 64).strip())
        except (OSError, ValueError):
            return None

    def kill_whole_tree(self) -> None:
        kill_tree(self.pid, self.created, self.token)
        if self.popen is not None:
            self.popen.poll()

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self.on_close is not None:
            self.on_close(self.token)


def start_process(launch: Launch, *, cgroup_procs: Path | None = None, prefix: list[str] | None = None,
                  confinement: Confinement | None = None, limits: TaskCaps = TaskCaps(),
                  lower_to: int = 0) -> PosixTask:
    """Start the attempt as the leader of a new session, in the cgroup whose
    ``cgroup.procs`` file is given (see trayapp.run.cgroup), with ``prefix``
    (``nice``/``ionice``) before its command, held in by ``confinement``
    (sandbox, and rlimits for the ``limits`` no cgroup holds).

    ``lower_to``: the wrapper is started from the caller's thread, then given
    that niceness and the idle I/O class before it may run anything
    (:func:`trayapp.run.priority.lower_process`), instead of being forked by a
    lowered helper thread: under load, with every core busy with tasks at that
    same niceness, the helper waited its turn behind them while the engine's
    thread waited for it (tens of ms per start)."""
    argv, env = list(launch.argv), {**os.environ, **launch.env, MARKER_VARIABLE: launch.token}
    if confinement is not None:
        argv, env = confinement.wrap(launch, env, limits)
    command = ["/bin/sh", "-c", _HELD_WRAPPER if lower_to > 0 else _WRAPPER, "sparecycles-task",
               str(cgroup_procs or ""), *(prefix or []), *argv]
    popen = subprocess.Popen(command, cwd=launch.work_dir, env=env, start_new_session=True,
                             stdin=subprocess.PIPE if lower_to > 0 else subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_held_launch())
    if lower_to > 0:
        try:
            lower_process(popen.pid, lower_to)
            popen.stdin.write(b"lowered\n")
        except (OSError, psutil.Error):
            pass  # it is gone already; or, never told, it runs nothing (see _HELD_WRAPPER)
        finally:
            try:
                popen.stdin.close()
            except OSError:
                pass
    try:
        created = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        created = time.time()  # already gone: same_process() will say so
    return PosixTask(launch, popen.pid, created, popen=popen)


def _held_launch() -> Callable[[], None] | None:
    """The test hook that widens the race between a launch and a stop: with
    ``SPARECYCLES_TEST_HOLD_LAUNCH_S`` set, each launch waits that long between
    fork and exec (in the child, which already exists)."""
    hold = os.environ.get(HOLD_LAUNCH_VARIABLE)
    if not hold:
        return None
    seconds = float(hold)
    return lambda: time.sleep(seconds)


def describe_exit(code: int) -> str:
    """An exit code of a task run under ``sh`` (here, or in a cluster's job script)."""
    # sh reports a task killed by signal N as 128 + N.
    if 128 < code < 128 + 65:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return f"killed by {name} (exit code {code})"
    return f"exit code {code}"


class PosixRunner:
    """Attempts as process sessions, each in a cgroup of its own when ``cgroups``
    is given (:meth:`TaskCgroups.create`, None where the system refuses), held
    in by ``confinement`` (without one: no sandbox, rlimits only).

    ``problem`` (set: no task may run here, the slave lends nothing and says
    why) and ``warning`` (it runs them, but the lender should know) are what
    :mod:`trayapp.run.choice` found when it chose this runner."""

    def __init__(self, *, cgroups: TaskCgroups | None = None, lower_caller: bool = False,
                 confinement: Confinement | None = None, problem: str | None = None, warning: str | None = None):
        self.cgroups = cgroups
        self.confinement = confinement or Confinement()
        self.problem = problem
        self.warning = warning if warning or self.confinement.sandboxed else UNSANDBOXED_WARNING
        self._starts = LowPriorityStarts(lower_caller=lower_caller)
        # Cgroups of ended attempts still populated when their handle closed
        # (an orphan was exiting): removed at a later start, or at close.
        self._unreleased: set[str] = set()

    def start(self, launch: Launch) -> PosixTask:
        self._release_leftovers()
        procs = self.cgroups.prepare(launch.token) if self.cgroups is not None else None
        caps = TaskCaps(launch.memory_mb, launch.max_processes, launch.disk_mb)
        # The cgroup holds what its controllers can; rlimits hold the rest.
        limits = self.cgroups.limit(launch.token, caps) if procs is not None else caps
        try:
            if self._starts.lowers_after_start(launch.nice):
                task = start_process(launch, cgroup_procs=procs, confinement=self.confinement, limits=limits,
                                     lower_to=launch.nice)
            else:
                task = self._starts.run(launch.nice, lambda prefix: start_process(
                    launch, cgroup_procs=procs, prefix=prefix, confinement=self.confinement, limits=limits))
        except OSError:
            if self.cgroups is not None:
                self.cgroups.release(launch.token)
            raise
        # prepare() registered the cgroup, which the wrapper joins by itself (see _WRAPPER).
        task.on_close = self._release
        return task

    def adopt(self, launch: Launch, pid: int, created: float | None) -> PosixTask:
        task = PosixTask(launch, pid, created, on_close=self._release)
        if self.cgroups is not None and not task.has_ended():
            self.cgroups.adopt(launch.token, pid)
        return task

    def kill_at_once(self, handles: Iterable[PosixTask]) -> None:
        kill_trees(handles, self.cgroups)

    def suspend(self, handles: Iterable[PosixTask]) -> None:
        suspend_trees(handles, self.cgroups)

    def resume(self, handles: Iterable[PosixTask]) -> None:
        resume_trees(handles, self.cgroups)

    def describe_exit(self, code: int) -> str:
        return describe_exit(code)

    def memory_failure(self, handle: PosixTask) -> str | None:
        launch = handle.launch
        oom = self.cgroups is not None and self.cgroups.oom_killed(launch.token)
        caps, code, tail = TaskCaps(launch.memory_mb, launch.max_processes, launch.disk_mb), handle.exit_code(), \
            tail_of(launch.task_dir / "stderr.txt")
        return memory_failure(caps, code, tail, oom_killed=oom) or disk_failure(caps, code, tail)

    def describe(self) -> dict:
        return {"sandbox": "bwrap" if self.confinement.sandboxed else "off", "warning": self.warning}

    def task_cpu_seconds(self) -> float | None:
        if self.cgroups is not None:
            return self.cgroups.cpu_seconds()
        return descendants_cpu_seconds()

    def close(self) -> None:
        self._starts.close()
        if self.cgroups is not None:
            self.cgroups.close()

    def _release(self, token: str) -> None:
        if self.cgroups is None:
            return
        self.cgroups.release(token)
        if self.cgroups.has(token):
            self._unreleased.add(token)

    def _release_leftovers(self) -> None:
        for token in list(self._unreleased):
            self.cgroups.release(token)
            if not self.cgroups.has(token):
                self._unreleased.discard(token)
