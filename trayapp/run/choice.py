"""Which task runner runs this PC's tasks: the one place that chooses.

A new runner (Windows) is a module of its own behind
:class:`trayapp.run.runner.TaskRunner` plus a line here; the slave engine
gets whatever this returns and never asks which one it is.

The lender's settings choose the sandbox:

- ``sandbox = "on"``: every task in a bubblewrap sandbox; where bubblewrap
  cannot run, the runner has a ``problem``: the slave lends nothing and says why;
- ``sandbox = "off"``: tasks run as the lender's own programs would, with
  full access to the lender's account; the slave lends, with a warning;
- ``sandbox = "auto"`` (the default): like ``"on"`` for a slave, which runs
  other people's code; the master's own cores (``in_process``) run the
  user's own jobs, so there a missing sandbox is a warning, not a refusal.

``SPARECYCLES_SANDBOX`` in the slave's environment overrides the setting
(tests of the unsandboxed path set it to ``off``), as ``SPARECYCLES_CGROUPS=off``
turns cgroups off.
"""

from __future__ import annotations

import logging
import os
import sys

from trayapp.config import SANDBOX_MODES
from trayapp.run.cgroup import TaskCgroups
from trayapp.run.posix import PosixRunner
from trayapp.run.runner import TaskRunner
from trayapp.run.sandbox import Confinement, sandbox_status
from trayapp.run.warm import WarmRunner

log = logging.getLogger(__name__)


def task_runner(*, in_process: bool = False, sandbox: str = "off", network: bool = False,
                python: str | None = None, hidden: tuple[str, ...] = (), warm: bool = True) -> TaskRunner:
    """The runner for a slave daemon: tasks in cgroups of their own where the
    system allows. ``in_process``: for the master's own cores, whose engine
    shares the master's process; its thread is lowered to the tasks'
    priority, so they start without a hop to a helper thread. ``sandbox``,
    ``network``: the lender's settings; ``python``: the task interpreter (its
    folders are probed now, not at the first task); ``hidden``: folders no
    sandbox binds (the lender's home, the slave's data folder); ``warm``: the
    ``warm_starts`` setting (trayapp.run.warm)."""
    confinement, problem, warning = _confinement(sandbox, in_process=in_process, network=network, hidden=hidden)
    if confinement.sandboxed and python:
        log.info("read-only for tasks besides the system: %s", ", ".join(confinement.readonly_for(python)))
    cgroups = None if in_process else TaskCgroups.create()
    # Warm starts need Linux's pidfds and pid namespaces; SPARECYCLES_WARM=off turns
    # them off for one run (benchmarks compare with cold starts).
    warm = warm and sys.platform.startswith("linux") and os.environ.get("SPARECYCLES_WARM") != "off"
    return (WarmRunner if warm else PosixRunner)(cgroups=cgroups, lower_caller=in_process, confinement=confinement, problem=problem,
                       warning=warning)


def _confinement(mode: str, *, in_process: bool, network: bool,
                 hidden: tuple[str, ...]) -> tuple[Confinement, str | None, str | None]:
    """The confinement the settings ask for, with the runner's problem and warning."""
    forced = os.environ.get("SPARECYCLES_SANDBOX")
    if forced in SANDBOX_MODES and forced != mode:
        log.info("SPARECYCLES_SANDBOX=%s overrides sandbox = %r", forced, mode)
        mode = forced
    bare = Confinement()
    if mode == "off":
        return bare, None, None  # the runner warns that its tasks run without a sandbox
    available, why = sandbox_status() if sys.platform.startswith("linux") else (
        False, f"no sandbox for tasks exists on {sys.platform} yet")
    if available:
        log.info("%s", why)
        return Confinement(sandboxed=True, network=network, hidden=hidden), None, None
    if mode == "auto" and in_process:
        return bare, None, f"your own tasks run without a sandbox: {why}"
    return bare, f'{why}; or set sandbox = "off" to lend this PC without one', None
