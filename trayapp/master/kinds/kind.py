"""What a kind of host is: how it is added, driven, listed and tested.

A host kind (this PC's own cores, a desktop slave over SSH, a batch cluster)
is one :class:`HostKind` in the registry (:mod:`trayapp.master.kinds`). The
dispatcher asks it for a driver for each of its hosts; ``hosts add`` takes its
options; ``hosts list`` and the window's hosts table show its columns;
``hosts test`` runs its check. Nothing outside the kind's module knows how its
hosts are reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, TypeVar

from trayapp.config import Config
from trayapp.errors import UserError
from trayapp.home import Home
from trayapp.master.store import HostRecord, Store

if TYPE_CHECKING:
    from trayapp.slave.engine import SlaveEngine

S = TypeVar("S")


class Driver(Protocol):
    """What the dispatcher runs per host: started once, stopped once, joined.

    A driver keeps the host's row in the queue up to date (``set_host_state``:
    state, reason, info), which is all ``hosts list`` and the window show of
    it; it claims tasks from the queue and settles their attempts. A protocol
    slave's :class:`~trayapp.master.driver.HostDriver` is one; a batch cluster
    brings its own class."""

    def start(self) -> None: ...

    def stop(self, *, retire: bool = False) -> None:
        """Stop driving; ``retire``: the host was removed, so what it holds for us is cancelled."""

    def join(self, timeout: float | None = None) -> None: ...

    def is_connected(self) -> bool:
        """The host answers now (a job no connected host will run fails instead of waiting)."""


@dataclass(frozen=True)
class KindContext:
    """What the master hands a kind to build drivers and run checks (wired in :mod:`trayapp.app`)."""

    home: Home
    config: Config
    identity: tuple[str, str]  # this master's id and readable name
    open_store: Callable[[], Store]  # a queue connection for a driver's own thread
    build_local_engine: Callable[[], "SlaveEngine"]  # the master's own cores, built like any slave's
    # Settings objects used in place of those a kind builds from ``config`` (a
    # test's quicker pace), looked up by their type: the context names no kind's.
    tuned: tuple[object, ...] = ()

    def settings(self, of: type[S], build: Callable[[], S]) -> S:
        """The ``of`` settings given in ``tuned``, else ``build()``'s."""
        return next((s for s in self.tuned if isinstance(s, of)), None) or build()


@dataclass(frozen=True)
class QueueFacts:
    """What the queue says of a host, for its row in the hosts table."""

    running: int  # our tasks dispatched or running there
    master_id: str | None  # whose share of the host to show (None: no share column)


@dataclass(frozen=True)
class Finding:
    """One line of ``hosts test``: what was checked, and what was found."""

    label: str
    text: str


def _plain(value: Any) -> str:
    return str(value)


@dataclass(frozen=True)
class Column:
    """One of a kind's columns in ``hosts list`` and the window's hosts table."""

    key: str  # its field in ``hosts list --json``
    title: str  # "Slots"; the CLI writes it in capitals
    show: Callable[[Any], str] = _plain

    def text(self, fields: dict) -> str | None:
        """The cell for a host described by ``fields``; None when it has no value."""
        value = fields.get(self.key)
        return None if value is None else self.show(value)


@dataclass(frozen=True)
class AddOption:
    """One ``hosts add`` option of a kind; also a field of the window's add dialog."""

    flag: str  # "--port"
    help: str
    type: Callable[[str], Any] = str
    default: Any = None  # used when the option is not given
    required: bool = False
    # A switch: the CLI then asks for a secret (not echoed) and passes it as the value.
    secret: bool = False

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _flag_of(dest: str) -> str:
    return "--" + dest.replace("_", "-")


class HostKind:
    """A kind of host. Subclasses set the class attributes and override the hooks they need."""

    name: str = ""
    summary: str = ""  # "a desktop PC reached over SSH": for help texts and messages
    options: tuple[AddOption, ...] = ()
    columns: tuple[Column, ...] = ()
    # The host this kind has without `hosts add` ("local"); such hosts are not
    # added or removed by hand, and their name is taken.
    builtin_host: str | None = None

    # ----- hosts add --------------------------------------------------------------

    def complete(self, values: dict) -> dict:
        """``values`` (option dest -> value, None meaning not given) checked
        against this kind's options, with their defaults filled in."""
        own = {o.dest: o for o in self.options}
        foreign = sorted(k for k, v in values.items() if v is not None and k not in own)
        if foreign:
            raise UserError(f"{_flag_of(foreign[0])} is not an option of {self.name} hosts",
                            f"the options of --kind {self.name} are: " + (", ".join(o.flag for o in self.options)
                                                                         or "none"))
        done = {}
        for dest, option in own.items():
            value = values.get(dest)
            if value is None and option.required:
                raise UserError(f"{option.flag} is required for {self.name} hosts", f"{option.flag}: {option.help}")
            done[dest] = option.default if value is None else value
        return done

    def record(self, values: dict) -> dict:
        """The store's fields for a new host (``Store.add_host`` keywords: its
        ``options``, and ``slots`` for a kind that caps them) from completed
        option values; raises UserError for values out of range."""
        raise NotImplementedError

    def add(self, store: Store, name: str, values: dict) -> HostRecord:
        return store.add_host(name, kind=self.name, **self.record(self.complete(values)))

    def where(self, host: HostRecord) -> str:
        """Where the host is, in a few words ("me@lab-07:22")."""
        return self.name

    def next_step(self, host: HostRecord) -> str | None:
        """What the user does after adding the host, if anything."""
        return None

    def key_endpoint(self, host: HostRecord) -> tuple[str, int] | None:
        """The (address, port) whose SSH host key the user trusts; None: no key to trust."""
        return None

    # ----- the dispatcher -------------------------------------------------------------

    def prepare(self, store: Store, config: Config) -> None:
        """Before the dispatcher's first round: put the kind's own host in the queue, if it has one."""

    def is_driven(self, host: HostRecord, config: Config) -> bool:
        """Whether the dispatcher drives this host now."""
        return True

    def build_driver(self, host: HostRecord, context: KindContext) -> Driver:
        raise NotImplementedError

    # ----- hosts list, hosts test ----------------------------------------------------

    def describe(self, host: HostRecord, facts: QueueFacts) -> dict:
        """The host's fields in ``hosts list --json``; ``columns`` pick from them."""
        return {}

    def test(self, host: HostRecord, context: KindContext) -> Iterator[Finding]:
        """Check the host is usable, saying what was found step by step;
        raises UserError (problem and fix) at the first step that fails."""
        yield Finding("kind", f"{self.name}: no check for this kind")
