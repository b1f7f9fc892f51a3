"""What holds a slave's tasks in: the sandbox and the caps.

The lender's settings choose the sandbox:

- ``sandbox = "on"``: every task in a bubblewrap sandbox; where bubblewrap
  cannot run, the slave lends nothing and says why;
- ``sandbox = "off"``: tasks run as the lender's own programs would, with
  full access to the lender's account; the slave lends, with a warning;
- ``sandbox = "auto"`` (the default): like ``"on"`` for a slave, which runs
  other people's code; the master's own cores (``in_process``) run the
  user's own jobs, so there a missing sandbox is a warning, not a refusal.

``SPARECYCLES_SANDBOX`` in the slave's environment overrides the setting:
test suites whose tasks deliberately write outside their folder set it to
``off``, as ``SPARECYCLES_CGROUPS=off`` turns cgroups off.

Besides its own folder, a sandboxed task may write its slot's compiler cache
(:mod:`trayapp.run.taskcache`) and its scratch folder (``TMPDIR``).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from trayapp.config import SANDBOX_MODES
from trayapp.run.caps import TaskCaps, caps_for, memory_failure, memory_refusal, slave_memory_limit_mb
from trayapp.run.cgroup import TaskCgroups
from trayapp.run.sandbox import Confinement, Sandbox, interpreter_paths, sandbox_status
from trayapp.run.taskcache import slot_cache_dir

log = logging.getLogger(__name__)

UNSANDBOXED_WARNING = 'tasks run without a sandbox (sandbox = "off"): they can read and change your files'


def task_writable(spool_root: Path, slot: int, run_dir: Path) -> tuple[Path, ...]:
    """What a task may write besides its working folder: its slot's caches and its scratch folder."""
    return slot_cache_dir(spool_root, slot).parent, run_dir / "tmp"


class TaskConfiner:
    def __init__(self, *, mode: str, python: str, spool_root: Path, in_process: bool, network: bool = False,
                 max_task_memory_mb: int = 0, max_task_processes: int = 0):
        self.memory_limit_mb = slave_memory_limit_mb(max_task_memory_mb)
        self.max_processes = max_task_processes
        self.network = network
        self.hidden = (str(Path.home()), str(spool_root.parent))
        self.problem: str | None = None  # set: the slave lends nothing
        self.warning: str | None = None  # set: it lends, but the lender should know
        self._readonly: dict[str, tuple[str, ...]] = {}  # per task interpreter (job environments have their own)
        self._caps: dict[str, TaskCaps] = {}
        self.sandboxed = False
        forced = os.environ.get("SPARECYCLES_SANDBOX")
        if forced in SANDBOX_MODES and forced != mode:
            log.info("SPARECYCLES_SANDBOX=%s overrides sandbox = %r", forced, mode)
            mode = forced
        if mode == "off":
            self.warning = UNSANDBOXED_WARNING
            return
        available, why = sandbox_status() if sys.platform.startswith("linux") else (
            False, f"no sandbox for tasks exists on {sys.platform} yet")
        if available:
            self.sandboxed = True
            log.info("%s; read-only for them besides the system: %s", why, ", ".join(self._readonly_for(python)))
        elif mode == "auto" and in_process:
            self.warning = f"your own tasks run without a sandbox: {why}"
        else:
            self.problem = f'{why}; or set sandbox = "off" to lend this PC without one'

    def describe(self) -> dict:
        return {"sandbox": "bwrap" if self.sandboxed else "off", "warning": self.warning,
                "max_task_memory_mb": self.memory_limit_mb}

    def refusal(self, requested_mb: int | None) -> str | None:
        return memory_refusal(requested_mb, self.memory_limit_mb)

    def confine(self, token: str, requested_mb: int | None, cgroups: TaskCgroups | None, python: str, *,
                writable: tuple[Path, ...]) -> Confinement:
        """The attempt's confinement; its cgroup (if any) must be prepared first."""
        caps = self.remember(token, requested_mb)
        left = cgroups.limit(token, caps) if cgroups is not None and cgroups.has(token) else caps
        sandbox = Sandbox(self._readonly_for(python), network=self.network) if self.sandboxed else None
        return Confinement(sandbox, writable, left)

    def remember(self, token: str, requested_mb: int | None) -> TaskCaps:
        """The caps an attempt runs with, kept to explain its end."""
        self._caps[token] = caps_for(requested_mb, self.memory_limit_mb, self.max_processes)
        return self._caps[token]

    def failure_reason(self, token: str, exit_code: int | None, stderr_tail: str,
                       cgroups: TaskCgroups | None) -> str | None:
        """Why the attempt failed, when it was over its memory cap; else None."""
        caps = self._caps.get(token)
        if caps is None:
            return None
        oom = cgroups is not None and cgroups.oom_killed(token)
        return memory_failure(caps, exit_code, stderr_tail, oom_killed=oom)

    def release(self, token: str) -> None:
        self._caps.pop(token, None)

    def _readonly_for(self, python: str) -> tuple[str, ...]:
        if python not in self._readonly:
            self._readonly[python] = interpreter_paths(python, hidden=self.hidden)
        return self._readonly[python]
