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

Each running task also has a slot number, the smallest free one, which names
its Cython cache (:mod:`trayapp.run.taskcache`); it is kept in the task
folder's ``slot`` file so a restarted engine knows the slots of the tasks it
adopts.

:class:`JobEnvironments` is mixed into :class:`trayapp.slave.engine.SlaveEngine`,
which provides ``requirements``, ``running``, ``spool``, ``wake()``,
``accepts_work()``, ``_session_of()`` and ``_start()``.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from trayapp.install.envbuild import EnvBuildError
from trayapp.install.envs import EnvStore, canonical_requirements, describe_requirements
from trayapp.run.taskcache import prepare_task_caches, slot_cache_dir
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


class JobEnvironments:
    def _init_job_environments(self, envs: EnvStore | None) -> None:
        self.envs = envs
        self.preparing: dict[str, Preparing] = {}
        self.slot_of: dict[str, int] = {}
        self._builds: dict[str, Future] = {}
        self._build_pool = ThreadPoolExecutor(2, thread_name_prefix="env-build") if envs is not None else None

    def busy_slots(self) -> int:
        return len(self.running) + len(self.preparing)

    # ----- starting a task with requirements --------------------------------------

    def _start_with_requirements(self, session: Session, task: SpoolTask, requires: list[str]) -> None:
        unmet = self.requirements.unmet(requires) if requires else None
        if unmet is None:
            self._start(session, task)
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
            self._start(session, task, python=python, env_key=key)
            return
        self.preparing[task.token] = Preparing(task, key, requirements, time.monotonic())
        if key not in self._builds:
            log.info("preparing environment %s (%s) for job %s", key, ", ".join(requirements), task.job)
            future = self._build_pool.submit(self.envs.build, requirements, key)
            future.add_done_callback(lambda _done: self.wake())
            self._builds[key] = future
        self._report_preparing()

    def _report_preparing(self) -> None:
        now = time.monotonic()
        for prep in self.preparing.values():
            session = self._session_of(prep.task.master)
            if session is not None and now - prep.reported >= PROGRESS_EVERY_S:
                session.send("preparing", token=prep.task.token, detail=prep.detail(now))
                prep.reported = now

    def _tick_environments(self) -> None:
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
                elif not self.accepts_work():
                    session.send("declined", token=token, reason="not available any more", retry=True)
                else:
                    self._start(session, prep.task, python=python, env_key=key)
        self._report_preparing()

    def _cancel_preparing(self, token: str) -> bool:
        return self.preparing.pop(token, None) is not None

    def _preparing_reports(self, master: str) -> list[dict]:
        """For ``sync``: the master keeps these tasks as under way."""
        return [{"token": p.task.token, "state": "preparing"} for p in self.preparing.values()
                if p.task.master == master]

    # ----- slots and their caches -------------------------------------------------------

    def _task_caches(self, task: SpoolTask, run_dir: Path) -> dict[str, str]:
        """Give the task the smallest free slot and that slot's caches; returns its environment variables."""
        taken = set(self.slot_of.values())
        slot = next(n for n in range(len(taken) + 1) if n not in taken)
        self.slot_of[task.token] = slot
        (run_dir / "slot").write_text(str(slot))
        return prepare_task_caches(run_dir / "work", run_dir, slot_cache_dir(self.spool.root, slot), task.cores)

    def _adopt_slot(self, token: str, run_dir: Path) -> None:
        try:
            self.slot_of[token] = int((run_dir / "slot").read_text())
        except (OSError, ValueError):
            pass

    def _release_task(self, token: str) -> None:
        """The task ended or was forgotten: free its slot and its hold on its environment."""
        self.slot_of.pop(token, None)
        if self.envs is not None:
            self.envs.release(token)

    def _close_environments(self) -> None:
        if self._build_pool is not None:
            self._build_pool.shutdown(wait=False, cancel_futures=True)
