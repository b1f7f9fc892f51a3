"""The one place that builds SpareCycles' objects and wires them together.

The CLI (and later the tray app) asks for an :class:`App`; nothing else looks
up a home, a config or a queue on its own, so tests build an ``App`` over a
temporary home and get the real thing.
"""

from __future__ import annotations

import getpass
import platform
import secrets
import sys
from dataclasses import dataclass, field
from functools import cached_property

from trayapp.config import Config, load_config
from trayapp.locks import InstanceLock
from trayapp.master.dispatcher import Dispatcher, start_background_dispatcher
from trayapp.master.driver import DriverSettings
from trayapp.home import Home
from trayapp.master.queuecheck import check_queue_file
from trayapp.master.store import Store


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
        path = self.home.config_dir / "id"
        try:
            ident = path.read_text().strip()
        except OSError:
            ident = ""
        if len(ident) != 16:
            ident = secrets.token_hex(8)
            path.write_text(ident + "\n")
        return ident, f"{getpass.getuser()}@{platform.node()}"

    def dispatcher(self, *, driver_settings: DriverSettings | None = None) -> Dispatcher:
        from trayapp.wire.ssh import ssh_connector

        return Dispatcher(self.store, self.home, self.config, store_factory=lambda: Store(self.home.queue_db),
                          identity=self.identity(), connect_ssh=ssh_connector(self.home),
                          driver_settings=driver_settings)

    def ensure_dispatcher(self) -> int | None:
        """Start a background dispatcher if none serves this home; its pid, or None."""
        return start_background_dispatcher(self.home, sys.executable, self.home.log_dir / "dispatcher.log")
