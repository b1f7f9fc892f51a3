"""What a task runs in, on the slave: its job's own environment and its slot's caches.

A job whose requirements the task environment meets as it is runs there, as
before. Whether it does is decided off the engine's loop: reading what is
installed starts the task interpreter (one start for all of a job's names,
kept until the task environment changes), so a ``start`` with 300 made-up
names holds its slot for a moment and never the lender's ``status``. A line
that names a location (URL, path) is declined at once, with the fix.
Otherwise the engine builds an environment for the requirement set
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

from trayapp.install.envbuild import EnvBuildError, unresolvable_package
from trayapp.install.envs import EnvStore, canonical_requirements, describe_requirements
from trayapp.slave.identity import folder_of
from trayapp.slave.requirements import RequirementChecker, refused_requirements
from trayapp.slave.session import Session
from trayapp.slave.spool import SpoolTask

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0


@dataclass
class Preparing:
    """A started task waiting in its slot for its environment (or, with no key
    yet, for the check of its requirements)."""

    task: SpoolTask
    key: str | None
    requirements: tuple[str, ...]
    since: float  # time.monotonic()
    reported: float = -math.inf

    def detail(self, now: float, note: str | None = None) -> str:
        if self.key is None:
            return f"checking its requirements, {now - self.since:.0f} s"
        return (f"preparing environment ({describe_requirements(self.requirements)}), {now - self.since:.0f} s"
                + (f"; {note}" if note else ""))


@dataclass(frozen=True)
class Decision:
    """Where a task with requirements runs, as the check off the loop found:
    ``run`` (task environment), ``ready`` (built environment ``python``),
    ``build`` (environment ``key`` to build) or ``decline`` (``reason``)."""

    action: str
    reason: str = ""
    key: str | None = None
    python: str | None = None
    requirements: tuple[str, ...] = ()


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
        self._checks: dict[str, Future] = {}  # by token
        self._build_pool = ThreadPoolExecutor(2, thread_name_prefix="env-build") if envs is not None else None
        self._check_pool = ThreadPoolExecutor(1, thread_name_prefix="requirement-check")

    def __len__(self) -> int:
        """Tasks that hold a slot while their environment is built."""
        return len(self.preparing)

    def __contains__(self, token: str) -> bool:
        return token in self.preparing

    def task_of(self, token: str) -> SpoolTask | None:
        prepared = self.preparing.get(token)
        return prepared.task if prepared is not None else None

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
        if not requires:
            self._start(session, task, None, None)
            return
        refused = refused_requirements(requires)
        if refused:
            session.send("declined", token=task.token, reason=refused, retry=True, requirements=True,
                         code="requirements")
            return
        installed = self.requirements.cached()
        if installed is not None and self.requirements.unmet(requires, installed) is None:
            self._start(session, task, None, None)  # known at once: no hop to the checker
            return
        now = time.monotonic()
        # Quiet for a check that takes a moment: a "preparing" word only if it lasts.
        self.preparing[task.token] = Preparing(task, None, (), now, reported=now)
        future = self._check_pool.submit(self._decide, list(requires))
        future.add_done_callback(lambda _done: self._wake())
        self._checks[task.token] = future

    def _decide(self, requires: list[str]) -> Decision:
        """Off the loop: where a task with ``requires`` can run (starts interpreters)."""
        try:
            unmet = self.requirements.unmet(requires)
            if unmet is None:
                return Decision("run")
            if self.envs is None:
                return Decision("decline", unmet)
            requirements = canonical_requirements(requires)
            key = self.envs.key_for(requirements)
        except Exception as exc:  # noqa: BLE001 - an unreadable requirement or a broken base interpreter
            return Decision("decline", f"cannot prepare its environment: {exc}")
        failure = self.envs.recent_failure(key)
        if failure:
            return Decision("decline", f"cannot prepare environment ({describe_requirements(requirements)}): "
                                       f"{failure}")
        python = self.envs.python_of(key)
        if python:
            return Decision("ready", key=key, python=python)
        return Decision("build", key=key, requirements=requirements)

    def _checked(self, token: str, decision: Decision) -> None:
        prep = self.preparing.get(token)
        if prep is None:
            return  # cancelled while it was checked
        session = self._session_of(prep.task.master)
        if decision.action != "build":
            del self.preparing[token]
            if session is None:
                return  # its master reconciles on return and queues the task again
            if decision.action == "decline":
                package = unresolvable_package(decision.reason)  # a build that failed before, remembered
                session.send("declined", token=token, reason=decision.reason, retry=True, requirements=True,
                             code="unresolvable" if package else "environment", package=package)
            elif not self._accepts_work():
                session.send("declined", token=token, reason="not available any more", retry=True,
                                 code="unavailable")
            else:
                self._start(session, prep.task, decision.python, decision.key)
            return
        prep.key, prep.requirements, prep.reported = decision.key, decision.requirements, -math.inf
        if decision.key not in self._builds:
            log.info("preparing environment %s (%s) for job %s", decision.key, ", ".join(decision.requirements),
                     prep.task.job)
            # The first master to need it builds it, from its own wheel cache.
            future = self._build_pool.submit(self.envs.build, decision.requirements, decision.key,
                                             folder_of(prep.task.master))
            future.add_done_callback(lambda _done: self._wake())
            self._builds[decision.key] = future

    def _report_preparing(self) -> None:
        now = time.monotonic()
        for prep in self.preparing.values():
            session = self._session_of(prep.task.master)
            if session is not None and now - prep.reported >= PROGRESS_EVERY_S:
                note = self.envs.notes.get(prep.key) if self.envs is not None and prep.key else None
                session.send("preparing", token=prep.task.token, detail=prep.detail(now, note))
                prep.reported = now

    def tick(self) -> None:
        """Start (or decline) the tasks whose check or environment build ended; report on the others."""
        for token, checking in list(self._checks.items()):
            if checking.done():
                del self._checks[token]
                try:
                    decision = checking.result()
                except Exception as exc:  # noqa: BLE001 - a bug in a check must not stop the engine
                    log.exception("checking the requirements of %s failed", token)
                    decision = Decision("decline", f"internal error: {exc}")
                self._checked(token, decision)
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
                    _decline_build(session, token, prep.requirements, error)
                elif not self._accepts_work():
                    session.send("declined", token=token, reason="not available any more", retry=True,
                                 code="unavailable")
                else:
                    note = self.envs.entry_note(key) if self.envs is not None else ""
                    if note:  # said on the task until it starts, and kept in the slave's log
                        session.send("preparing", token=token, detail=note)
                        log.info("environment %s for job %s: %s", key, prep.task.job, note)
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
        self._check_pool.shutdown(wait=False, cancel_futures=True)
        if self._build_pool is not None:
            self._build_pool.shutdown(wait=False, cancel_futures=True)


def _decline_build(session, token: str, requirements, error: str) -> None:
    """Decline a task whose environment could not be built, with a code its master
    decides on: ``unresolvable`` (the index has no such package or version:
    nothing a host can change, so the master fails the job) or ``environment``."""
    package = unresolvable_package(error)
    session.send("declined", token=token, retry=True, requirements=True,
                 code="unresolvable" if package else "environment", package=package,
                 reason=f"cannot prepare environment ({describe_requirements(requirements)}): {error}")
