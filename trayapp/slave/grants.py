"""Who gets this slave's next free slot: the slave's side of fair share.

Masters declare how many tasks they have for this slave (``demand``); when a
slot is free the engine offers it (``grant``) to the master the policy in
:mod:`trayapp.slave.fairshare` picks, and the master answers with a ``start``, or a
``release`` if its work went elsewhere meanwhile. A grant not used within
GRANT_TIMEOUT_S goes back to the pool. Usage is charged in slot-seconds as
tasks run.

:class:`Granting` is mixed into :class:`trayapp.slave.engine.SlaveEngine`, which
provides ``sessions``, ``tasks``, ``running``, ``settings``, ``fairshare``,
``rng``, ``accepts_work()`` and ``_check_disk()``.
"""

from __future__ import annotations

from trayapp.slave.fairshare import FairShare
from trayapp.wire.protocol import ProtocolError
from trayapp.slave.session import Session

GRANT_TIMEOUT_S = 10.0  # a grant not used by then goes back to the pool


class Granting:
    _last_charge: float

    def _on_demand(self, session: Session, message: dict) -> None:
        queued = message["queued"]
        if not isinstance(queued, int) or queued < 0:
            raise ProtocolError("demand must be a count")
        session.demand = queued
        if queued == 0:
            session.grants.clear()

    def _on_release(self, session: Session, message: dict) -> None:
        n = message["n"]
        if not isinstance(n, int) or n < 0:
            raise ProtocolError("release must be a count")
        del session.grants[:n]

    def _charge_usage(self, now: float) -> None:
        elapsed = now - self._last_charge
        self._last_charge = now
        if elapsed <= 0:
            return
        for token in self.running:
            self.fairshare.charge(self.tasks[token].master, elapsed, now)

    def _grant(self, now: float) -> None:
        for session in self.sessions.values():
            session.grants = [t for t in session.grants if now - t < GRANT_TIMEOUT_S]
        self._check_disk(now)
        if not self.accepts_work():
            return
        while True:
            outstanding = sum(len(s.grants) for s in self.sessions.values())
            if len(self.running) + outstanding >= self.settings.slots:
                return
            holding: dict[str, int] = {}
            for task in self.tasks.values():
                if task.state == "running":
                    holding[task.master] = holding.get(task.master, 0) + 1
            wanting, by_master = {}, {}
            for s in self.sessions.values():
                if s.master:
                    wanting[s.master] = s.demand - len(s.grants)
                    by_master[s.master] = s
            for m, s in by_master.items():
                holding[m] = holding.get(m, 0) + len(s.grants)
            self._apply_share_settings(by_master)
            if self.settings.grant_policy == "by_demand":
                chosen = FairShare.pick_by_demand(wanting, self.rng)
            else:
                chosen = self.fairshare.pick(wanting, holding, now, self.rng)
            if chosen is None:
                return
            session = by_master[chosen]
            session.grants.append(now)
            session.send("grant", n=1)

    def _apply_share_settings(self, by_master: dict[str, Session]) -> None:
        """Weights and caps are configured by master name or id; the policy works by id."""
        def lookup(table: dict, master: str):
            session = by_master[master]
            return table.get(master, table.get(session.name))

        self.fairshare.weights = {m: w for m in by_master if (w := lookup(self.settings.weights, m)) is not None}
        self.fairshare.caps = {m: c for m in by_master if (c := lookup(self.settings.caps, m)) is not None}
