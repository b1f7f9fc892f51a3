"""Who gets this slave's next free slot: the slave's side of fair share.

Masters declare how many tasks they have for this slave (``demand``); when a
slot is free the engine offers it (``grant``) to the master the policy in
:mod:`trayapp.slave.fairshare` picks, and the master answers with a ``start``, or a
``release`` if its work went elsewhere meanwhile. A grant not used within
GRANT_TIMEOUT_S goes back to the pool. Usage is charged in slot-seconds as
tasks run.

:class:`Granting` is owned by :class:`trayapp.slave.engine.SlaveEngine`, which
routes ``demand`` and ``release`` to it, and tells it, as time passes, which
masters' tasks ran (:meth:`Granting.charge_usage`) and who holds what when
slots may be offered (:meth:`Granting.offer_free_slots`).
"""

from __future__ import annotations

import random
from typing import Collection, Iterable

from trayapp.slave.fairshare import FairShare
from trayapp.slave.session import Session

GRANT_TIMEOUT_S = 10.0  # a grant not used by then goes back to the pool
# "by_demand" exists only as bench/fair_share.py's baseline (slave/builder.py: bench_grant_policy).
GRANT_POLICIES = ("fair", "by_demand")


class Granting:
    def __init__(self, fairshare: FairShare, rng: random.Random, *, slots: int, now: float,
                 policy: str = "fair", weights: dict | None = None, caps: dict | None = None):
        self.fairshare = fairshare
        self.rng = rng
        self.slots = slots
        self.policy = policy  # "by_demand" exists only as the benchmark's baseline
        # Configured by master name (user@pc) or master id.
        self.weights = weights or {}
        self.caps = caps or {}
        self._last_charge = now

    def on_demand(self, session: Session, message: dict) -> None:
        queued = message["queued"]  # a count: checked against the protocol's field table
        session.demand = queued
        if queued == 0:
            session.grants.clear()

    def on_release(self, session: Session, message: dict) -> None:
        del session.grants[:message["n"]]

    def charge_usage(self, now: float, running_masters: Iterable[str]) -> None:
        """Charge each account a slot for the time since the last call, per task it runs."""
        elapsed = now - self._last_charge
        self._last_charge = now
        if elapsed <= 0:
            return
        for master in running_masters:
            self.fairshare.charge(master, elapsed, now)

    def offer_free_slots(self, now: float, sessions: Collection[Session], *, running: int,
                         holding: dict[str, int], may_grant: bool) -> None:
        """Expire unused grants, then grant free slots one by one while masters
        want them. ``running``: attempts that hold a slot; ``holding``: running
        tasks by master; ``may_grant``: whether the slave takes work now."""
        for session in sessions:
            session.grants = [t for t in session.grants if now - t < GRANT_TIMEOUT_S]
        if not may_grant:
            return
        while True:
            outstanding = sum(len(s.grants) for s in sessions)
            if running + outstanding >= self.slots:
                return
            held = dict(holding)
            # By account (trayapp.slave.identity): a key is one master for fair share,
            # however many connections or claimed ids it comes with.
            wanting, by_master = {}, {}
            for s in sessions:
                if s.master:
                    wanting[s.account] = wanting.get(s.account, 0) + max(0, s.demand - len(s.grants))
                    by_master.setdefault(s.account, []).append(s)
                    held[s.account] = held.get(s.account, 0) + len(s.grants)
            self._apply_share_settings(by_master)
            if self.policy == "by_demand":
                chosen = FairShare.pick_by_demand(wanting, self.rng)
            else:
                chosen = self.fairshare.pick(wanting, held, now, self.rng)
            if chosen is None:
                return
            self.fairshare.note_grant(chosen, now)
            session = max(by_master[chosen], key=lambda s: s.demand - len(s.grants))
            session.grants.append(now)
            session.send("grant", n=1)

    def _apply_share_settings(self, by_master: dict[str, list[Session]]) -> None:
        """Weights and caps are configured by the name a master's key was
        authorized with (for an unrestricted key: the name or id it says it
        has); the policy works by account."""
        def lookup(table: dict, account: str):
            session = by_master[account][0]
            if session.principal is not None and session.principal.bound_to_a_key:
                return table.get(session.principal.label, table.get(account))
            return table.get(account, table.get(session.name))

        self.fairshare.weights = {m: w for m in by_master if (w := lookup(self.weights, m)) is not None}
        self.fairshare.caps = {m: c for m in by_master if (c := lookup(self.caps, m)) is not None}
