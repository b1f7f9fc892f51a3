"""The master's dispatcher: drives every host, this PC's own cores included.

One dispatcher runs per SpareCycles home (a lock file says which process it
is). It starts a host driver thread per host (:mod:`trayapp.master.driver`); the queue
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
from typing import Callable

from trayapp.config import Config
from trayapp.home import Home
from trayapp.install.taskenv import task_interpreter
from trayapp.locks import InstanceLock
from trayapp.master.driver import DriverSettings, HostDriver
from trayapp.master.kinds.local import LocalSlave
from trayapp.wire.links import Link
from trayapp.slave.engine import SlaveEngine, SlaveSettings
from trayapp.slave.spool import Spool
from trayapp.status import TaskStatus
from trayapp.master.store import HostRecord, Store

log = logging.getLogger(__name__)

LOCAL_HOST = "local"


@dataclass
class DispatcherStats:
    started: int = 0
    succeeded: int = 0
    failed: int = 0


class Dispatcher:
    """The master: one host driver per host, the local one included.

    The master's own cores are a slave engine on a thread of this process,
    reached over a socket pair with the same protocol as any remote slave, so
    one code path carries every task. Remote hosts are reached over SSH.
    """

    def __init__(self, store: Store, home: Home, config: Config, *, store_factory: Callable[[], Store],
                 identity: tuple[str, str], connect_ssh: Callable[[HostRecord], Callable[[], Link]] | None = None,
                 driver_settings: DriverSettings | None = None, host_refresh_s: float = 2.0):
        self.store = store
        self.home = home
        self.config = config
        self.slots = config.effective_slots
        self._store_factory = store_factory
        self.master_id, self.master_name = identity
        self._connect_ssh = connect_ssh
        self.driver_settings = driver_settings or DriverSettings(self.master_id, self.master_name,
                                                                 tick_s=config.poll_interval_s)
        self._host_refresh_s = host_refresh_s
        self.drivers: dict[str, HostDriver] = {}
        self.local: LocalSlave | None = None
        self._stop = threading.Event()
        self._signalled = False

    @property
    def python(self) -> str:
        return task_interpreter(self.config.task_python, home=self.home)

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
        if self.config.run_locally:
            self._start_local()
        idle_since = time.monotonic()
        next_refresh = 0.0
        try:
            while not (self._stop.is_set() or self._signalled):
                if time.monotonic() >= next_refresh:
                    self._refresh_hosts()
                    next_refresh = time.monotonic() + self._host_refresh_s
                if self.store.count_unfinished():
                    idle_since = time.monotonic()
                elif until_idle is not None and time.monotonic() - idle_since >= until_idle:
                    break
                self._stop.wait(0.1)
        finally:
            self.shutdown()
        return self._stats_since(began)

    def _start_local(self) -> None:
        self.store.ensure_local_host(LOCAL_HOST)
        engine = SlaveEngine(Spool(self.home.data_dir / "local-spool"),
                             SlaveSettings(slots=self.slots, python=self.python, nice=self.config.nice,
                                           in_process=True),
                             slave_id=self.master_id)
        self.local = LocalSlave(engine).start()
        self._add_driver(LOCAL_HOST, self.local.link, cap=None, stop_tasks=True)

    def _add_driver(self, name: str, connect: Callable[[], Link], *, cap: int | None, stop_tasks: bool) -> None:
        driver = HostDriver(name, self._store_factory, connect, self.driver_settings, cap=cap,
                            on_stop_stop_tasks=stop_tasks)
        self.drivers[name] = driver
        driver.start()

    def _refresh_hosts(self) -> None:
        """Follow `hosts add/remove` made by other processes while we run."""
        if self._connect_ssh is None:
            return
        wanted = {h.name: h for h in self.store.hosts() if h.name != LOCAL_HOST}
        for name in [n for n in self.drivers if n != LOCAL_HOST and n not in wanted]:
            self.drivers.pop(name).stop(retire=True)  # `hosts remove` requeued its tasks: they stop there
        for name, host in wanted.items():
            if name not in self.drivers:
                self._add_driver(name, self._connect_ssh(host), cap=host.slots, stop_tasks=False)

    def shutdown(self) -> None:
        """Stop every driver; the local one stops its tasks and requeues them,
        since a stopped dispatcher must not leave work running unobserved on
        this PC. Remote tasks go on; their results wait in the slaves' spools."""
        for driver in self.drivers.values():
            driver.stop()
        for driver in self.drivers.values():
            driver.join(30)
        if self.local is not None:
            self.local.stop()

    def _stats_since(self, began: float) -> DispatcherStats:
        rows = self.store._db.execute(
            "SELECT outcome, count(*) FROM attempts WHERE started >= ? GROUP BY outcome", (began,)).fetchall()
        counts = {outcome: n for outcome, n in rows}
        failed = self.store._db.execute(
            "SELECT count(*) FROM tasks WHERE status=? AND updated >= ?", (TaskStatus.FAILED.value, began)).fetchone()[0]
        return DispatcherStats(started=sum(counts.values()), succeeded=counts.get("succeeded", 0), failed=failed)


def start_background_dispatcher(home: Home, python: str, log_file: Path, until_idle: float = 60.0) -> int | None:
    """Start a detached dispatcher for ``home`` unless one runs; returns its pid."""
    lock = InstanceLock(home.dispatcher_lock)
    # Many submits at once (a script's loop) must start one dispatcher, not one
    # each: whoever starts it holds this lock until the child holds the real one.
    starting = InstanceLock(home.data_dir / "dispatcher.starting")
    if not starting.acquire(wait_s=15.0):
        return None
    try:
        if lock.holder() is not None:
            return None
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as out:
            # The environment (SPARECYCLES_HOME among it) passes on unchanged, so the
            # child serves the same home as its caller.
            proc = subprocess.Popen([python, "-m", "sparecycles", "master", "--until-idle", str(until_idle),
                                     "--quiet-if-running"],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + 15.0
        while lock.holder() is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return proc.pid
    finally:
        starting.release()
