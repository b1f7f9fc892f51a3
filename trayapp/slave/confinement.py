"""What holds a slave's tasks in: sandbox, per-slot compiler caches, caps.

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

Each running task holds one slot's cache folder (``<spool>/caches/slot-N``,
kept across tasks so Brian's compiled code is reused, never shared by two
tasks at once).
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

log = logging.getLogger(__name__)

UNSANDBOXED_WARNING = 'tasks run without a sandbox (sandbox = "off"): they can read and change your files'


class TaskConfiner:
    def __init__(self, *, mode: str, python: str, spool_root: Path, in_process: bool, network: bool = False,
                 max_task_memory_mb: int = 0, max_task_processes: int = 0, hidden: tuple[str, ...] = ()):
        self.caches = spool_root / "caches"
        self.memory_limit_mb = slave_memory_limit_mb(max_task_memory_mb)
        self.max_processes = max_task_processes
        self.sandbox: Sandbox | None = None
        self.problem: str | None = None  # set: the slave lends nothing
        self.warning: str | None = None  # set: it lends, but the lender should know
        self._slots: dict[str, int] = {}
        self._caps: dict[str, TaskCaps] = {}
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
            readonly = interpreter_paths(python, hidden=(str(Path.home()), str(spool_root.parent), *hidden))
            self.sandbox = Sandbox(readonly_paths=readonly, network=network)
            log.info("%s; read-only for them besides the system: %s", why, ", ".join(readonly) or "nothing")
        elif mode == "auto" and in_process:
            self.warning = f"your own tasks run without a sandbox: {why}"
        else:
            self.problem = f'{why}; or set sandbox = "off" to lend this PC without one'

    def describe(self) -> dict:
        return {"sandbox": "bwrap" if self.sandbox is not None else "off", "warning": self.warning,
                "max_task_memory_mb": self.memory_limit_mb}

    def refusal(self, requested_mb: int | None) -> str | None:
        return memory_refusal(requested_mb, self.memory_limit_mb)

    def confine(self, token: str, requested_mb: int | None, cgroups: TaskCgroups | None,
                slot: int | None = None) -> Confinement:
        """The attempt's confinement; its cgroup (if any) must be prepared first.
        ``slot``: the one an adopted task already holds."""
        caps = caps_for(requested_mb, self.memory_limit_mb, self.max_processes)
        self._caps[token] = caps
        left = cgroups.limit(token, caps) if cgroups is not None and cgroups.has(token) else caps
        self._slots[token] = self._free_slot() if slot is None else slot
        cache = None
        if self.sandbox is not None:
            cache = self.caches / f"slot-{self._slots[token]}"
            cache.mkdir(parents=True, exist_ok=True)
        return Confinement(self.sandbox, cache, left)

    def slot_of(self, token: str) -> int | None:
        return self._slots.get(token)

    def failure_reason(self, token: str, exit_code: int | None, stderr_tail: str,
                       cgroups: TaskCgroups | None) -> str | None:
        """Why the attempt failed, when it was over its memory cap; else None."""
        caps = self._caps.get(token)
        if caps is None:
            return None
        oom = cgroups is not None and cgroups.oom_killed(token)
        return memory_failure(caps, exit_code, stderr_tail, oom_killed=oom)

    def release(self, token: str) -> None:
        self._slots.pop(token, None)
        self._caps.pop(token, None)

    def _free_slot(self) -> int:
        taken = set(self._slots.values())
        return next(n for n in range(len(taken) + 1) if n not in taken)
