"""The processes of a job's tasks, seen from outside their sandbox.

A sandboxed task sees only its own folder, a private ``/tmp`` and its own pid
namespace, so it cannot tell a test where it runs or what its pids are. The
test looks instead: every process of a task carries ``SPARECYCLES_JOB`` and
``SPARECYCLES_TASK`` in its environment (the sandbox keeps them), bubblewrap's
own processes included, which must end with the task too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import psutil

from trayapp.run.proctree import MARKER_VARIABLE


def _live_processes(wanted: Callable[[psutil.Process, dict], bool]) -> list[psutil.Process]:
    """Every process, zombies aside, whose environment ``wanted`` accepts; one that
    ends or cannot be read meanwhile is left out. Processes compare by pid and
    start time, so a recycled pid is not mistaken for them."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and wanted(proc, proc.environ()):
                found.append(proc)
        except (psutil.Error, KeyError, ValueError):
            continue
    return found


def task_processes(job_id: str, home=None) -> dict[int, list[psutil.Process]]:
    """The live processes of each running task of job ``job_id``, by task index;
    with ``home``, only those of the slave daemon whose home that is."""
    def of_the_job(proc: psutil.Process, env: dict) -> bool:
        return env.get("SPARECYCLES_JOB") == job_id and (home is None or _belongs_to(proc, env, str(home)))

    found: dict[int, list[psutil.Process]] = {}
    for proc in _live_processes(of_the_job):
        try:
            found.setdefault(int(proc.environ()["SPARECYCLES_TASK"]), []).append(proc)
        except (psutil.Error, KeyError, ValueError):
            continue
    return found


def task_processes_under(folder: Path) -> list[psutil.Process]:
    """Live task processes (they carry an attempt's marker) working in ``folder``, of any job."""
    prefix = str(folder) + os.sep
    return _live_processes(lambda proc, env: MARKER_VARIABLE in env and proc.cwd().startswith(prefix))


def kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass


def _belongs_to(proc: psutil.Process, env: dict, home: str) -> bool:
    """bubblewrap has its slave daemon's environment; inside it the task has not
    (the sandbox keeps SPARECYCLES_HOME out), but works in a folder of that home's spool."""
    return env.get("SPARECYCLES_HOME") == home or proc.cwd().startswith(home + "/")


def running_scripts(job_id: str, script: str = "main.py", *, home=None,
                    at_least: int = 1) -> dict[int, list[psutil.Process]]:
    """Like :func:`task_processes`, but only tasks with ``at_least`` processes
    running ``script`` (its interpreter has started, not only the sandbox around it;
    a forked child runs the same command)."""
    running = {}
    for idx, procs in task_processes(job_id, home).items():
        try:
            if sum(script in proc.cmdline() and proc.name() != "bwrap" for proc in procs) >= at_least:
                running[idx] = procs
        except psutil.Error:
            continue
    return running


def all_ended(processes) -> bool:
    """True when none of ``processes`` (psutil processes) runs any more."""
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True
