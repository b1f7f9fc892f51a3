"""The processes of a job's tasks, seen from outside their sandbox.

A sandboxed task sees only its own folder, a private ``/tmp`` and its own pid
namespace, so it cannot tell a test where it runs or what its pids are. The
test looks instead: every process of a task carries ``SPARECYCLES_JOB`` and
``SPARECYCLES_TASK`` in its environment (the sandbox keeps them), bubblewrap's
own processes included, which must end with the task too.
"""

from __future__ import annotations

import psutil


def task_processes(job_id: str, home=None) -> dict[int, list[psutil.Process]]:
    """The live processes of each running task of job ``job_id``, by task index;
    with ``home``, only those of the slave daemon whose home that is.
    Processes compare by pid and start time, so a recycled pid is not mistaken for them."""
    found: dict[int, list[psutil.Process]] = {}
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
            if home is not None and not _belongs_to(proc, env, str(home)):
                continue
            if env.get("SPARECYCLES_JOB") == job_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.setdefault(int(env["SPARECYCLES_TASK"]), []).append(proc)
        except (psutil.Error, KeyError, ValueError):
            continue
    return found


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
