"""Which task runner runs this PC's tasks: the one place that chooses.

A new runner (sandboxed, Windows) is a module of its own behind
:class:`trayapp.run.runner.TaskRunner` plus a line here; the slave engine
gets whatever this returns and never asks which one it is.
"""

from __future__ import annotations

from trayapp.run.cgroup import TaskCgroups
from trayapp.run.posix import PosixRunner
from trayapp.run.runner import TaskRunner


def task_runner(*, in_process: bool = False) -> TaskRunner:
    """The runner for a slave daemon: tasks in cgroups of their own where the
    system allows. ``in_process``: for the master's own cores, whose engine
    shares the master's process; its thread is lowered to the tasks'
    priority, so they start without a hop to a helper thread."""
    if in_process:
        return PosixRunner(lower_caller=True)
    return PosixRunner(cgroups=TaskCgroups.create())
