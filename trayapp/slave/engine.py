"""The slave engine: runs tasks for masters, speaking the protocol.

One engine owns one spool and a number of slots. Masters reach it through
sessions (a Unix socket from an agent started over SSH, or a socket pair for
the master's own "local" host); every session speaks :mod:`trayapp.wire.protocol`.
The engine is a single-threaded event loop, like the dispatcher: it wakes on
session input, on a task's exit (pidfd) and on timers.

The slave, not the master, decides whom it serves: masters declare how much
work they have (``demand``) and the engine grants freed slots by fair share.
Tasks outlive their master's connection: if the master goes away, its tasks
finish and their results wait in the spool until it comes back, fetches
them and acknowledges them (``ack``). A restarted engine settles what its
predecessor left in the spool (:meth:`SlaveEngine.recover`). When it may
work at all (the PC's user away, pause, donate) is :mod:`trayapp.slave.availability`.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import platform
import random
import re
import selectors
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from trayapp import __version__
from trayapp.wire.archive import ChecksumMismatchError, UnsafeArchiveError, ensure_unpacked
from trayapp.slave.availability import Availability, SlaveState
from trayapp.slave.fairshare import FairShare
from trayapp.slave.grants import Granting
from trayapp.run.proctree import kill_tree, processes_with_marker, same_process
from trayapp.wire.protocol import (
    INLINE_RESULTS_MAX,
    VERSION,
    ProtocolError,
    decode,
)
from trayapp.slave.requirements import RequirementChecker, VersionProbe
from trayapp.run.posix import (
    Launcher,
    LaunchSettings,
    TaskProcess,
    TaskSpec,
    describe_exit,
    lower_this_threads_priority,
    prepare,
)
from trayapp.slave.session import Session
from trayapp.slave.spool import Spool, SpoolTask
from trayapp.status import AttemptOutcome

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[0-9a-f]{8,64}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class SlaveSettings:
    slots: int
    python: str
    nice: int = 10
    max_results_mb: int = 2048
    min_free_mb: int = 200
    name: str = field(default_factory=platform.node)
    # Fair share, keyed by master name (user@pc) or master id.
    weights: dict = field(default_factory=dict)
    caps: dict = field(default_factory=dict)
    grant_policy: str = "fair"  # "by_demand" exists only as the benchmark's baseline
    # The master's own cores: the engine shares the master's process, so
    # results are handed over as a folder (no tar round trip) and tasks get
    # their low priority from the engine thread instead of `nice`/`ionice`.
    in_process: bool = False


class SlaveEngine(Availability, Granting):
    def __init__(self, spool: Spool, settings: SlaveSettings, *, slave_id: str,
                 fairshare: FairShare | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None):
        self.spool = spool.ensure()
        self.settings = settings
        self.slave_id = slave_id
        self.fairshare = fairshare or FairShare()
        self.clock = clock
        self.rng = rng or random.Random()
        # In-process (the master's own cores), serve() lowers the engine thread itself.
        self.launcher = Launcher(LaunchSettings(python=settings.python,
                                                nice=0 if settings.in_process else settings.nice))
        # Re-read every 10 min on a helper thread: Brian updated in the task
        # environment reaches the masters' host lists without a restart.
        self.version_probe = VersionProbe(settings.python, on_change=self.wake)
        self.requirements = RequirementChecker(settings.python)
        self.sessions: dict[int, Session] = {}
        self.tasks: dict[str, SpoolTask] = {}
        self.running: dict[str, TaskProcess] = {}
        self.problem: str | None = None
        self._last_state: tuple | None = None
        self._last_charge = clock()
        self._disk_checked = -math.inf
        self._stopping = False
        self._pending: list[socket.socket] = []
        self._lock = threading.Lock()
        self.on_state_change: Callable[[dict], None] | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    # ----- state ---------------------------------------------------------------

    @property
    def versions(self) -> dict:
        return self.version_probe.versions

    def describe(self) -> dict:
        usage = self.fairshare.snapshot(self.clock())
        per_master: dict[str, int] = {}
        for task in self.tasks.values():
            if task.state == "running":
                per_master[task.master] = per_master.get(task.master, 0) + 1
        finite = lambda t: None if t is None or math.isinf(t) else t  # noqa: E731 - JSON has no infinity
        names = {s.master: s.name for s in self.sessions.values() if s.master}
        return {"state": self.state.value,
                "reason": (self.problem or self.paused_reason or self.waiting_reason
                           or (self.donating_reason if self.state is SlaveState.DONATING else None)),
                "slots": self.settings.slots,
                "running": len(self.running), "running_by_master": per_master, "usage": usage,
                "master_names": names, "paused": self.paused_until is not None,
                "paused_until": finite(self.paused_until), "donating": self.donating,
                "donating_until": finite(self.donating_until), "available": self.available,
                "name": self.settings.name, **self.versions,
                # Tasks of its spool it could not take up again; their files wait for a fitting version.
                "unreadable_tasks": {str(path): why for path, why in self.spool.unreadable.items()}}

    def accepts_work(self) -> bool:
        return self.problem is None and self.paused_until is None and (self.available or self.donating)

    # ----- lifecycle -----------------------------------------------------------

    def add_connection(self, sock: socket.socket) -> None:
        """Hand the engine a new session; safe from any thread."""
        with self._lock:
            self._pending.append(sock)
        self.wake()

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def request_stop(self, *_args) -> None:
        self._stopping = True
        self.wake()

    def serve(self, listener: socket.socket | None = None, *, poll_s: float = 0.5) -> None:
        """Run until :meth:`request_stop`; tasks keep running when it returns
        unless a master asked for them to stop (``bye``)."""
        if self.settings.in_process and self.settings.nice > 0:
            lower_this_threads_priority(self.settings.nice)
        self.recover()
        if listener is not None:
            listener.setblocking(False)
        try:
            while not self._stopping:
                self._step(listener, poll_s)
            self.flush_all()
        finally:
            self.launcher.close()

    def flush_all(self) -> None:
        """Send what is queued for each master (blocking briefly), e.g. before exit."""
        for session in list(self.sessions.values()):
            try:
                session.sock.setblocking(True)
                session.sock.settimeout(2.0)
            except OSError:
                continue
            self._flush(session)

    def _step(self, listener: socket.socket | None, poll_s: float) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for sock in pending:
            sock.setblocking(False)
            self.sessions[sock.fileno()] = Session(sock)
        timeout = poll_s
        now_mono = time.monotonic()
        for proc in self.running.values():
            if proc.deadline is not None:
                timeout = min(timeout, max(0.0, proc.deadline - now_mono))
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            if listener is not None:
                selector.register(listener, selectors.EVENT_READ, "listen")
            for fd, session in self.sessions.items():
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if session.outbox else 0)
                selector.register(fd, events, session)
            for proc in self.running.values():
                if proc.pidfd is not None:
                    selector.register(proc.pidfd, selectors.EVENT_READ, "task")
                else:
                    timeout = min(timeout, 0.05)
            events = selector.select(timeout)
            self._apply_idle_report()  # idle detection (issue 4): a returning user's tasks die first
            for key, mask in events:
                if key.data == "wake":
                    os.read(self._wake_r, 4096)
                elif key.data == "listen":
                    try:
                        conn, _ = listener.accept()
                        conn.setblocking(False)
                        self.sessions[conn.fileno()] = Session(conn)
                    except BlockingIOError:
                        pass
                elif isinstance(key.data, Session):
                    if mask & selectors.EVENT_READ:
                        self._read(key.data)
                    if mask & selectors.EVENT_WRITE and key.data.sock.fileno() >= 0:
                        self._flush(key.data)
        self.tick()
        for session in list(self.sessions.values()):
            self._flush(session)

    def _read(self, session: Session) -> None:
        try:
            lines, why = session.receive()  # a runaway line is a protocol error too
            for line in lines:
                self.handle(session, decode(line))
        except ProtocolError as exc:
            log.warning("closing connection from %s: %s", session.name, exc)
            why = f"protocol error: {exc}"
        if why:
            self._drop(session, why)

    def _flush(self, session: Session) -> None:
        why = session.flush()
        if why:
            self._drop(session, why)

    def _drop(self, session: Session, why: str) -> None:
        fd = session.sock.fileno()
        if self.sessions.get(fd) is session:
            del self.sessions[fd]
        session.close(why)

    # ----- messages --------------------------------------------------------------

    def _session_of(self, master: str) -> Session | None:
        for session in self.sessions.values():
            if session.master == master:
                return session
        return None

    def handle(self, session: Session, message: dict) -> None:
        kind = message["type"]
        if kind != "hello" and session.master is None:
            raise ProtocolError(f"'{kind}' before 'hello'")
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            raise ProtocolError(f"a slave does not accept '{kind}'")
        handler(session, message)

    def _on_hello(self, session: Session, message: dict) -> None:
        self._check_disk(self.clock(), force=True)  # a master deciding whether to use us deserves a fresh answer
        master = str(message.get("master") or "")
        if not _HEX.match(master):
            raise ProtocolError("hello without a valid master id")
        session.master, session.name = master, str(message.get("name", master))[:200]
        session.send("hello", slave=self.slave_id, protocol=VERSION, version=__version__,
                     spool=str(self.spool.root), **self.describe())

    def _on_need_archive(self, session: Session, message: dict) -> None:
        sha = message["sha"]
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise ProtocolError("need_archive without a sha256")
        if self.spool.has_archive(sha):
            session.send("archive", sha=sha, present=True)
        else:
            session.send("archive", sha=sha, present=False, upload_path=str(self.spool.upload_path(sha)))

    def _on_archive_uploaded(self, session: Session, message: dict) -> None:
        sha, path = message["sha"], Path(str(message["path"]))
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise ProtocolError("archive_uploaded without a sha256")
        try:
            self.spool.accept_upload(sha, path)
        except (OSError, ChecksumMismatchError) as exc:
            session.send("archive_bad", sha=sha, reason=str(exc))
        else:
            session.send("archive_ok", sha=sha)
            try:
                # Unpacked now, with the hash just checked: the first task's start
                # neither hashes the archive again nor waits for the unpacking.
                ensure_unpacked(self.spool.archive_path(sha), self.spool.unpacked, verified=True)
            except Exception as exc:  # noqa: BLE001 - the first start tries again and tells the master
                log.info("archive %s: not unpacked on arrival (%s); the first task's start will say why",
                         sha[:12], exc)

    def _on_start(self, session: Session, message: dict) -> None:
        token = message["token"]
        if not isinstance(token, str) or not _HEX.match(token):
            raise ProtocolError("start without a valid token")
        if token in self.tasks:  # a re-sent start (the master reconnected): idempotent
            self._report(self.tasks[token], session)
            return
        unreadable = self.spool.unreadable.get(self.spool.task_dir(token) / "task.json")
        if unreadable:  # starting it again would overwrite the file it cannot read
            session.send("declined", token=token, reason=f"cannot read its task file: {unreadable}", retry=True)
            return
        if not self.accepts_work():
            session.send("declined", token=token, reason=self.problem or self.paused_reason or "not available",
                         retry=True)
            return
        if not session.grants and len(self.running) >= self.settings.slots:
            session.send("declined", token=token, reason="no free slot", retry=True)
            return
        if session.grants:
            session.grants.pop(0)
        try:
            task = SpoolTask(token=token, master=session.master, job=str(message["job"]), idx=int(message["idx"]),
                             params=dict(message["params"]), main=str(message["main"]),
                             archive_sha=str(message["archive_sha"]),
                             time_limit_s=message.get("time_limit_s"), cores=int(message.get("cores") or 1))
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed start: {exc}") from None
        if "/" in task.main or "\\" in task.main or task.main.startswith(".") or not _SHA.match(task.archive_sha):
            raise ProtocolError("start with an unsafe main script or archive name")
        requires = message.get("requires") or []
        if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
            raise ProtocolError("start with malformed requirements")
        unmet = self.requirements.unmet(requires)
        if unmet:
            session.send("declined", token=token, reason=unmet, retry=True, requirements=True)
            return
        self._start(session, task)

    def _start(self, session: Session, task: SpoolTask) -> None:
        archive = self.spool.archive_path(task.archive_sha)
        if not archive.is_file():
            session.send("declined", token=task.token, reason="archive missing; send it first", retry=True)
            return
        try:
            template = ensure_unpacked(archive, self.spool.unpacked)
        except ChecksumMismatchError as exc:
            archive.unlink(missing_ok=True)  # so the master's next need_archive re-sends it
            session.send("declined", token=task.token, reason=str(exc), retry=True)
            return
        except UnsafeArchiveError as exc:
            session.send("declined", token=task.token, reason=f"refused the job archive: {exc}", retry=False)
            return
        except (OSError, EOFError, Exception) as exc:  # noqa: BLE001 - tarfile raises many kinds
            reason = self.spool.problem(self.settings.min_free_mb) or f"cannot unpack the job archive: {exc}"
            self._set_problem(reason)
            session.send("declined", token=task.token, reason=reason, retry=True)
            return
        run_dir = self.spool.task_dir(task.token)
        spec = TaskSpec(task.token, task.job, task.idx, task.params, task.main, task.time_limit_s, task.cores)
        try:
            prepare(spec, run_dir, template)
            task.started = self.clock()
            self.spool.save(task)
            # Its own cgroup, where possible (issue 4): born inside, so nothing escapes a freeze.
            procs = self.cgroups.prepare(task.token) if self.cgroups is not None else None
            proc = self.launcher.start(spec, run_dir, cgroup_procs=procs)
        except OSError as exc:
            if self.cgroups is not None:
                self.cgroups.release(task.token)
            shutil.rmtree(run_dir, ignore_errors=True)
            disk = self.spool.problem(self.settings.min_free_mb)
            if disk:  # this slave's fault: no task can start until it is fixed
                self._set_problem(disk)
                session.send("declined", token=task.token, reason=disk, retry=True)
            else:  # perhaps this task's ("Argument list too long"): the master decides
                session.send("declined", token=task.token, reason=f"cannot start the task: {exc}", retry=True,
                             host_failed=True)
            return
        task.pid, task.created = proc.pid, proc.created
        self.spool.save(task)
        self.tasks[task.token] = task
        self.running[task.token] = proc
        if procs is not None:
            self.cgroups.adopt(task.token, proc.pid, born_inside=True)
        session.send("started", token=task.token, pid=proc.pid)

    def _on_cancel(self, session: Session, message: dict) -> None:
        token = message["token"]
        task = self.tasks.get(token)
        if task is None or task.master != session.master:
            session.send("finished", token=token, outcome=AttemptOutcome.CANCELLED.value, exit_code=None)
            return
        proc = self.running.pop(token, None)
        if proc is not None:
            proc.kill()
            proc.close()
        self._forget(task)
        session.send("finished", token=token, outcome=AttemptOutcome.CANCELLED.value, exit_code=None)

    def _on_ack(self, session: Session, message: dict) -> None:
        task = self.tasks.get(message["token"])
        if task is not None and task.master == session.master and task.state == "finished":
            self._forget(task)

    def _on_sync(self, session: Session, message: dict) -> None:
        mine = [t.summary() for t in self.tasks.values() if t.master == session.master]
        session.send("tasks", tasks=mine)
        session.send("state", **self.describe())

    def _on_control(self, session: Session, message: dict) -> None:
        action, until = message["action"], message.get("until")
        if until is not None and not isinstance(until, (int, float)):
            raise ProtocolError("control 'until' must be a time")
        if action == "pause":
            self.pause(until)
        elif action == "donate":
            self.donate(until)
        elif action == "resume":
            self.resume()
        elif action != "status":
            raise ProtocolError(f"unknown control action {action!r}")
        # Tagged, so the asker can tell its answer from a state broadcast.
        session.send("state", control=action, **self.describe())

    def _on_bye(self, session: Session, message: dict) -> None:
        if message.get("stop_tasks"):
            for task in [t for t in self.tasks.values() if t.master == session.master]:
                proc = self.running.pop(task.token, None)
                if proc is not None:
                    proc.kill()
                    proc.close()
                self._forget(task)
        session.closing = True

    def _forget(self, task: SpoolTask) -> None:
        self.tasks.pop(task.token, None)
        self.spool.remove(task.token)

    def _report(self, task: SpoolTask, session: Session | None) -> None:
        if session is None:
            return  # the master collects it after its next sync
        if task.state == "finished":
            session.send("finished", **task.summary(), **self._inline_results(task))
        else:
            session.send("started", token=task.token, pid=task.pid)

    def _inline_results(self, task: SpoolTask) -> dict:
        """A small results archive rides in the message itself. The spool keeps
        it until the master acks, so a master that cannot use the copy (or
        predates it) fetches it by SFTP as before."""
        if not task.results_sha or task.results_size is None or task.results_size > INLINE_RESULTS_MAX:
            return {}
        try:
            data = Path(task.results_path).read_bytes()
        except OSError:
            return {}  # the master's fetch will tell it what is wrong
        return {"results_inline": base64.b64encode(data).decode("ascii")}

    # ----- the timer side ------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock()
        self._idle_tick(now)  # idle detection (issue 4)
        self._expire_user_choices(now)
        self._charge_usage(now)
        ended = []
        for token, proc in list(self.running.items()):
            if proc.has_ended():
                del self.running[token]
                ended.append(proc)
            elif proc.deadline is not None and time.monotonic() >= proc.deadline:
                proc.timed_out = True
                proc.kill()
                del self.running[token]
                ended.append(proc)
        if ended:
            # The freed slots are offered first, so the masters claim and send
            # their next tasks while this engine packs the results below: the
            # packing is then off the path from one task to the next.
            self._grant(now)
            for session in list(self.sessions.values()):
                self._flush(session)
        for proc in ended:
            self._finish(self.tasks[proc.spec.token], proc)
        self._grant(now)
        self.version_probe.refresh()
        state = (self.state, self.problem, self.paused_until, self.donating_until, len(self.running),
                 tuple(self.versions.values()))
        if state != self._last_state:
            self._last_state = state
            if self.on_state_change is not None:
                self.on_state_change(self.describe())
            for session in self.sessions.values():
                if session.master:
                    session.send("state", **self.describe())

    def _check_disk(self, now: float, *, force: bool = False) -> None:
        """A full or read-only spool makes the slave unavailable before it takes
        work it could not hold; checked about once a second, and cleared when fixed."""
        if not force and now - self._disk_checked < 1.0:
            return
        self._disk_checked = now
        problem = self.spool.problem(self.settings.min_free_mb)
        if problem != self.problem:
            self._set_problem(problem)

    def _set_problem(self, reason: str | None) -> None:
        if reason:
            log.error("slave unavailable: %s", reason)
        elif self.problem:
            log.info("slave available again (was: %s)", self.problem)
        self.problem = reason

    def _finish(self, task: SpoolTask, proc: TaskProcess) -> None:
        proc.close()
        code = proc.exit_code()
        if proc.timed_out:
            outcome, message = AttemptOutcome.TIMED_OUT, f"stopped after its time limit of {task.time_limit_s:g} s"
        elif code == 0:
            outcome, message = AttemptOutcome.SUCCEEDED, None
        elif code is None:
            outcome, message = AttemptOutcome.HOST_LOST, "the task's process vanished without an exit code"
        else:
            outcome, message = AttemptOutcome.EXITED, describe_exit(code)
        if outcome in (AttemptOutcome.EXITED, AttemptOutcome.TIMED_OUT):
            tail = proc.stderr_tail()
            if tail:
                message = f"{message}; stderr ends with:\n{tail}"
        self._settle(task, outcome, code, message)

    def _settle(self, task: SpoolTask, outcome: AttemptOutcome, code: int | None, message: str | None) -> None:
        try:
            if self.settings.in_process:
                task.results_path = str(self.spool.stage_results(task))
            else:
                path, sha, size = self.spool.pack_results(task, self.settings.max_results_mb << 20)
                task.results_path, task.results_sha, task.results_size = str(path), sha, size
        except ValueError as exc:  # over the cap
            outcome, message = AttemptOutcome.REJECTED, str(exc)
        except OSError as exc:
            outcome, message = AttemptOutcome.HOST_FAILED, f"could not pack the results: {exc}"
            self._set_problem(self.spool.problem(self.settings.min_free_mb))
        task.state, task.outcome, task.exit_code, task.message = "finished", outcome.value, code, message
        task.ended = self.clock()
        shutil.rmtree(self.spool.task_dir(task.token) / "work", ignore_errors=True)
        self.spool.save(task)
        self._report(task, self._session_of(task.master))

    # ----- crash recovery -----------------------------------------------------------

    def recover(self) -> None:
        """Settle what a previous engine left in the spool: adopt tasks that still
        run, finish those that ended meanwhile, and report the vanished as lost."""
        for task in self.spool.load_all():
            self.tasks[task.token] = task
            if task.state != "running":
                continue
            run_dir = self.spool.task_dir(task.token)
            spec = TaskSpec(task.token, task.job, task.idx, task.params, task.main, task.time_limit_s, task.cores)
            alive = same_process(task.pid, task.created) if task.pid else None
            if alive is not None:
                remaining = None
                if task.time_limit_s and task.started:
                    remaining = task.time_limit_s - (self.clock() - task.started)
                deadline = time.monotonic() + remaining if remaining is not None else None
                self.running[task.token] = TaskProcess(spec, run_dir, task.pid, task.created, deadline)
                log.info("adopting task %s/%s (pid %s), still running", task.job, task.idx, task.pid)
                if self.cgroups is not None:
                    self.cgroups.adopt(task.token, task.pid)
            elif (run_dir / "exitcode").exists():
                log.info("task %s/%s finished while no slave engine ran; collecting", task.job, task.idx)
                self._finish(task, TaskProcess(spec, run_dir, task.pid or 0, task.created or 0.0, None))
            else:
                for straggler in processes_with_marker(task.token):
                    kill_tree(straggler.pid, None, task.token)
                self._settle(task, AttemptOutcome.HOST_LOST, None, "the slave stopped before the task finished")

    def stop_all_tasks(self, outcome: AttemptOutcome, message: str) -> int:
        """Kill every running task (the user came back, or the slave shuts down)."""
        stopped = 0
        for token, proc in list(self.running.items()):
            proc.kill()
            del self.running[token]
            proc.close()
            self._settle(self.tasks[token], outcome, None, message)
            stopped += 1
        return stopped
