"""What every idle source reports, and the interface each one offers.

Apart from the factory in :mod:`trayapp.idle.sources`, so the platform modules
(which the factory imports) can use these without importing it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol


@dataclass(frozen=True)
class IdleReading:
    """One look at the user: what every source reports."""

    idle_s: float  # seconds since the last keyboard/mouse input; math.inf when nobody is there
    locked: bool = False  # the screen is locked: the user has left, whatever idle_s says
    session: bool = True  # False: nobody is logged in (a headless service): idle by definition


class IdleSource(Protocol):
    name: str

    def read(self) -> IdleReading:
        """Measure now. Must be cheap: the watcher calls it every second or so."""

    def notify_input(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (from any thread) the instant input arrives;
        False when this source cannot (the watcher then polls faster)."""

    def close(self) -> None:
        """Stop watching. Never blocks (in particular not until the next key press)."""
