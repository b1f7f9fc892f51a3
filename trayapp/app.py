"""The one place that builds SpareCycles' objects and wires them together.

The CLI and the tray app ask for an :class:`App`; nothing else looks
up a home, a config or a queue on its own, so tests build an ``App`` over a
temporary home and get the real thing.
"""

from __future__ import annotations

import getpass
import platform
import secrets
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING

from trayapp.config import Config, load_config
from trayapp.locks import InstanceLock
from trayapp.home import Home
from trayapp.master.hosts import Hosts
from trayapp.job.refolder import JobFolders
from trayapp.master.jobs import Jobs
from trayapp.master.kinds import KindContext
from trayapp.master.queuecheck import check_queue_file
from trayapp.master.store import Store

if TYPE_CHECKING:
    from trayapp.master.dispatcher import Dispatcher


@dataclass
class App:
    home: Home
    config: Config = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.home.ensure()
        if self.config is None:
            self.config = load_config(self.home)

    @classmethod
    def from_environment(cls) -> "App":
        return cls(Home.from_environment())

    @cached_property
    def store(self) -> Store:
        check_queue_file(self.home.queue_db, self.config.results_root(self.home))
        return Store(self.home.queue_db)

    @property
    def dispatcher_lock(self) -> InstanceLock:
        return InstanceLock(self.home.dispatcher_lock)

    def identity(self) -> tuple[str, str]:
        """This PC's stable id (kept in the config folder) and a readable name."""
        path = self.home.identity_file
        try:
            ident = path.read_text().strip()
        except OSError:
            ident = ""
        if len(ident) != 16:
            ident = secrets.token_hex(8)
            path.write_text(ident + "\n")
        return ident, f"{getpass.getuser()}@{platform.node()}"

    def kind_context(self, *, tuned: tuple[object, ...] = ()) -> KindContext:
        """What host kinds build drivers and run checks with; ``tuned``: settings
        objects (a ``DriverSettings``...) used in place of those from the config."""
        # Here, not at the top: the slave engine's imports are a third of every CLI verb's start-up.
        from trayapp.slave.builder import build_engine

        identity = self.identity()
        return KindContext(
            self.home, self.config, identity, open_store=lambda: Store(self.home.queue_db),
            build_local_engine=partial(build_engine, self.config, self.home, identity,
                                       self.home.local_spool_dir, in_process=True), tuned=tuned)

    def dispatcher(self, *, tuned: tuple[object, ...] = ()) -> Dispatcher:
        from trayapp.master.dispatcher import Dispatcher

        return Dispatcher(self.store, self.kind_context(tuned=tuned))

    def hosts(self) -> Hosts:
        """Adding, removing, trusting, listing and testing hosts: the CLI's and the window's verbs."""
        return Hosts(self.store, self.kind_context())

    def jobs(self) -> Jobs:
        """Submit, cancel, retry (--repack), remove, and a dispatcher that runs them:
        the CLI's, the window's and the API's verbs."""
        return Jobs(self.store, JobFolders(self.home, self.config), self._start_background_dispatcher)

    def _start_background_dispatcher(self) -> int | None:
        """How the jobs service starts a dispatcher for this home (the service decides when)."""
        # Here, not at the top: the dispatcher's imports would slow every CLI verb's start-up.
        from trayapp.master.dispatcher import start_background_dispatcher

        return start_background_dispatcher(self.home, self.home.dispatcher_log)
