"""Task runners: how one attempt of a task runs on this PC, behind one protocol.

The slave engine (:mod:`trayapp.slave.engine`) talks to a :class:`TaskRunner`
and to the :class:`TaskHandle` objects it returns, and to nothing else about
processes. What a runner is given is one :class:`Launch`; what it must keep
is the attempt's folder layout, which the spool packs results from::

    task_dir/work/        the task's working directory (made before start)
    task_dir/stdout.txt   the task's output, written as it runs
    task_dir/stderr.txt

Today's runner is :class:`trayapp.run.posix.PosixRunner` (a session per
attempt, pidfd, cgroup or process-group kills), which wraps ``argv`` in a
bubblewrap sandbox when :mod:`trayapp.run.choice` gives it one
(:mod:`trayapp.run.sandbox`); a Windows runner would use job objects. Each
is a module of its own plus a line in :mod:`trayapp.run.choice`, where the
runner is chosen from the lender's settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Protocol


@dataclass(frozen=True)
class Launch:
    """Everything a runner needs to start one attempt, a sandbox included."""

    token: str  # unique per attempt
    task_dir: Path
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # added to the slave's environment
    slot: int = 0  # which of the slave's slots (0 .. slots-1) the attempt holds
    cores: int = 1
    nice: int = 10  # low CPU (and, where the runner can, idle I/O) priority; 0 = the slave's own
    time_limit_s: float | None = None  # the engine enforces it; a runner may add a cap of its own
    memory_mb: int | None = None  # the attempt's caps, held by its cgroup or by rlimits
    max_processes: int | None = None
    disk_mb: int | None = None  # what its folder and writable caches may fill (trayapp.run.caps)
    # Folders the attempt may write besides its own: its slot's caches and its scratch folder.
    writable: tuple[Path, ...] = ()
    # Modules to fork the attempt from an interpreter that imported them
    # (trayapp.run.warm); empty: a cold start. Attempts with the same ``warm_key``
    # (one master's job, one interpreter) on one slot share that interpreter.
    warm: tuple[str, ...] = ()
    warm_key: str = ""

    @property
    def work_dir(self) -> Path:
        return self.task_dir / "work"


class TaskHandle(Protocol):
    """One attempt that runs, ran, or was adopted after a restart."""

    launch: Launch
    # What the spool records, so that :meth:`TaskRunner.adopt` finds the
    # attempt again after a restart (pids are recycled: the pair is the identity).
    pid: int
    created: float | None

    def wait_fd(self) -> int | None:
        """A file descriptor that turns readable when the attempt ends (a pidfd),
        or None: the engine then asks :meth:`has_ended` every 50 ms."""

    def has_ended(self) -> bool: ...

    def exit_code(self) -> int | None:
        """The task's exit code, or None if it never gave one (it was killed, or vanished)."""

    def kill_whole_tree(self) -> None:
        """Kill every process of the attempt, wherever it hid, and wait until they are gone."""

    def close(self) -> None:
        """Release what the handle holds (its wait fd, its cgroup); after the last use."""


class TaskRunner(Protocol):
    """Starts and adopts attempts, and stops or suspends many at once.

    Suspending, resuming and the first, fast kill act on every running
    attempt in one call rather than handle by handle: how fast a returning
    user gets the PC back is one pass over the process table for all tasks,
    not one per task.
    """

    # Set: no task may run here (a sandbox was asked for and cannot be had);
    # the slave lends nothing and says why.
    problem: str | None
    # Set: tasks run, but the lender should know (e.g. without a sandbox).
    warning: str | None

    def start(self, launch: Launch) -> TaskHandle:
        """Start the attempt in ``launch.work_dir``; OSError if it cannot start."""

    def adopt(self, launch: Launch, pid: int, created: float | None) -> TaskHandle:
        """The handle of an attempt a previous slave started (after a restart), from
        what the spool recorded. It may have ended meanwhile: ``has_ended()`` says so."""

    # The user came back: every tree of every task is hit at once, in one pass
    # where the system allows, before each handle's slow, thorough kill.
    def kill_at_once(self, handles: Iterable[TaskHandle]) -> None:
        """SIGKILL (or the like) every process of every attempt, without waiting."""

    def suspend(self, handles: Iterable[TaskHandle]) -> None:
        """Stop every process of every attempt; :meth:`resume` lets them go on."""

    def resume(self, handles: Iterable[TaskHandle]) -> None: ...

    def describe_exit(self, code: int) -> str:
        """An exit code as the lab user should read it (e.g. "killed by SIGKILL")."""

    def memory_failure(self, handle: TaskHandle) -> str | None:
        """Why the attempt failed, when it went over its memory cap (``launch.memory_mb``),
        or a file of it past its disk cap (``launch.disk_mb``); else None. Asked
        before the handle is closed."""

    def describe(self) -> dict:
        """What the slave's state says about how its tasks run (``sandbox``, ``warning``)."""

    def task_cpu_seconds(self) -> float | None:
        """CPU time every task used so far, None if unknown now (the idle policy
        subtracts it from the PC's load)."""

    def close(self) -> None:
        """Release the runner's own resources, once no handle is used any more."""
