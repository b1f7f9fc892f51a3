"""The ``local`` host kind: this PC's own cores, a slave engine on a thread of the master."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Iterator

from trayapp.config import Config
from trayapp.master.driver import HostDriver
from trayapp.master.kinds.kind import Finding, HostKind, KindContext, QueueFacts
from trayapp.master.kinds.slavehost import SLAVE_COLUMNS, describe_slave, slave_driver_settings
from trayapp.master.store import HostRecord, Store
from trayapp.wire.links import LocalLink

if TYPE_CHECKING:  # the engine (and all it imports) is built by the app only for a master: CLI verbs skip it
    from trayapp.slave.engine import SlaveEngine

LOCAL_HOST = "local"

log = logging.getLogger(__name__)


class LocalSlave:
    """The master's own cores: a slave engine on a thread of the master's process.

    A stopped master must not leave work running unobserved on this PC, whether
    or not its driver said goodbye: the engine's stop sequence kills every task
    it runs, a launch that raced the stop included, before its thread ends."""

    def __init__(self, engine: SlaveEngine):
        self.engine = engine
        self._thread = threading.Thread(target=self._serve, name="local-slave", daemon=True)

    def _serve(self) -> None:
        self.engine.serve(stop_tasks=True, why_stopped="the dispatcher was stopped; the task will run again")

    def start(self) -> "LocalSlave":
        self._thread.start()
        return self

    def link(self) -> LocalLink:
        return LocalLink(self.engine)

    def stop(self, timeout: float = 20.0) -> None:
        self.engine.request_stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            # A stuck engine thread must not let the master exit with tasks running:
            # kill them from here (the thread may still touch its list meanwhile).
            log.error("the local slave engine did not stop within %.0f s; killing its tasks from outside", timeout)
            try:
                self.engine.runner.kill_at_once(self.engine.running.handles())
            except Exception:  # noqa: BLE001 - last resort; the list may change under us
                log.exception("could not kill the local tasks")
        self.engine.close()


class LocalDriver:
    """The local host's driver: the engine thread, and a host driver talking
    to it over a socket pair with the same protocol as any remote slave."""

    def __init__(self, slave: LocalSlave, driver: HostDriver):
        self.slave = slave
        self.driver = driver

    @property
    def engine(self) -> SlaveEngine:
        return self.slave.engine

    def start(self) -> None:
        self.slave.start()
        self.driver.start()

    def stop(self, *, retire: bool = False) -> None:
        self.driver.stop(retire=retire)

    def join(self, timeout: float | None = None) -> None:
        # The engine goes last: the driver's goodbye tells it to stop our tasks.
        self.driver.join(timeout)
        self.slave.stop()

    def is_connected(self) -> bool:
        return self.driver.is_connected()


class LocalKind(HostKind):
    name = "local"
    summary = "this PC's own cores"
    columns = SLAVE_COLUMNS
    builtin_host = LOCAL_HOST

    def where(self, host: HostRecord) -> str:
        return "this PC"

    def prepare(self, store: Store, config: Config) -> None:
        if config.run_locally:
            store.ensure_local_host(LOCAL_HOST)

    def is_driven(self, host: HostRecord, config: Config) -> bool:
        return config.run_locally

    def build_driver(self, host: HostRecord, context: KindContext) -> LocalDriver:
        slave = LocalSlave(context.build_local_engine())
        # A stopped dispatcher must not leave work running unobserved on this
        # PC: on stop, the engine stops our tasks and they go back to the queue.
        return LocalDriver(slave, HostDriver(host.name, context.open_store, slave.link,
                                             slave_driver_settings(context), cap=None, on_stop_stop_tasks=True))

    def describe(self, host: HostRecord, facts: QueueFacts) -> dict:
        return describe_slave(host, facts)

    def test(self, host: HostRecord, context: KindContext) -> Iterator[Finding]:
        from trayapp.install.taskenv import task_interpreter

        config = context.config
        yield Finding("runs tasks here", "yes" if config.run_locally else "no (run_locally is off in the settings)")
        yield Finding("slots", str(config.effective_slots))
        yield Finding("tasks run with", task_interpreter(config.task_python, home=context.home))
