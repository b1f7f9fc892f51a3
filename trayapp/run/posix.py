"""Running one attempt of a task as a process on this machine.

Each attempt gets its own folder (``spool/tasks/<token>/`` on a slave)::

    work/         a fresh copy of the job folder: the task's working directory
    stdout.txt    the task's output, written as it runs
    stderr.txt
    exitcode      written by the wrapper when the task ends

The task runs under a tiny ``sh`` wrapper that records the exit code in a
file. That file is what lets a dispatcher killed with SIGKILL and restarted
adopt tasks that kept running meanwhile, or collect the ones that finished,
instead of running them again: a process that is not our child cannot be
``wait()``-ed for its exit status. ``sh`` costs a few milliseconds per task;
a Python wrapper would cost tens.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from trayapp.run.proctree import MARKER_VARIABLE, kill_tree, same_process
from trayapp.run.sandbox import Confinement
from trayapp.taskparams import task_argument, write_task_params

# Readers look at the exit code file only once the wrapper has exited (or, after
# a restart, once its pid is gone), so a plain write is complete when read; an
# external `mv` would cost a process per task for nothing.
#
# $1 is a cgroup's `cgroup.procs` file or empty: the wrapper joins the task's
# cgroup before it starts anything, so no process of the task is born outside.
_WRAPPER = ('cg=$1; shift; [ -z "$cg" ] || echo $$ >"$cg"; '
            '"$@" >../stdout.txt 2>../stderr.txt </dev/null; code=$?; echo "$code" >../exitcode; exit "$code"')

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class TaskSpec:
    """What to run: one attempt of one task, as the slave receives it."""

    token: str  # unique per attempt; marks its processes
    job_id: str
    idx: int
    params: dict
    main: str
    time_limit_s: float | None = None
    cores: int = 1
    memory_mb: int | None = None  # what the job asked for (its manifest's memory), if anything


@dataclass
class TaskProcess:
    """One attempt's process, whether we started it or adopted it after a restart."""

    spec: TaskSpec
    run_dir: Path
    pid: int
    created: float
    deadline: float | None  # time.monotonic() after which the task is over its limit
    popen: subprocess.Popen | None = None
    pidfd: int | None = field(default=None, repr=False)
    timed_out: bool = False

    def __post_init__(self) -> None:
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self.pidfd = None  # no pidfd (old kernel, not Linux): the dispatcher polls

    def has_ended(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is not None
        return same_process(self.pid, self.created) is None

    def exit_code(self) -> int | None:
        """The task's exit code, or None if it never wrote one (it was killed)."""
        try:
            return int((self.run_dir / "exitcode").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        kill_tree(self.pid, self.created, self.spec.token)
        if self.popen is not None:
            self.popen.poll()

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def stderr_tail(self, max_bytes: int = 2000, max_lines: int = 20) -> str:
        return tail_of(self.run_dir / "stderr.txt", max_bytes, max_lines)


def tail_of(path: Path, max_bytes: int = 2000, max_lines: int = 20) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()[-max_lines:]
    return "\n".join(lines)


def prepare(spec: TaskSpec, run_dir: Path, template: Path) -> None:
    """Make the attempt's folder: a fresh copy of the job folder plus params.json (and params.pkl)."""
    work = run_dir / "work"
    if work.exists():  # left over from a start that crashed half-way
        shutil.rmtree(work)
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template, work)
    write_task_params(work, spec.params)


@dataclass(frozen=True)
class LaunchSettings:
    python: str
    nice: int = 10


def lower_this_threads_priority(nice: int) -> None:
    """Make every process this thread starts from now on inherit low CPU and I/O
    priority. On Linux both are per thread and copied by fork, so a spawning
    thread set up once saves an exec of `nice` and `ionice` for every task."""
    tid = threading.get_native_id()
    os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
    try:
        # Idle I/O class: a task's disk use waits whenever the PC's user needs the disk.
        psutil.Process(tid).ionice(psutil.IOPRIO_CLASS_IDLE)
    except (psutil.Error, AttributeError, OSError):
        pass


class Launcher:
    """Starts tasks at the settings' low priority.

    On Linux a process's CPU and I/O priority belong to the thread that forks
    it, so tasks are forked from one helper thread lowered once: that saves an
    exec of ``nice`` and one of ``ionice`` per task (a few ms of a task's
    start-up), and leaves the calling thread at full priority, which the slave
    engine needs to stop tasks the instant the PC's user returns. Elsewhere,
    ``nice``/``ionice`` prefix the command, where they exist."""

    def __init__(self, settings: LaunchSettings):
        self.settings = settings
        self._spawner: ThreadPoolExecutor | None = None
        if settings.nice > 0 and sys.platform.startswith("linux"):
            self._spawner = ThreadPoolExecutor(1, thread_name_prefix="task-spawner",
                                               initializer=lower_this_threads_priority, initargs=(settings.nice,))
            self._direct = LaunchSettings(python=settings.python, nice=0)

    def start(self, spec: TaskSpec, run_dir: Path, *, cgroup_procs: Path | None = None, python: str | None = None,
              extra_env: dict[str, str] | None = None, confinement: Confinement | None = None) -> TaskProcess:
        """``python`` replaces the task environment's interpreter (a job's own
        environment); ``extra_env`` is added to the task's environment;
        ``confinement`` holds it in (sandbox and caps)."""
        settings = self.settings if self._spawner is None else self._direct
        if python:
            settings = LaunchSettings(python=python, nice=settings.nice)
        if self._spawner is None:
            return start(spec, run_dir, settings, cgroup_procs=cgroup_procs, extra_env=extra_env,
                         confinement=confinement)
        return self._spawner.submit(start, spec, run_dir, settings, cgroup_procs=cgroup_procs,
                                    extra_env=extra_env, confinement=confinement).result()

    def close(self) -> None:
        if self._spawner is not None:
            self._spawner.shutdown(wait=False)


def _priority_prefix(nice: int) -> list[str]:
    prefix = []
    if nice > 0 and shutil.which("nice"):
        prefix += ["nice", "-n", str(nice)]
    # Idle I/O class: a task's disk use waits whenever the PC's user needs the disk.
    if nice > 0 and shutil.which("ionice"):
        prefix += ["ionice", "-c", "3"]
    return prefix


def start(spec: TaskSpec, run_dir: Path, settings: LaunchSettings, *,
          cgroup_procs: Path | None = None, extra_env: dict[str, str] | None = None,
          confinement: Confinement | None = None) -> TaskProcess:
    """Start the task as the leader of a new session, at low priority, in the
    cgroup whose ``cgroup.procs`` file is given (see trayapp.run.cgroup), and
    held in by ``confinement`` (sandbox and caps, see trayapp.run.sandbox)."""
    env = dict(os.environ)
    env.update({
        "SPARECYCLES_TASK": str(spec.idx),
        "SPARECYCLES_JOB": spec.job_id,
        MARKER_VARIABLE: spec.token,
        "PYTHONUNBUFFERED": "1",  # so stdout.txt shows progress while the task runs
        **(extra_env or {}),
    })
    # One slot is one core: numerical libraries must not each spawn a thread
    # per core, or N tasks on N cores fight over N*N threads.
    for variable in _THREAD_VARIABLES:
        env[variable] = str(spec.cores)
    task_argv = [settings.python, spec.main, task_argument(spec.params)]
    if confinement is not None:
        task_argv, env = confinement.wrap(task_argv, env, run_dir / "work")
    command = ["/bin/sh", "-c", _WRAPPER, "sparecycles-task", str(cgroup_procs or ""),
               *_priority_prefix(settings.nice), *task_argv]
    popen = subprocess.Popen(command, cwd=run_dir / "work", env=env, start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        created = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        created = time.time()  # already gone: same_process() will say so
    deadline = time.monotonic() + spec.time_limit_s if spec.time_limit_s else None
    return TaskProcess(spec, run_dir, popen.pid, created, deadline, popen=popen)


def describe_exit(code: int) -> str:
    # sh reports a task killed by signal N as 128 + N.
    if 128 < code < 128 + 65:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return f"killed by {name} (exit code {code})"
    return f"exit code {code}"
