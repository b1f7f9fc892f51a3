"""The slave engine: runs tasks for masters, speaking the protocol.

One engine owns one spool and a number of slots. Masters reach it through
sessions (a Unix socket from an agent started over SSH, or a socket pair for
the master's own "local" host); every session speaks :mod:`trayapp.wire.protocol`.
The engine is a single-threaded event loop (a selector): it wakes on session
input, on a task's exit (its runner's wait handle) and on timers. (The
master's dispatcher is not: it runs one driver thread per host and looks at
the queue every 0.1 s.)

The slave, not the master, decides whom it serves: masters declare how much
work they have (``demand``) and the engine grants freed slots by fair share.
Tasks outlive their master's connection: if the master goes away, its tasks
finish and their results wait in the spool until it comes back, fetches
them and acknowledges them (``ack``). A restarted engine settles what its
predecessor left in the spool (:meth:`SlaveEngine.recover`).

The engine is composed of parts it owns and calls through small interfaces:
a task runner (:mod:`trayapp.run.runner`, chosen in :mod:`trayapp.run.choice`)
runs the attempts; :mod:`trayapp.slave.availability` says when it may work at
all (the PC's user away, pause, donate); :mod:`trayapp.slave.grants` says who
gets a free slot; :mod:`trayapp.slave.environments` builds the environment a
job's requirements need, its tasks waiting in their slots;
:mod:`trayapp.slave.transfers` takes job archives in and sends small results
out; :mod:`trayapp.slave.outcomes` judges an attempt that ended. Messages reach their handler through one table
(:attr:`SlaveEngine.handlers`), one entry per message a master sends.

Stopping is one ordered sequence, on the engine's own thread: once
:meth:`SlaveEngine.request_stop` is called (from a signal handler or another
thread) no grant is given and every ``start`` is declined; a launch already
under way completes (every launch runs on this thread, or on a helper it
waits for) and is then part of the running tasks; when the loop ends,
:meth:`SlaveEngine.serve` kills every running task if its owner asks it to
(``stop_tasks``), and only then returns. A process that dies without stopping
(SIGKILL, power loss) leaves its tasks to the next engine's
:meth:`SlaveEngine.recover`, which adopts or kills each one and logs which.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import random
import re
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from trayapp import __version__
from trayapp.install.envs import EnvStore
from trayapp.slave.availability import Availability, SlaveState
from trayapp.slave.environments import JobEnvironments
from trayapp.slave.fairshare import FairShare
from trayapp.slave.grants import Granting
from trayapp.slave import identity
from trayapp.slave.identity import LOCAL_PRINCIPAL, Principal
from trayapp.wire.fields import refusal
from trayapp.wire.protocol import TO_SLAVE_FIELDS, TOKEN, VERSION, ProtocolError, decode
from trayapp.slave.requirements import RequirementChecker, SitePackagesWatch, VersionProbe
from trayapp.run.attempt import prepare, task_launch
from trayapp.run.caps import caps_for, memory_refusal, slave_memory_limit_mb, task_disk_cap_mb
from trayapp.run.taskcache import slot_cache_dir
from trayapp.run.warmmodules import warm_modules
from trayapp.run.taskfiles import read_regular, remove_tree
from trayapp.run.runner import Launch, TaskRunner
from trayapp.slave.outcomes import judge_attempt
from trayapp.slave.running import Attempt, RunningAttempts
from trayapp.slave.session import Session
from trayapp.slave.transfers import ArchiveRefused, Transfers
from trayapp.slave.spool import Spool, SpoolTask
from trayapp.status import AttemptOutcome

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass
class SlaveSettings:
    slots: int
    python: str
    nice: int = 10
    max_results_mb: int = 2048
    min_free_mb: int = 200
    name: str = field(default_factory=platform.node)
    # Fair share, by the name a master's key was authorized with (an unrestricted
    # key: the name or id it gives; trayapp.slave.identity).
    weights: dict = field(default_factory=dict)
    caps: dict = field(default_factory=dict)
    grant_policy: str = "fair"  # "by_demand" exists only as the benchmark's baseline
    # When the PC's user returns: "kill" every task, or "suspend" them and
    # kill them only after suspend_grace_s (trayapp.slave.availability).
    preempt: str = "kill"
    suspend_grace_s: float = 600.0
    # The master's own cores: the engine shares the master's process, so
    # results are handed over as a folder (no tar round trip).
    in_process: bool = False
    # Each task's caps (its runner holds it to them): memory is what its job asks
    # for, within this; 0 is three quarters of the PC's memory.
    max_task_memory_mb: int = 0
    max_task_processes: int = 512
    # Each master's unfinished uploads together (trayapp.slave.transfers.clean_incoming).
    incoming_quota_gb: float = 4.0
    max_task_disk_mb: int = 0  # what one task's folder may fill; 0: its slot's share of half the free disk


class SlaveEngine:
    def __init__(self, spool: Spool, settings: SlaveSettings, *, slave_id: str, runner: TaskRunner,
                 fairshare: FairShare | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, envs: EnvStore | None = None):
        self.spool = spool.ensure()
        self.settings = settings
        self.slave_id = slave_id
        self.runner = runner
        self.fairshare = fairshare or FairShare()
        self.transfers = Transfers(self.spool, min_free_mb=settings.min_free_mb,
                                   quota_bytes=int(settings.incoming_quota_gb * (1 << 30)))
        self.clock = clock
        # Re-read on a helper thread whenever the task environment's packages
        # change: Brian updated there reaches the masters' host lists, and a
        # package installed by hand the requirement checks, without a restart.
        watch = SitePackagesWatch(settings.python)
        self.version_probe = VersionProbe(settings.python, on_change=self.wake, watch=watch)
        self.requirements = RequirementChecker(settings.python, watch=watch)
        self.memory_limit_mb = slave_memory_limit_mb(settings.max_task_memory_mb)
        self.sessions: dict[int, Session] = {}
        self.tasks: dict[str, SpoolTask] = {}
        self.running = RunningAttempts(wake=self.wake)
        self.problem: str | None = runner.problem
        self.environments = JobEnvironments(envs, self.requirements, start=self._start, session_of=self._session_of,
                                            accepts_work=self.accepts_work, wake=self.wake)
        self.availability = Availability(runner, running=self.running.handles, stop_all_tasks=self.stop_all_tasks,
                                         wake=self.wake, clock=clock, preempt=settings.preempt,
                                         suspend_grace_s=settings.suspend_grace_s)
        self.granting = Granting(self.fairshare, rng or random.Random(), slots=settings.slots, now=clock(),
                                 policy=settings.grant_policy, weights=settings.weights, caps=settings.caps)
        # One handler per message a master sends (trayapp.wire.protocol.MASTER_TO_SLAVE).
        self.handlers: dict[str, Callable[[Session, dict], None]] = {
            "hello": self._on_hello,
            "demand": self.granting.on_demand,
            "release": self.granting.on_release,
            "need_archive": self.transfers.on_need_archive,
            "archive_uploaded": self.transfers.on_archive_uploaded,
            "start": self._on_start,
            "cancel": self._on_cancel,
            "ack": self._on_ack,
            "sync": self._on_sync,
            "bye": self._on_bye,
            "control": self._on_control,
        }
        self._last_state: tuple | None = None
        self._disk_checked = -math.inf
        self._stopping = False
        self._pending: list[tuple[socket.socket, Principal]] = []
        self._lock = threading.Lock()
        self.on_state_change: Callable[[dict], None] | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    # ----- state ---------------------------------------------------------------

    @property
    def versions(self) -> dict:
        return self.version_probe.versions

    @property
    def state(self) -> SlaveState:
        return SlaveState.UNAVAILABLE if self.problem else self.availability.state

    def describe(self) -> dict:
        """The slave's whole state, as the lender sees it (masters see :meth:`describe_for`)."""
        usage = self.fairshare.snapshot(self.clock())
        finite = lambda t: None if t is None or math.isinf(t) else t  # noqa: E731 - JSON has no infinity
        names = {s.account: s.name for s in self.sessions.values() if s.master}
        lending = self.availability
        state = self.state
        return {"state": state.value,
                "reason": (self.problem or lending.paused_reason or lending.waiting_reason
                           or (lending.donating_reason if state is SlaveState.DONATING else None)
                           or self.runner.warning),
                "slots": self.settings.slots,
                "running": len(self.running), "running_by_master": self._running_by_master(), "usage": usage,
                "master_names": names, "paused": lending.paused_until is not None,
                "paused_until": finite(lending.paused_until), "donating": lending.donating,
                "donating_until": finite(lending.donating_until), "available": lending.available,
                "name": self.settings.name, **self.runner.describe(), "max_task_memory_mb": self.memory_limit_mb,
                **self.versions, "env_stamp": self.version_probe.seen_stamp,
                # Tasks of its spool it could not take up again; their files wait for a fitting version.
                "unreadable_tasks": {str(path): why for path, why in self.spool.unreadable.items()}}

    def describe_for(self, session: Session) -> dict:
        state = self.describe()
        if session.principal is not None and session.principal.may_control:
            return state
        return identity.shown_to_master(state, session.account)

    def accepts_work(self) -> bool:
        return not self._stopping and self.problem is None and self.availability.may_work()

    def busy_slots(self) -> int:
        """Slots held by running attempts and by tasks waiting for their environment."""
        return len(self.running) + len(self.environments)

    def _running_by_master(self) -> dict[str, int]:
        """Live attempts by master. Not the spool's "running" records: a task
        whose process just ended keeps that state until its results are packed,
        and counting it would make its master seem to hold the slot it freed."""
        per_master: dict[str, int] = {}
        for token in self.running:
            account = identity.account_of(self.tasks[token].master)
            per_master[account] = per_master.get(account, 0) + 1
        return per_master

    # ----- lifecycle -----------------------------------------------------------

    def add_connection(self, sock: socket.socket, principal: Principal = LOCAL_PRINCIPAL) -> None:
        """Hand the engine a new session; safe from any thread. By default the
        master's own cores (the master that runs this engine in its process)."""
        with self._lock:
            self._pending.append((sock, principal))
        self.wake()

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def request_stop(self, *_args) -> None:
        """Stop serving; safe from a signal handler and from any thread. No
        task starts from now on (:meth:`accepts_work` says no)."""
        self._stopping = True
        self.wake()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def serve(self, listener: socket.socket | None = None, *, poll_s: float = 0.5, stop_tasks: bool = False,
              why_stopped: str = "the slave engine was stopped") -> int:
        """Run until :meth:`request_stop`. With ``stop_tasks`` every task still
        running is then killed and reported lost (``why_stopped``) before this
        returns, launches that raced the stop included; without, tasks keep
        running unless a master asked for them to stop (``bye``), and a later
        engine adopts them. Returns how many tasks it stopped."""
        stopped = 0
        self.spool.trash.empty()
        self.recover()
        if listener is not None:
            listener.setblocking(False)
        try:
            while not self._stopping:
                self._step(listener, poll_s)
            if stop_tasks:
                stopped = self._stop_everything(why_stopped)
            self.flush_all()
        finally:
            self.environments.close()
        return stopped

    def close(self) -> None:
        """Release the runner once the engine is done with its tasks (after
        :meth:`serve`, and after :meth:`stop_all_tasks` if the tasks must go)."""
        self.running.close()
        self.runner.close()
        self.spool.trash.wait()

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
        for sock, principal in pending:
            sock.setblocking(False)
            self.sessions[sock.fileno()] = Session(sock, principal)
        timeout = self.running.wait_at_most(poll_s)
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            if listener is not None:
                selector.register(listener, selectors.EVENT_READ, "listen")
            for fd, session in self.sessions.items():
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if session.outbox else 0)
                selector.register(fd, events, session)
            for fd in self.running.wait_fds():
                selector.register(fd, selectors.EVENT_READ, "task")
            events = selector.select(timeout)
            self.availability.apply_idle_report()  # a returning user's tasks die first
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
                message = decode(line)
                if session.principal is None:  # the daemon's socket: an agent, or the lender
                    session.principal, used = identity.from_first_message(message)
                    if used:
                        continue
                self.handle(session, message)
        except ProtocolError as exc:
            log.warning("closing connection from %s: %s", session.name, exc)
            why = f"protocol error: {exc}"
            # Said before closing, so the master shows why (a master of another release
            # reads the version in this line and says which side to update).
            session.send("error", reason=f"the slave closed the connection: {exc}")
            session.flush()
        except Exception as exc:  # noqa: BLE001 - a handler's bug costs one master its connection, not
            # every master its slave: a daemon that died here would die again on the same message.
            log.exception("closing connection from %s after an internal error", session.name)
            why = f"internal error on the slave: {exc}"
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
        """The session of the master that owns a task (``task.master``)."""
        for session in self.sessions.values():
            if session.master == master:
                return session
        return None

    def handle(self, session: Session, message: dict) -> None:
        kind = message["type"]
        if kind != "hello" and session.master is None:
            raise ProtocolError(f"'{kind}' before 'hello'")
        handler = self.handlers.get(kind)
        if handler is None:
            raise ProtocolError(f"a slave does not accept '{kind}'")
        problem = refusal(message, TO_SLAVE_FIELDS[kind])
        if problem:
            self._refuse(session, message, f"refused a '{kind}' message: {problem}")
            return
        handler(session, message)

    def _refuse(self, session: Session, message: dict, reason: str) -> None:
        """Answer a message that will not be acted on: a start is declined for good
        (it would fail the same way anywhere), anything else gets an error; the
        session goes on."""
        log.warning("%s: %s", session.name, reason)
        token = message.get("token")
        if message["type"] == "start" and TOKEN.test(token):
            session.send("declined", token=token, reason=reason, retry=False, code="refused")
        else:
            session.send("error", reason=reason, refused=message["type"])

    def _on_hello(self, session: Session, message: dict) -> None:
        self._check_disk(self.clock(), force=True)  # a master deciding whether to use us deserves a fresh answer
        claimed = str(message.get("master") or "")
        if not _HEX.match(claimed):
            raise ProtocolError("hello without a valid master id")
        if session.master is not None:
            raise ProtocolError("a second hello on one connection")
        principal = session.principal
        session.master = principal.owner(claimed)
        session.account = principal.account or claimed
        session.name = principal.label if principal.bound_to_a_key else str(message.get("name", claimed))[:200]
        session.send("hello", slave=self.slave_id, protocol=VERSION, version=__version__,
                     spool=str(self.spool.root), **self.describe_for(session))

    def _on_start(self, session: Session, message: dict) -> None:
        token = message["token"]
        held = self.tasks.get(token) or self.environments.task_of(token)
        if held is not None and held.master != session.master:
            raise ProtocolError("start with a token of another master's task")
        if token in self.tasks:  # a re-sent start (the master reconnected): idempotent
            self._report(self.tasks[token], session)
            return
        if token in self.environments:
            return  # its environment is being built; `preparing` reports follow
        unreadable = self.spool.unreadable.get(self.spool.task_dir(token) / "task.json")
        if unreadable:  # starting it again would overwrite the file it cannot read
            session.send("declined", token=token, reason=f"cannot read its task file: {unreadable}", retry=True,
                         code="unreadable")
            return
        if not self.accepts_work():
            reason = ("this slave is stopping" if self._stopping else
                      self.problem or self.availability.paused_reason or "not available")
            session.send("declined", token=token, reason=reason, retry=True, code="unavailable")
            return
        if not session.grants and self.busy_slots() >= self.settings.slots:
            session.send("declined", token=token, reason="no free slot", retry=True, code="no_slot")
            return
        if session.grants:
            session.grants.pop(0)
        # Every field was checked against TO_SLAVE_FIELDS["start"] before this handler ran.
        task = SpoolTask(token=token, master=session.master, job=message["job"], idx=message["idx"],
                         params=message["params"], main=message["main"], archive_sha=message["archive_sha"],
                         time_limit_s=message.get("time_limit_s") or None, cores=message.get("cores") or 1,
                         memory_mb=message.get("memory_mb") or None)
        requires = message.get("requires") or []
        refused = memory_refusal(task.memory_mb, self.memory_limit_mb)
        if refused:
            session.send("declined", token=token, reason=refused, retry=True, requirements=True, code="memory")
            return
        self.environments.start(session, task, requires)

    def _start(self, session: Session, task: SpoolTask, python: str | None, env_key: str | None) -> None:
        """Start the task, with its job environment's ``python`` (``env_key``) where it has one."""
        try:
            template = self.transfers.unpacked(task.archive_sha, task.master)
        except ArchiveRefused as refused:
            if refused.spool_problem:
                self._set_problem(refused.reason)
            session.send("declined", token=task.token, reason=refused.reason, retry=refused.retry, code=refused.code)
            return
        launch = self._launch_of(task, python=python)
        # Forked from a warm interpreter where the runner can (trayapp.run.warm); one per
        # master's job and interpreter on each slot.
        launch = replace(launch, warm=warm_modules(template, task.main),
                         warm_key=f"{identity.folder_of(task.master)}/{task.job}/{task.archive_sha}/{launch.argv[0]}")
        try:
            prepare(launch.task_dir, template, task.params, cache_dir=self._cache_of(task, launch.slot),
                    cores=task.cores)
            # Kept with the task, so a restarted engine adopts it in the slot (and cache) it holds.
            task.slot, task.started = launch.slot, self.clock()
            self.spool.save(task, first=True)
            handle = self.runner.start(launch)
        except OSError as exc:
            self.environments.release(task.token)
            remove_tree(launch.task_dir)
            disk = self.spool.problem(self.settings.min_free_mb)
            if disk:  # this slave's fault: no task can start until it is fixed
                self._set_problem(disk)
                session.send("declined", token=task.token, reason=disk, retry=True, code="disk")
            else:  # perhaps this task's ("Argument list too long"): the master decides
                session.send("declined", token=task.token, reason=f"cannot start the task: {exc}", retry=True,
                             host_failed=True, code="start_failed")
            return
        task.pid, task.created = handle.pid, handle.created
        self.spool.save(task)
        self.environments.started(env_key, task.token, handle.pid, handle.created)
        self.tasks[task.token] = task
        self.running.add(task.token, handle, task.time_limit_s or None)
        session.send("started", token=task.token, pid=handle.pid)

    def _launch_of(self, task: SpoolTask, *, python: str | None = None, slot: int | None = None) -> Launch:
        """What the runner is told about an attempt: its caps, and by default
        the task environment's python and the lowest free slot."""
        slot = self.running.free_slot() if slot is None else slot
        caps = caps_for(task.memory_mb, self.memory_limit_mb, self.settings.max_task_processes,
                        task_disk_cap_mb(self.settings.max_task_disk_mb, self.spool.root, self.settings.slots))
        return task_launch(task.token, self.spool.task_dir(task.token), python=python or self.settings.python,
                           main=task.main, params=task.params, job_id=task.job, idx=task.idx, slot=slot,
                           cores=task.cores, nice=self.settings.nice, time_limit_s=task.time_limit_s,
                           memory_mb=caps.memory_mb, max_processes=caps.processes, disk_mb=caps.disk_mb,
                           cache_dir=self._cache_of(task, slot))

    def _cache_of(self, task: SpoolTask, slot: int) -> Path:
        """The compiler cache of the task's master in this slot: shared by that
        master's tasks, never seen by another master's."""
        return slot_cache_dir(self.spool.root, slot, identity.folder_of(task.master))

    def _on_cancel(self, session: Session, message: dict) -> None:
        token = message["token"]
        task = self.tasks.get(token)
        if task is None or task.master != session.master:
            self.environments.cancel(token, session.master)
            session.send("finished", token=token, outcome=AttemptOutcome.CANCELLED.value, exit_code=None)
            return
        self.running.kill(token)
        self._forget(task)
        session.send("finished", token=token, outcome=AttemptOutcome.CANCELLED.value, exit_code=None)

    def _on_ack(self, session: Session, message: dict) -> None:
        task = self.tasks.get(message["token"])
        if task is not None and task.master == session.master and task.state == "finished":
            self._forget(task)

    def _on_sync(self, session: Session, message: dict) -> None:
        mine = [t.summary() for t in self.tasks.values() if t.master == session.master]
        mine += self.environments.reports(session.master)
        session.send("tasks", tasks=mine)
        session.send("state", **self.describe_for(session))

    def _on_control(self, session: Session, message: dict) -> None:
        if not session.principal.may_control:
            log.warning("refused '%s' from master %s: pause, donate and resume are the lender's alone",
                        message["action"], session.name)
            session.send("error", reason="pause, donate and resume are the lender's alone (on the slave's PC)")
            return
        action, until = message["action"], message.get("until")
        if until is not None and not isinstance(until, (int, float)):
            raise ProtocolError("control 'until' must be a time")
        if action == "pause":
            self.availability.pause(until)
        elif action == "donate":
            self.availability.donate(until)
        elif action == "resume":
            self.availability.resume()
        elif action != "status":
            raise ProtocolError(f"unknown control action {action!r}")
        # Tagged, so the asker can tell its answer from a state broadcast.
        session.send("state", control=action, **self.describe())

    def _on_bye(self, session: Session, message: dict) -> None:
        if message.get("stop_tasks"):
            self.environments.cancel_all_of(session.master)
            for task in [t for t in self.tasks.values() if t.master == session.master]:
                self.running.kill(task.token)
                self._forget(task)
        session.closing = True

    def _forget(self, task: SpoolTask) -> None:
        self.environments.release(task.token)
        self.tasks.pop(task.token, None)
        self.spool.remove(task)

    def _report(self, task: SpoolTask, session: Session | None) -> None:
        if session is None:
            return  # the master collects it after its next sync
        if task.state == "finished":
            session.send("finished", **task.summary(), **self.transfers.inline_results(task))
        else:
            session.send("started", token=task.token, pid=task.pid)

    # ----- the timer side ------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock()
        self.availability.tick(now)
        self.granting.charge_usage(now, [identity.account_of(self.tasks[token].master) for token in self.running])
        ended = self.running.take_ended()
        if ended:
            # The freed slots are offered first, so the masters claim and send
            # their next tasks while this engine packs the results below: the
            # packing is then off the path from one task to the next.
            self._grant(now)
            for session in list(self.sessions.values()):
                self._flush(session)
        for attempt in ended:
            self._finish_guarded(self.tasks[attempt.token], attempt)
        self.environments.tick()
        try:
            self.transfers.tick(now)
        except Exception:  # noqa: BLE001 - whatever a master left in its folder, the loop goes on
            log.exception("cleaning the masters' incoming folders failed")
        self._grant(now)
        self.version_probe.refresh()
        # The watcher's reason too: "waiting" for the user and "waiting" for other
        # programs' load are different news (the log showed neither change).
        state = (self.state, self.problem, self.availability.paused_until, self.availability.donating_until,
                 self.availability.idle_reason, len(self.running), tuple(self.versions.values()),
                 self.version_probe.seen_stamp)
        if state != self._last_state:
            self._last_state = state
            if self.on_state_change is not None:
                self.on_state_change(self.describe())
            for session in self.sessions.values():
                if session.master:
                    session.send("state", **self.describe_for(session))

    def _grant(self, now: float) -> None:
        self._check_disk(now)
        holding = self._running_by_master()
        for master, n in self.environments.holding().items():
            account = identity.account_of(master)
            holding[account] = holding.get(account, 0) + n
        self.granting.offer_free_slots(now, self.sessions.values(), running=self.busy_slots(), holding=holding,
                                       may_grant=self.accepts_work())

    def _check_disk(self, now: float, *, force: bool = False) -> None:
        """A full or read-only spool makes the slave unavailable before it takes
        work it could not hold; checked about once a second, and cleared when fixed."""
        if not force and now - self._disk_checked < 1.0:
            return
        self._disk_checked = now
        problem = self.runner.problem or self.spool.problem(self.settings.min_free_mb)
        if problem != self.problem:
            self._set_problem(problem)

    def _set_problem(self, reason: str | None) -> None:
        if reason:
            log.error("slave unavailable: %s", reason)
        elif self.problem:
            log.info("slave available again (was: %s)", self.problem)
        self.problem = reason

    def _finish_guarded(self, task: SpoolTask, attempt: Attempt) -> None:
        """:meth:`_finish`, and if settling fails in a way nobody foresaw (what a
        task made is hostile), the task is reported failed on this host: one bad
        task never stops the daemon (it would fail again on the same task at start)."""
        try:
            self._finish(task, attempt)
        except Exception as exc:  # noqa: BLE001
            log.exception("task %s/%s could not be settled", task.job, task.idx)
            task.state, task.outcome, task.exit_code = "finished", AttemptOutcome.HOST_FAILED.value, None
            task.message = f"the slave could not settle the task ({type(exc).__name__}: {str(exc)[:200]})"
            task.ended = self.clock()
            self.environments.release(task.token)
            self.spool.save(task)
            self._report(task, self._session_of(task.master))

    def _finish(self, task: SpoolTask, attempt: Attempt) -> None:
        outcome, code, message = judge_attempt(attempt, self.runner, task.time_limit_s)
        attempt.handle.close()
        self._settle(task, outcome, code, message)

    def _settle(self, task: SpoolTask, outcome: AttemptOutcome, code: int | None, message: str | None) -> None:
        try:
            if self.settings.in_process:
                task.results_path = str(self.spool.stage_results(task))
            else:
                path, sha, size = self.spool.pack_results(task, self.settings.max_results_mb << 20)
                task.results_path, task.results_sha, task.results_size = str(path), sha, size
        except ValueError as exc:  # over the cap, or a link or special file among them: the task's doing
            # Why an attempt that failed anyway failed stays first (e.g. over its disk cap).
            failed_first = message if outcome is not AttemptOutcome.SUCCEEDED and message else None
            outcome, message = AttemptOutcome.REJECTED, f"{failed_first}; {exc}" if failed_first else str(exc)
        except OSError as exc:
            outcome, message = AttemptOutcome.HOST_FAILED, f"could not pack the results: {exc}"
            self._set_problem(self.spool.problem(self.settings.min_free_mb))
        task.state, task.outcome, task.exit_code, task.message = "finished", outcome.value, code, message
        task.ended = self.clock()
        self.environments.release(task.token)
        self.spool.trash.discard(self.spool.task_dir(task.token) / "work")
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
            handle = self.runner.adopt(self._launch_of(task, slot=self._slot_recorded(task)), task.pid or 0,
                                       task.created)
            if not handle.has_ended():
                remaining = None
                if task.time_limit_s and task.started:
                    remaining = task.time_limit_s - (self.clock() - task.started)
                self.running.add(task.token, handle, remaining)
                log.info("adopting task %s/%s (pid %s), still running", task.job, task.idx, task.pid)
            elif handle.exit_code() is not None:
                log.info("task %s/%s finished while no slave engine ran; collecting", task.job, task.idx)
                self._finish(task, Attempt(task.token, handle, None))
            else:
                handle.kill_whole_tree()  # whatever it left behind, found by its marker
                handle.close()
                log.warning("task %s/%s (pid %s) ended without an exit code while no slave engine ran; killed what "
                            "was left of it and reported it lost", task.job, task.idx, task.pid)
                self._settle(task, AttemptOutcome.HOST_LOST, None, "the slave stopped before the task finished")

    def _stop_everything(self, why: str) -> int:
        """The end of the stop sequence: tasks waiting for their environment are
        declined, every running tree is hit at once, then each is settled."""
        for prepared in self.environments.cancel_all():
            session = self._session_of(prepared.task.master)
            if session is not None:
                session.send("declined", token=prepared.task.token, reason="this slave is stopping", retry=True,
                             code="unavailable")
        self.runner.kill_at_once(self.running.handles())
        return self.stop_all_tasks(AttemptOutcome.HOST_LOST, why)

    def _slot_recorded(self, task: SpoolTask) -> int | None:
        if task.slot is not None:
            return task.slot
        try:  # task format 2 kept it in a file of its own
            return int(read_regular(self.spool.task_dir(task.token) / "slot", 32))
        except (OSError, ValueError):
            return None  # started by an engine that kept no slot: the lowest free one

    def stop_all_tasks(self, outcome: AttemptOutcome, message: str) -> int:
        """Kill every running task (the user came back, or the slave shuts down)."""
        stopped = 0
        for token in self.running:
            self.running.kill(token)
            self._settle(self.tasks[token], outcome, None, message)
            stopped += 1
        return stopped
