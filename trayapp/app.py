"""The one place that builds SpareCycles' objects and wires them together.

The CLI (and later the tray app) asks for an :class:`App`; nothing else looks
up a home, a config or a queue on its own, so tests build an ``App`` over a
temporary home and get the real thing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property

from trayapp.config import Config, load_config
from trayapp.dispatcher import LOCAL_HOST, Dispatcher, DispatcherLock, start_background_dispatcher
from trayapp.home import Home
from trayapp.store import Store


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
        return Store(self.home.queue_db)

    @property
    def dispatcher_lock(self) -> DispatcherLock:
        return DispatcherLock(self.home.dispatcher_lock)

    def dispatcher(self) -> Dispatcher:
        return Dispatcher(self.store, self.home, self.config, host=LOCAL_HOST)

    def ensure_dispatcher(self) -> int | None:
        """Start a background dispatcher if none serves this home; its pid, or None."""
        return start_background_dispatcher(self.home, sys.executable, self.home.log_dir / "dispatcher.log")
