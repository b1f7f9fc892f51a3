"""When a slave may work, and what happens to its tasks when that changes.

Two voices decide: the idle watcher (:mod:`trayapp.idle.watch`, on its own
thread) reports whether the PC's user is away, and the user's own verbs
(pause, donate, resume: the tray menu and the CLI) override it for a while.
When the user comes back, every task stops at once (``preempt = "kill"``), or
is suspended and killed only if the user stays longer than a grace time
(``"suspend"``).

The watcher's report is applied on the engine's thread, first thing after
its wake pipe fires, so a returning user's tasks die before the engine does
anything slow (unpacking an archive, packing results). A slave without a
watcher never gets a report: ``available`` stays True and it works all the time.

:class:`Availability` is owned by :class:`trayapp.slave.engine.SlaveEngine`,
which hands it the task runner, a view of the running attempts, its
``stop_all_tasks`` and its ``wake``, and asks it whether work may be taken
(:meth:`Availability.may_work`), what to show (``state``, the reasons), and
to act on time passing (:meth:`Availability.tick`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from enum import Enum
from typing import Callable, Collection

from trayapp.run.runner import TaskHandle, TaskRunner
from trayapp.status import AttemptOutcome

log = logging.getLogger(__name__)


class SlaveState(str, Enum):
    READY = "ready"  # accepting work, none running
    WORKING = "working"
    WAITING = "waiting"  # not accepting: waiting for the PC to be idle
    PAUSED = "paused"
    DONATING = "donating"
    UNAVAILABLE = "unavailable"  # an error; the reason says which


class Availability:
    def __init__(self, runner: TaskRunner, *, running: Callable[[], Collection[TaskHandle]],
                 stop_all_tasks: Callable[[AttemptOutcome, str], int], wake: Callable[[], None],
                 clock: Callable[[], float], preempt: str = "kill", suspend_grace_s: float = 600.0):
        self._runner = runner
        self._running = running
        self._stop_all_tasks = stop_all_tasks
        self._wake = wake
        self._clock = clock
        self.preempt_mode = preempt  # "suspend": stop the trees, kill them only after suspend_grace_s
        self.suspend_grace_s = suspend_grace_s
        # Whether the PC's user lets us work now: the idle watcher drives it.
        self.available = True
        self.paused_until: float | None = None  # set by Pause; math.inf = until resumed
        self.donating_until: float | None = None  # set by Donate: work even while the user is active
        self.idle_reason: str | None = None  # why the PC is not available now, shown while waiting
        self.suspended_since: float | None = None  # when the running tasks were suspended
        self._idle_report: tuple[bool, str | None] | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> SlaveState:
        """The slave's state as far as its user and idleness go (the engine's own
        problems, a full disk, come before it)."""
        if self.paused_until is not None:
            return SlaveState.PAUSED
        if self.donating and not self.available:
            return SlaveState.DONATING
        if self._running() and self.suspended_since is None:  # suspended tasks: waiting
            return SlaveState.WORKING
        return SlaveState.READY if self.available else SlaveState.WAITING

    def may_work(self) -> bool:
        """Whether new tasks may start now, as far as the PC's user decides."""
        return self.paused_until is None and (self.available or self.donating)

    @property
    def paused_reason(self) -> str | None:
        return _until("paused", self.paused_until)

    @property
    def donating(self) -> bool:
        return self.donating_until is not None

    @property
    def donating_reason(self) -> str | None:
        """Why a donating slave works while its user is there (hosts lists show it)."""
        return _until("lent by its user", self.donating_until)

    # ----- the user's verbs (tray menu and CLI) ---------------------------------------

    def pause(self, until: float | None = None) -> None:
        """Stop working now, until ``until`` (a time) or until resumed."""
        self.paused_until = math.inf if until is None else until
        self.donating_until = None
        self._stop_all_tasks(AttemptOutcome.PREEMPTED, "the PC's user paused SpareCycles")

    def donate(self, until: float | None = None) -> None:
        """Work even while the user is at the PC, until ``until`` or until resumed."""
        self.paused_until = None
        self.donating_until = math.inf if until is None else until

    def resume(self) -> None:
        """Back to normal: work when the PC is idle."""
        self.paused_until = None
        self.donating_until = None

    # ----- the idle watcher's reports -----------------------------------------------------

    @property
    def waiting_reason(self) -> str | None:
        if self.state is not SlaveState.WAITING:
            return None
        if self.suspended_since is not None:
            left = self.suspended_since + self.suspend_grace_s - self._clock()
            return (f"{self.idle_reason or 'the PC is in use'}; {len(self._running())} task(s) suspended, "
                    f"stopped in {max(0, left):.0f} s unless the PC is idle again")
        return self.idle_reason

    def report_idle(self, available: bool, reason: str | None = None) -> None:
        """The idle watcher's verdict (may the slave work now, and if not why);
        safe from any thread. Applied at once: the engine wakes for it."""
        with self._lock:
            self._idle_report = (available, reason)
        self._wake()

    def apply_idle_report(self) -> None:
        """Act on the watcher's latest verdict; on the engine's thread."""
        with self._lock:
            report, self._idle_report = self._idle_report, None
        if report is None:
            return
        self.available, self.idle_reason = report[0], None if report[0] else report[1]
        if self.available:
            self._thaw("the PC is idle again")
        elif self._running() and not self.donating:
            self._preempt()

    def _preempt(self) -> None:
        if self.preempt_mode == "suspend":
            if self.suspended_since is None:
                self._runner.suspend(self._running())
                self.suspended_since = self._clock()
                log.info("the PC's user is back: %d task(s) suspended for up to %g s",
                         len(self._running()), self.suspend_grace_s)
            return
        self._runner.kill_at_once(self._running())  # every tree at once; the thorough kill follows
        stopped = self._stop_all_tasks(AttemptOutcome.PREEMPTED, "the PC's user came back")
        log.info("the PC's user is back: stopped %d task(s); their masters run them elsewhere", stopped)

    def _thaw(self, why: str) -> None:
        if self.suspended_since is None:
            return
        self.suspended_since = None
        self._runner.resume(self._running())
        log.info("%s: %d suspended task(s) go on", why, len(self._running()))

    # ----- time passing ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Apply what time and the watcher decided: preempt, thaw, expire choices."""
        self.apply_idle_report()
        # Tasks run only while the PC is idle or lent: this also catches a
        # donation ended by "resume" while the user is at the PC.
        if not self.available and self._running() and not self.donating and self.suspended_since is None:
            self._preempt()
        if self.suspended_since is not None:
            if not self._running():
                self.suspended_since = None
            elif self.donating or self.paused_until is not None:
                self._thaw("the user chose to donate")  # pause has already stopped them
            elif now - self.suspended_since >= self.suspend_grace_s:
                self.suspended_since = None
                self._runner.kill_at_once(self._running())
                self._stop_all_tasks(AttemptOutcome.PREEMPTED,
                                     f"the PC's user stayed longer than {self.suspend_grace_s:g} s")
        self._expire_user_choices(now)

    def _expire_user_choices(self, now: float) -> None:
        if self.paused_until is not None and now >= self.paused_until:
            self.paused_until = None
        if self.donating_until is not None and now >= self.donating_until:
            self.donating_until = None
            if not self.available:
                self._stop_all_tasks(AttemptOutcome.PREEMPTED, "the donation ended while the user is at the PC")


def _until(what: str, until: float | None) -> str | None:
    """``what`` until a time of day, or until resumed (math.inf); None if not at all."""
    if until is None:
        return None
    if math.isinf(until):
        return f"{what} until resumed"
    return f"{what} until " + time.strftime("%H:%M", time.localtime(until))
