"""What a task runs in, on the slave: its job's own environment and its slot's caches.

A job whose requirements the task environment meets as it is runs there, as
before. Otherwise the engine builds an environment for the requirement set
(:mod:`trayapp.install.envs`) on a worker thread, never in its own loop, and
the task waits in its slot meanwhile: the master hears ``preparing`` every few
seconds ("preparing environment (brian2==2.8.0, matplotlib), 40 s") and shows
it on the task. Tasks of one set share one build; a build that fails declines
them with the installer's error tail (marked ``requirements``: the master
offers that job here no more, and fails it once no host can run it), and the
failure is remembered for a while so no grant starts the same failing build
again.

:class:`JobEnvironments` is owned by :class:`trayapp.slave.engine.SlaveEngine`,
which hands it each task with requirements (:meth:`JobEnvironments.start`),
ticks it, and gives it what it calls back: the engine's own ``start`` (a
task with the python of its environment), ``session_of`` (a master's
session), ``accepts_work`` and ``wake``.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from trayapp.install.envbuild import EnvBuildError
from trayapp.install.envs import EnvStore, canonical_requirements, describe_requirements
from trayapp.slave.requirements import RequirementChecker
from trayapp.slave.session import Session
from trayapp.slave.spool import SpoolTask

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0


@dataclass
class Preparing:
    """A started task waiting in its slot for its environment."""

    task: SpoolTask
    key: str
    requirements: tuple[str, ...]
    since: float  # time.monotonic()
    reported: float = -math.inf

    def detail(self, now: float) -> str:
        return f"preparing environment ({describe_requirements(self.requirements)}), {now - self.since:.0f} s"


# The engine's start of a task: with the python of the job's environment and
# that environment's key, or (None, None) in the task environment as it is.
StartTask = Callable[[Session, SpoolTask, "str | None", "str | None"], None]


class JobEnvironments:
    """The tasks that wait in their slots for their job's environment, and its builds."""

    def __init__(self, envs: EnvStore | None, requirements: RequirementChecker, *, start: StartTask,
                 session_of: Callable[[str], Session | None], accepts_work: Callable[[], bool],
                 wake: Callable[[], None]):
        self.envs = envs
        self.requirements = requirements
        self._start = start
        self._session_of = session_of
        self._accepts_work = accepts_work
        self._wake = wake
        self.preparing: dict[str, Preparing] = {}
        self._builds: dict[str, Future] = {}
        self._build_pool = ThreadPoolExecutor(2, thread_name_prefix="env-build") if envs is not None else None

    def __len__(self) -> int:
        """Tasks that hold a slot while their environment is built."""
        return len(self.preparing)

    def __contains__(self, token: str) -> bool:
        return token in self.preparing

    def holding(self) -> dict[str, int]:
        """Preparing tasks by master: they count as its tasks for fair share."""
        per_master: dict[str, int] = {}
        for prepared in self.preparing.values():
            per_master[prepared.task.master] = per_master.get(prepared.task.master, 0) + 1
        return per_master

    # ----- starting a task with requirements --------------------------------------

    def start(self, session: Session, task: SpoolTask, requires: list[str]) -> None:
        """Start the task where its requirements are met, in an environment of
        its own if needed (built first, the task waiting), or decline it."""
        unmet = self.requirements.unmet(requires) if requires else None
        if unmet is None:
            self._start(session, task, None, None)
            return
        if self.envs is None:
            session.send("declined", token=task.token, reason=unmet, retry=True, requirements=True)
            return
        try:
            requirements = canonical_requirements(requires)
            key = self.envs.key_for(requirements)
        except Exception as exc:  # noqa: BLE001 - an unreadable requirement or a broken base interpreter
            session.send("declined", token=task.token, reason=f"cannot prepare its environment: {exc}", retry=True,
                         requirements=True)
            return
        failure = self.envs.recent_failure(key)
        if failure:
            session.send("declined", token=task.token, retry=True, requirements=True,
                         reason=f"cannot prepare environment ({describe_requirements(requirements)}): {failure}")
            return
        python = self.envs.python_of(key)
        if python:
            self._start(session, task, python, key)
            return
        self.preparing[task.token] = Preparing(task, key, requirements, time.monotonic())
        if key not in self._builds:
            log.info("preparing environment %s (%s) for job %s", key, ", ".join(requirements), task.job)
            future = self._build_pool.submit(self.envs.build, requirements, key)
            future.add_done_callback(lambda _done: self._wake())
            self._builds[key] = future
        self._report_preparing()

    def _report_preparing(self) -> None:
        now = time.monotonic()
        for prep in self.preparing.values():
            session = self._session_of(prep.task.master)
            if session is not None and now - prep.reported >= PROGRESS_EVERY_S:
                session.send("preparing", token=prep.task.token, detail=prep.detail(now))
                prep.reported = now

    def tick(self) -> None:
        """Start (or decline) the tasks whose environment build ended; report on the others."""
        for key, future in list(self._builds.items()):
            if not future.done():
                continue
            del self._builds[key]
            python, error = None, None
            try:
                python = future.result()
            except EnvBuildError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a bug in a build must not stop the engine
                log.exception("building environment %s failed", key)
                error = f"internal error: {exc}"
            for token, prep in [(t, p) for t, p in self.preparing.items() if p.key == key]:
                del self.preparing[token]
                session = self._session_of(prep.task.master)
                if session is None:
                    continue  # its master reconciles on return and queues the task again
                if error:
                    session.send("declined", token=token, retry=True, requirements=True,
                                 reason=f"cannot prepare environment ({describe_requirements(prep.requirements)}):"
                                        f" {error}")
                elif not self._accepts_work():
                    session.send("declined", token=token, reason="not available any more", retry=True)
                else:
                    self._start(session, prep.task, python, key)
        self._report_preparing()

    def cancel(self, token: str, master: str) -> bool:
        """Stop waiting for the task's environment (its master cancelled it)."""
        prepared = self.preparing.get(token)
        if prepared is None or prepared.task.master != master:
            return False
        del self.preparing[token]
        return True

    def cancel_all(self) -> list[Preparing]:
        """Stop waiting for every environment (the engine stops): no build's end
        starts a task. Returns the tasks that waited, for their masters to hear."""
        waiting = list(self.preparing.values())
        self.preparing.clear()
        return waiting

    def cancel_all_of(self, master: str) -> None:
        for token in [t for t, p in self.preparing.items() if p.task.master == master]:
            del self.preparing[token]

    def reports(self, master: str) -> list[dict]:
        """For ``sync``: the master keeps these tasks as under way."""
        return [{"token": p.task.token, "state": "preparing"} for p in self.preparing.values()
                if p.task.master == master]

    # ----- the environments' users -----------------------------------------------------

    def started(self, key: str | None, token: str, pid: int, created: float | None) -> None:
        """The task runs in environment ``key`` (None: the task environment): it is
        kept while the task runs."""
        if key is not None and self.envs is not None:
            self.envs.mark_in_use(key, token, pid, created)

    def release(self, token: str) -> None:
        """The task ended or was forgotten: its hold on its environment goes."""
        if self.envs is not None:
            self.envs.release(token)

    def close(self) -> None:
        if self._build_pool is not None:
            self._build_pool.shutdown(wait=False, cancel_futures=True)
