"""The kinds of host a master knows, by name."""

from __future__ import annotations

from typing import Iterator

from trayapp.errors import UserError
from trayapp.master.kinds.kind import AddOption, Column, HostKind


class KindRegistry:
    """Host kinds by name, in the order they were registered (the order of
    their columns in the hosts table). ``default``: the kind ``hosts add``
    assumes when none is named."""

    def __init__(self, *kinds: HostKind, default: str):
        self._kinds: dict[str, HostKind] = {}
        self.default = default
        for kind in kinds:
            self.register(kind)

    def register(self, kind: HostKind) -> HostKind:
        if not kind.name or kind.name in self._kinds:
            raise ValueError(f"host kind {kind.name!r} is unnamed or registered already")
        for option in kind.options:
            other = self._option(option.flag)
            if other is not None and (other.type, other.secret) != (option.type, option.secret):
                # One command line carries every kind's options: a flag means one thing.
                raise ValueError(f"{option.flag} of kind {kind.name} differs from the option of that name "
                                 "another kind has")
        self._kinds[kind.name] = kind
        return kind

    def with_kind(self, kind: HostKind) -> "KindRegistry":
        """A copy with one more kind, leaving this registry as it is."""
        return KindRegistry(*self._kinds.values(), kind, default=self.default)

    def get(self, name: str) -> HostKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise UserError(f"unknown host kind '{name}'",
                            "use one of: " + ", ".join(k.name for k in self.addable())) from None

    def __iter__(self) -> Iterator[HostKind]:
        return iter(self._kinds.values())

    def addable(self) -> list[HostKind]:
        """The kinds a user adds hosts of (not this PC's own cores)."""
        return [k for k in self if k.builtin_host is None]

    def owner_of_name(self, host_name: str) -> HostKind | None:
        """The kind whose own host has this name, if any: the name is taken."""
        return next((k for k in self if k.builtin_host == host_name), None)

    def _option(self, flag: str) -> AddOption | None:
        return next((o for k in self for o in k.options if o.flag == flag), None)

    def options(self) -> list[tuple[AddOption, list[str]]]:
        """Every kind's ``hosts add`` options once, with the kinds that take each."""
        found: dict[str, tuple[AddOption, list[str]]] = {}
        for kind in self.addable():
            for option in kind.options:
                found.setdefault(option.flag, (option, []))[1].append(kind.name)
        return list(found.values())

    def columns(self) -> tuple[Column, ...]:
        """Every kind's columns once (by key), in registration order."""
        found: dict[str, Column] = {}
        for kind in self:
            for column in kind.columns:
                found.setdefault(column.key, column)
        return tuple(found.values())
