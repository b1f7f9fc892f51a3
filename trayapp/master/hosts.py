"""The hosts a master sends work to: adding, removing, trusting, listing and
testing them. The CLI (``sparecycles hosts ...``) and the window call these
same functions; they check the input, raise :class:`UserError` naming the
problem and the fix, and print nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from trayapp.errors import UserError, refuse_control_characters
from trayapp.master.hostkeys import PresentedKey, presented_key, refuse_a_changed_key, trust_key
from trayapp.master.kinds import KINDS, Column, Finding, HostKind, KindContext, KindRegistry, QueueFacts
from trayapp.master.store import HostRecord, Store

# A host option: ``sparecycles.map`` loads the pickles it sends back as any
# pickle (which can run code), not as plain data only. Set by ``hosts set``.
TRUSTED_PICKLES = "trusted_pickles"


@dataclass(frozen=True)
class HostView:
    """A host as ``hosts list`` and the window's hosts table show it."""

    name: str
    kind: str
    where: str  # in a few words, from its kind
    state: str
    reason: str | None
    last_seen: float | None
    fields: dict  # the kind's own (``HostKind.describe``: an SSH host's address, port and user...)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "state": self.state, "reason": self.reason,
                "last_seen": self.last_seen, **self.fields}

    def cells(self, columns: tuple[Column, ...]) -> tuple[str | None, ...]:
        """The text of each of ``columns`` (None where this host has no value)."""
        return tuple(column.text(self.fields) for column in columns)


def host_views(store: Store, kinds: KindRegistry = KINDS, master_id: str | None = None) -> list[HostView]:
    """Every host as its kind describes it; ``master_id``: whose share to show."""
    views = []
    for host in store.hosts():
        facts = QueueFacts(running=store.running_on(host.name), master_id=master_id)
        try:
            kind = kinds.get(host.kind)
            fields, where = kind.describe(host, facts), kind.where(host)
        except UserError:  # of a kind this SpareCycles does not know: listed, not described
            fields, where = {"running": facts.running}, f"a host of kind {host.kind}"
        views.append(HostView(host.name, host.kind, where, host.state, host.reason, host.last_seen,
                              {TRUSTED_PICKLES: host.options.get(TRUSTED_PICKLES) is True, **fields}))
    return views


class Hosts:
    def __init__(self, store: Store, context: KindContext, kinds: KindRegistry = KINDS):
        self.store = store
        self.context = context
        self.kinds = kinds

    def add(self, name: str, kind: str, values: dict) -> HostRecord:
        """Add a host of ``kind`` from its ``hosts add`` options (dest -> value,
        None meaning not given)."""
        found = self.kinds.get(kind)
        refuse_control_characters("the host's name", name)
        if not name.strip():
            raise UserError("the host's name is empty", "name it as you will call it, e.g. lab-07")
        owner = self.kinds.owner_of_name(name)
        if owner is not None:
            raise UserError(f"'{name}' is the name of {owner.summary}", "choose another name")
        if found.builtin_host is not None:
            raise UserError(f"hosts of kind '{kind}' are not added by hand",
                            "use one of: " + ", ".join(k.name for k in self.kinds.addable()))
        return found.add(self.store, name, values)

    def trust_pickles(self, name: str, trusted: bool) -> HostRecord:
        """Whether ``map`` values from this host load as any pickle (``trusted``) or as plain data only."""
        host = self.store.host(name)
        if self.kinds.get(host.kind).builtin_host is not None:
            raise UserError(f"'{name}' is this PC's own cores; their values always load as they are")
        return self.store.set_host_option(name, TRUSTED_PICKLES, trusted)

    def kind_of(self, host: HostRecord) -> HostKind:
        return self.kinds.get(host.kind)

    def remove(self, name: str) -> int:
        """Forget the host; its unfinished tasks go back to the queue. Returns how many."""
        host = self.store.host(name)
        owner = self.kinds.owner_of_name(name)
        if owner is not None and owner.name == host.kind:
            raise UserError(f"'{name}' is {owner.summary}; it cannot be removed",
                            "to run no tasks on it, set run_locally = false in the settings")
        running = self.store.running_on(name)
        self.store.remove_host(name)
        self.store.lose_open_attempts(name, f"host {name} was removed; the task will run elsewhere")
        return running

    def presented_key(self, name: str) -> PresentedKey:
        """The SSH key the host presents now, compared with the one we trust."""
        host = self.store.host(name)
        endpoint = self.kind_of(host).key_endpoint(host)
        if endpoint is None:
            raise UserError(f"{name} is a host of kind '{host.kind}'; it has no SSH key to trust")
        return presented_key(self.context.home, host.name, *endpoint)

    @staticmethod
    def refuse_a_changed_key(key: PresentedKey, *, replace: bool, unseen: bool = False) -> None:
        """Raise unless the key may be trusted as it is (a changed key needs
        ``replace``, and is never replaced ``unseen``: without the user comparing
        its fingerprint)."""
        refuse_a_changed_key(key, replace=replace, unseen=unseen)

    def trust(self, key: PresentedKey, *, fingerprint: str | None = None, replace: bool = False) -> None:
        """Trust the key the user saw; ``fingerprint``: only if it still has it."""
        trust_key(self.context.home, key, fingerprint=fingerprint, replace=replace)
        # "host key not trusted yet" is over: said at once, until the dispatcher's
        # next try to connect (up to its backoff away) says how the host is.
        self.store.set_host_state(key.host, "connecting", None)

    def trust_by_fingerprint(self, name: str, fingerprint: str, *, replace: bool = False) -> PresentedKey:
        """Fetch the host's key again and trust it if it has ``fingerprint``."""
        key = self.presented_key(name)
        self.trust(key, fingerprint=fingerprint, replace=replace)
        return key

    def rows(self) -> list[HostView]:
        return host_views(self.store, self.kinds, self.context.identity[0])

    def test(self, name: str) -> Iterator[Finding]:
        """Check the host step by step, as its kind does (see ``HostKind.test``)."""
        host = self.store.host(name)
        return self.kind_of(host).test(host, self.context)
