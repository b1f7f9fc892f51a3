"""When may the slave work? The idle policy, with time and readings passed in.

Nothing here reads a clock or the system: the watcher hands in ``now`` and
what the sources measured, so tests are exact and instant.

The rules (DESIGN.md, "Slave policy"):

- Nobody logged in (a headless service): work. There is no user to wait
  for, and whatever else loads the CPU is not a person at the PC.
- On battery, with ``on_battery = "pause"``: do not work, whatever else holds.
- The user is away when the screen is locked, or when there was no input
  for ``idle_after_s``. Until then: wait. Any input makes them present again,
  and the full idle time must pass again before work resumes.
- Other programs' CPU load (tasks excluded) must stay under
  ``max_foreign_cpu`` (a share of all cores): the user may have left a long
  computation of their own running. The load is smoothed (an exponential
  average over ``cpu_window_s``) and has two thresholds, so one spike
  neither stops the slave nor does one quiet second start it again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trayapp.idle.reading import IdleReading


@dataclass(frozen=True)
class PolicySettings:
    idle_after_s: float = 300.0
    max_foreign_cpu: float = 0.5  # share of all cores
    on_battery: str = "pause"  # or "work"
    cpu_window_s: float = 10.0  # time constant of the load's moving average
    # Busy above max_foreign_cpu, free again only below this fraction of it.
    cpu_release: float = 0.75


@dataclass(frozen=True)
class Verdict:
    available: bool
    reason: str | None = None  # why not, for the user (state "waiting (reason)")


class CpuLoad:
    """Other programs' CPU share, smoothed, with hysteresis."""

    def __init__(self, limit: float, window_s: float, release: float):
        self.limit = limit
        self.window_s = window_s
        self.release = release
        self.average: float | None = None
        self.busy = False
        self._last: float | None = None

    def update(self, now: float, share: float) -> bool:
        """Feed one measurement (the share since the previous one); True while busy."""
        if self.average is None or self._last is None:
            # Start from "quiet": the first samples (the slave's own start-up
            # among them) must not decide alone.
            self.average, self._last = 0.0, now
        dt = max(0.0, now - self._last)
        weight = 1.0 - math.exp(-dt / self.window_s) if self.window_s > 0 else 1.0
        self.average += weight * (share - self.average)
        self._last = now
        if self.busy and self.average < self.limit * self.release:
            self.busy = False
        elif not self.busy and self.average > self.limit:
            self.busy = True
        return self.busy


class IdlePolicy:
    def __init__(self, settings: PolicySettings):
        self.settings = settings
        self.cpu = CpuLoad(settings.max_foreign_cpu, settings.cpu_window_s, settings.cpu_release)

    def decide(self, now: float, reading: IdleReading, *, foreign_cpu: float | None = None,
               on_battery: bool | None = None) -> Verdict:
        """May the slave work now? ``foreign_cpu``: other programs' share of all
        cores since the last call (None: not measured); ``on_battery``: None if
        the PC has no battery."""
        if foreign_cpu is not None:
            self.cpu.update(now, foreign_cpu)  # always fed, so the average is warm when it matters
        if on_battery and self.settings.on_battery == "pause":
            return Verdict(False, "on battery")
        if not reading.session:
            return Verdict(True)
        if not (reading.locked or reading.idle_s >= self.settings.idle_after_s):
            return Verdict(False, f"waiting for {describe_seconds(self.settings.idle_after_s)} "
                                  "without keyboard or mouse input")
        if self.cpu.busy:
            # In steps of 5 %: each new reason is news to the log and the masters.
            return Verdict(False, f"other programs use {5 * round(self.cpu.average * 20)}% of the CPU "
                                  f"(lending below {self.settings.max_foreign_cpu:.0%})")
        return Verdict(True)

    def seconds_until_idle(self, reading: IdleReading) -> float:
        """How long, at the earliest, until the user counts as away (0 if already)."""
        if not reading.session or reading.locked:
            return 0.0
        return max(0.0, self.settings.idle_after_s - reading.idle_s)


def describe_seconds(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
