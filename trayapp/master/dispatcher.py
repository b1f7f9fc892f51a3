"""The master's dispatcher: drives every host, this PC's own cores included.

One dispatcher runs per SpareCycles home (a lock file says which process it
is). It starts a driver per host, built by the host's kind (:mod:`trayapp.master.kinds`); the queue
always says where every task is, so nothing is held only in memory.

Crash recovery is ordinary code, split where the knowledge is: a restarted
slave engine settles its own spool (adopts tasks still running, finishes those
that ended meanwhile), then each host driver reconciles the queue with what
its host reports, collecting what finished and requeueing what was lost.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from trayapp.config import Config
from trayapp.errors import UserError
from trayapp.home import Home
from trayapp.install.selfcommand import sparecycles_command
from trayapp.install.taskenv import task_interpreter
from trayapp.locks import InstanceLock
from trayapp.master.kinds import KINDS, Driver, KindContext, KindRegistry
from trayapp.master.store import Store
from trayapp.master.waits import nobody_can_run

log = logging.getLogger(__name__)


@dataclass
class DispatcherStats:
    started: int = 0
    succeeded: int = 0
    failed: int = 0


class Dispatcher:
    """The master: one driver per host, the local one included.

    Each host's kind (:mod:`trayapp.master.kinds`) builds its driver: the
    master's own cores are a slave engine on a thread of this process, reached
    over a socket pair with the same protocol as any remote slave, so one code
    path carries every task; desktops are reached over SSH.
    """

    def __init__(self, store: Store, context: KindContext, *, kinds: KindRegistry = KINDS,
                 host_refresh_s: float = 2.0):
        self.store = store
        self.context = context
        self.kinds = kinds
        self._host_refresh_s = host_refresh_s
        self.drivers: dict[str, Driver] = {}
        self._refused: dict[str, str] = {}  # host -> why no driver could be built (said once)
        self._stop = threading.Event()
        self._signalled = False

    @property
    def config(self) -> Config:
        return self.context.config

    @property
    def slots(self) -> int:
        return self.config.effective_slots

    @property
    def python(self) -> str:
        return task_interpreter(self.config.task_python, home=self.context.home)

    def request_stop(self, *_args) -> None:
        """Ask the loop to stop, from any thread (not from a signal handler:
        ``Event.set`` takes a lock the interrupted main thread may hold)."""
        self._stop.set()

    def _on_signal(self, *_args) -> None:
        self._signalled = True  # only a flag: the loop reads it within 0.1 s

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def run(self, *, until_idle: float | None = None) -> DispatcherStats:
        """Run until stopped, or until no task has been unfinished for ``until_idle`` s."""
        began = time.time()
        for kind in self.kinds:
            kind.prepare(self.store, self.config)
        idle_since = time.monotonic()
        next_refresh = 0.0
        try:
            while not (self._stop.is_set() or self._signalled):
                if time.monotonic() >= next_refresh:
                    self._refresh_hosts()
                    self._fail_unrunnable_jobs()
                    next_refresh = time.monotonic() + self._host_refresh_s
                if self.store.count_unfinished():
                    idle_since = time.monotonic()
                elif until_idle is not None and time.monotonic() - idle_since >= until_idle:
                    break
                self._stop.wait(0.1)
        finally:
            self.shutdown()
        return self._stats_since(began)

    def _refresh_hosts(self) -> None:
        """Drive every host the queue lists, following `hosts add/remove` made
        by other processes while we run."""
        wanted = {}
        for host in self.store.hosts():
            try:
                kind = self.kinds.get(host.kind)
            except UserError:
                self._refuse(host.name, f"this SpareCycles does not know host kind '{host.kind}'; update it")
                continue
            if kind.is_driven(host, self.config):
                wanted[host.name] = (host, kind)
        for name in [n for n in self.drivers if n not in wanted]:
            self.drivers.pop(name).stop(retire=True)  # `hosts remove` requeued its tasks: they stop there
        for name, (host, kind) in wanted.items():
            if name in self.drivers:
                continue
            try:
                driver = kind.build_driver(host, self.context)
            except UserError as exc:
                self._refuse(name, str(exc))
                continue
            self._refused.pop(name, None)
            self.drivers[name] = driver
            driver.start()

    def _refuse(self, name: str, why: str) -> None:
        if self._refused.get(name) != why:
            self._refused[name] = why
            log.warning("host %s: not driven: %s", name, why)
            self.store.set_host_state(name, "unavailable", why)

    def _fail_unrunnable_jobs(self) -> None:
        """A job that every connected host declined for its requirements (its
        environment cannot be built anywhere) would wait forever: its queued
        tasks fail instead, naming each host's reason, and ``wait`` ends."""
        connected = [name for name, d in self.drivers.items() if d.is_connected()]
        if not connected:
            return
        for seq in self.store.queued_jobs():
            why = nobody_can_run(self.store.declines_of(seq), connected)
            if why is not None:
                failed = self.store.fail_queued_tasks(seq, f"no connected host can run this job. {why}")
                log.warning("job %s: no connected host can run it, %d tasks failed (%s)", seq, failed, why)

    def shutdown(self) -> None:
        """Stop every driver and wait for them; each kind decides what becomes
        of its hosts' tasks (this PC's own stop and go back to the queue; a
        desktop's go on, their results waiting in its spool)."""
        for driver in self.drivers.values():
            driver.stop()
        for driver in self.drivers.values():
            driver.join(30)

    def _stats_since(self, began: float) -> DispatcherStats:
        counts = self.store.attempt_outcomes_since(began)
        return DispatcherStats(started=sum(counts.values()), succeeded=counts.get("succeeded", 0),
                               failed=self.store.count_failed_since(began))


def start_background_dispatcher(home: Home, log_file: Path, until_idle: float = 60.0) -> int | None:
    """Start a detached dispatcher for ``home`` unless one runs; returns its pid."""
    lock = InstanceLock(home.dispatcher_lock)
    # Many submits at once (a script's loop) must start one dispatcher, not one
    # each: whoever starts it holds this lock until the child holds the real one.
    starting = InstanceLock(home.dispatcher_starting_lock)
    if not starting.acquire(wait_s=15.0):
        return None
    try:
        if lock.holder() is not None:
            return None
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as out:
            # The environment (SPARECYCLES_HOME among it) passes on unchanged, so the
            # child serves the same home as its caller.
            proc = subprocess.Popen(sparecycles_command("master", "--until-idle", str(until_idle),
                                                       "--quiet-if-running"),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + 15.0
        while lock.holder() is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return proc.pid
    finally:
        starting.release()
