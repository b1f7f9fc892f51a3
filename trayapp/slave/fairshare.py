"""Fair share: which master gets a slot when one frees on a slave.

A freed slot goes, among the masters that have queued work for this slave and
are under their cap, to the one holding the fewest slots per unit of weight;
among those, to the one with the least recent usage per unit of weight (its
slot-seconds here, decayed with a half-life, default one hour, so yesterday's
big sweep does not count against anyone today); remaining ties are broken at
random. Because the choice never looks at queue length, a master with 20 tasks
gets the same share as one with 10,000.

Among masters holding equally few, the one this slave granted a slot to
longest ago goes first (a master never granted here, first of all), and only
then usage decides. Without that step, whenever a slot frees the master that
just lost it and a master already waiting hold equally few; usage alone then
hands every such slot to whichever has used less, so the other one (often
the incumbent) starves until the usages meet. Round-robin among equals keeps
the split even from one grant to the next.

Why slots held come before usage: by usage alone, a master arriving while
another has filled the slave for an hour would take every freed slot until
its usage caught up, starving the first for as long. Counting held slots
first splits the slave evenly from the newcomer's first grant on; usage then
decides who gets the odd slot and who goes first.

The policy is a pure function of (usage, demand, weights, clock, random):
:meth:`FairShare.pick` takes the time and the random source as arguments.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass
class FairShare:
    half_life_s: float = 3600.0
    weights: dict[str, float] = field(default_factory=dict)  # master -> weight (default 1)
    caps: dict[str, int] = field(default_factory=dict)  # master -> most slots at once
    _usage: dict[str, float] = field(default_factory=dict)
    _as_of: dict[str, float] = field(default_factory=dict)
    _granted_at: dict[str, float] = field(default_factory=dict)  # master -> time of its last grant here

    def usage(self, master: str, now: float) -> float:
        """Decayed slot-seconds of ``master`` at time ``now``."""
        value = self._usage.get(master, 0.0)
        if not value:
            return 0.0
        elapsed = max(0.0, now - self._as_of[master])
        return value * math.pow(0.5, elapsed / self.half_life_s)

    def charge(self, master: str, slot_seconds: float, now: float) -> None:
        self._usage[master] = self.usage(master, now) + slot_seconds
        self._as_of[master] = now

    def note_grant(self, master: str, now: float) -> None:
        self._granted_at[master] = now

    def weight(self, master: str) -> float:
        return self.weights.get(master, 1.0)

    def pick(self, wanting: dict[str, int], running: dict[str, int], now: float,
             rng: random.Random) -> str | None:
        """The master that gets the next free slot, or None if nobody may.

        ``wanting``: master -> tasks it still wants to run here (demand minus
        outstanding grants); ``running``: master -> slots it holds now
        (running tasks and outstanding grants).
        """
        eligible = [m for m, n in wanting.items()
                    if n > 0 and running.get(m, 0) < self.caps.get(m, 1 << 30)]
        if not eligible:
            return None
        fewest = min(running.get(m, 0) / self.weight(m) for m in eligible)
        eligible = [m for m in eligible if running.get(m, 0) / self.weight(m) <= fewest + 1e-12]
        longest_ago = min(self._granted_at.get(m, -math.inf) for m in eligible)
        eligible = [m for m in eligible if self._granted_at.get(m, -math.inf) == longest_ago]
        scored = [(self.usage(m, now) / self.weight(m), m) for m in eligible]
        best = min(score for score, _ in scored)
        # Relative tolerance: usages computed at slightly different moments
        # must still count as a tie.
        tied = sorted(m for score, m in scored if score <= best * (1 + 1e-9) + 1e-12)
        return rng.choice(tied)

    @staticmethod
    def pick_by_demand(wanting: dict[str, int], rng: random.Random) -> str | None:
        """What a slave picking a random *task* would do (the longest queue wins
        most often). Not a policy to use: the baseline the fair-share benchmark
        measures against."""
        candidates = [(m, n) for m, n in sorted(wanting.items()) if n > 0]
        if not candidates:
            return None
        return rng.choices([m for m, _ in candidates], weights=[n for _, n in candidates])[0]

    def snapshot(self, now: float) -> dict[str, float]:
        return {m: self.usage(m, now) for m in self._usage}
