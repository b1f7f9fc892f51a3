"""The idle watcher: reads the idle source, asks the policy, tells the slave.

It runs on its own thread, beside the slave engine's loop, and talks to the
slave through one thread-safe call (``report``, its
:meth:`~trayapp.slave.availability.Availability.report_idle`), made only when
the verdict changes. Two paths lead there:

- the poll: every ``poll_s`` (1 s) it reads the source, measures the other
  programs' CPU load and the battery, and asks :class:`IdlePolicy`; while
  the user is active it sleeps only until the idle time could be reached;
- the instant path: sources with listeners call :meth:`IdleWatcher.user_input`
  on every key press and mouse move. The first input after an idle spell
  reports "not available" at once, on the listener's thread; every later one
  only notes the time (it runs per mouse-move event, so it must stay cheap).
  Sources without listeners (Wayland) are polled every ``fast_poll_s``
  (0.1 s) while tasks run, and at the slow pace otherwise.

A watcher that stops re-evaluating would keep a slave "waiting" for good
after its user left: a second thread, the watchdog, notices when no poll
has ended for :data:`STALL_POLLS` poll intervals, logs where the poll is
stuck (its thread's stack), and starts a fresh poll thread; the stuck one
exits if it ever wakes. Neither path waits for the other for long: a poll
that cannot get the lock within a poll interval takes a new one.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
import traceback
from typing import Callable

import psutil

from trayapp.idle.reading import IdleReading, IdleSource
from trayapp.idle.policy import IdlePolicy, Verdict, describe_seconds

log = logging.getLogger(__name__)

STALL_POLLS = 3  # poll intervals without a finished poll after which the watchdog steps in


def on_battery(battery: Callable[[], object] = psutil.sensors_battery) -> bool | None:
    """True on battery, False plugged in, None with no battery (a desktop)."""
    try:
        state = battery()
    except Exception:  # noqa: BLE001 - psutil raises various errors on odd power-supply drivers
        return None
    if state is None or state.power_plugged is None:
        return None
    return not state.power_plugged


class ForeignCpu:
    """Other programs' share of all cores between two samples, tasks excluded."""

    def __init__(self, task_cpu_seconds: Callable[[], float | None],
                 cpu_times: Callable[[], object] = psutil.cpu_times):
        self._task_cpu_seconds = task_cpu_seconds
        self._cpu_times = cpu_times
        self._last: tuple[float, float, float] | None = None

    def sample(self) -> float | None:
        """The share since the previous sample (None for the first one)."""
        t = self._cpu_times()
        fields = t._asdict()
        # guest time is already inside user time on Linux; idle and iowait are not work.
        total = sum(v for k, v in fields.items() if k not in ("guest", "guest_nice"))
        busy = total - fields.get("idle", 0.0) - fields.get("iowait", 0.0)
        tasks = self._task_cpu_seconds() or 0.0
        last, self._last = self._last, (total, busy, tasks)
        if last is None:
            return None
        d_total = total - last[0]
        if d_total <= 0:
            return None
        return min(1.0, max(0.0, (busy - last[1]) - max(0.0, tasks - last[2])) / d_total)


class IdleWatcher:
    def __init__(self, source: IdleSource, policy: IdlePolicy, report: Callable[[bool, str | None], None], *,
                 foreign_cpu: ForeignCpu | None = None, battery: Callable[[], bool | None] = on_battery,
                 has_tasks: Callable[[], bool] = lambda: False, clock: Callable[[], float] = time.monotonic,
                 poll_s: float = 1.0, fast_poll_s: float = 0.1):
        self.source = source
        self.policy = policy
        self._report = report
        self._foreign_cpu = foreign_cpu
        self._battery = battery
        self._has_tasks = has_tasks
        self._clock = clock
        self.poll_s = poll_s
        self.fast_poll_s = fast_poll_s
        self.verdict: Verdict | None = None
        self.instant = False  # the source calls user_input() on every input
        self._last_input = -math.inf
        self._reading: IdleReading | None = None
        self._read_failed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        # Real time, whatever clock the policy is given: the watchdog judges threads.
        self._polled_at = time.monotonic()
        self._generation = 0  # the poll thread of an older generation exits when it wakes
        self.restarts = 0

    @property
    def active_reason(self) -> str:
        return f"waiting for {describe_seconds(self.policy.settings.idle_after_s)} without keyboard or mouse input"

    def check(self) -> Verdict:
        """Read, decide, and report if the verdict changed; one poll."""
        reading = self._read()
        foreign = self._foreign_cpu.sample() if self._foreign_cpu is not None and reading.session else None
        battery = self._battery()
        with self._locked():
            now = self._clock()
            # Input seen by a listener after the source was read must win, or a
            # reading taken just before a key press would undo its report.
            since_input = max(0.0, now - self._last_input)
            if since_input < reading.idle_s:
                reading = IdleReading(since_input, reading.locked, reading.session)
            verdict = self.policy.decide(now, reading, foreign_cpu=foreign, on_battery=battery)
            self._reading = reading
            self._publish(verdict)
        return verdict

    def _locked(self) -> threading.Lock:
        """The watcher's lock, acquired: within a poll interval, or a new one. Whoever
        holds the old one that long is stuck, and must not stop the watcher with it."""
        lock = self._lock
        if not lock.acquire(timeout=max(self.poll_s, 0.1)):
            log.warning("the idle watcher's lock was held for over %.1f s; going on with a new one", self.poll_s)
            lock = self._lock = threading.Lock()
            lock.acquire()
        return _Held(lock)

    def user_input(self) -> None:
        """A key or the mouse moved (called on a listener's thread, per event)."""
        self._last_input = self._clock()
        verdict = self.verdict
        if verdict is not None and not verdict.available:
            return  # already reported; per-event cost stays a few attribute reads
        with self._locked():
            self._last_input = self._clock()
            if self._reading is not None and not self._reading.session:
                return  # no user session: input on a display we do not own means nothing
            self._publish(Verdict(False, self.active_reason))

    def _publish(self, verdict: Verdict) -> None:
        if verdict != self.verdict:
            self.verdict = verdict
            self._report(verdict.available, verdict.reason)

    def _read(self) -> IdleReading:
        try:
            reading = self.source.read()
        except Exception as exc:  # noqa: BLE001 - a desktop restarting, a display gone
            if not self._read_failed:
                log.warning("cannot read the idle time from %s (%s): counting the user as present",
                            self.source.name, exc)
            self._read_failed = True
            return IdleReading(0.0)
        if self._read_failed:
            log.info("reading the idle time from %s again", self.source.name)
            self._read_failed = False
        return reading

    def next_poll_s(self) -> float:
        verdict, reading = self.verdict, self._reading
        if verdict is not None and not verdict.available and reading is not None:
            until_idle = self.policy.seconds_until_idle(reading)
            if until_idle > 0:
                return min(self.poll_s, until_idle + 0.01)
        if verdict is not None and verdict.available and not self.instant and self._has_tasks():
            return self.fast_poll_s
        return self.poll_s

    # ----- the thread --------------------------------------------------------------------

    def start(self) -> "IdleWatcher":
        self.instant = self.source.notify_input(self.user_input)
        self.check()
        if self._reading is not None and not self._reading.session:
            log.info("idle detection: nobody is logged in at this PC, so it is idle: lending it now")
        else:
            log.info("idle detection: %s%s; lending after %s without input", self.source.name,
                     ", instant notice of input" if self.instant else "",
                     describe_seconds(self.policy.settings.idle_after_s))
        self._start_polling()
        self._watchdog = threading.Thread(target=self._watch_the_polls, name="idle-watchdog", daemon=True)
        self._watchdog.start()
        return self

    def _start_polling(self) -> None:
        self._generation += 1
        self._polled_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(self._generation,), name="idle-watcher",
                                        daemon=True)
        self._thread.start()

    def _run(self, generation: int) -> None:
        while not self._stop.wait(self.next_poll_s()) and generation == self._generation:
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad reading
                log.exception("idle check failed")
            if generation == self._generation:
                self._polled_at = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds since the last poll ended, beyond the poll interval (0: on time)."""
        return max(0.0, time.monotonic() - self._polled_at - self.poll_s)

    def _watch_the_polls(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self.stalled_for() > (STALL_POLLS - 1) * self.poll_s:
                self.recover()

    def recover(self) -> None:
        """Log where the poll thread is stuck and start a new one (the watchdog's remedy)."""
        stuck = self._thread
        frame = sys._current_frames().get(stuck.ident) if stuck is not None and stuck.ident else None
        where = "".join(traceback.format_stack(frame)[-6:]) if frame is not None else "(thread gone)\n"
        log.warning("the idle watcher has not re-evaluated for %.1f s (more than %d polls); starting it again. "
                    "It was stuck at:\n%s", time.monotonic() - self._polled_at, STALL_POLLS, where.rstrip())
        self.restarts += 1
        self._start_polling()

    def stop(self) -> None:
        """Stop watching; returns at once (see trayapp.idle.userinput on listeners)."""
        self._stop.set()
        self.source.close()
        for thread in (self._thread, self._watchdog):
            if thread is not None and thread is not threading.current_thread():
                thread.join(5)


class _Held:
    """An acquired lock as a context manager, released on exit."""

    def __init__(self, lock: threading.Lock):
        self._lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        self._lock.release()


def watch_idle(config, *, report: Callable[[bool, str | None], None], has_tasks: Callable[[], bool],
               task_cpu_seconds: Callable[[], float | None], idle_after_s: float | None = None,
               environ=None) -> IdleWatcher | None:
    """Wire idle detection to a slave as the settings say: ``report`` gets the
    verdicts (the slave's availability), ``task_cpu_seconds`` is the tasks' own
    CPU time (not the user's load). The running watcher, or None when
    ``idle_detection = "off"`` (the slave then works all the time).
    ``idle_after_s`` overrides the setting (``--idle-after``)."""
    from trayapp.idle.sources import open_idle_source
    from trayapp.idle.policy import PolicySettings

    if config.idle_detection == "off":
        log.info("idle detection is off: lending this PC all the time")
        return None
    settings = PolicySettings(idle_after_s=config.idle_after_s if idle_after_s is None else idle_after_s,
                              max_foreign_cpu=config.max_foreign_cpu, on_battery=config.on_battery)
    watcher = IdleWatcher(open_idle_source(environ), IdlePolicy(settings), report,
                          foreign_cpu=ForeignCpu(task_cpu_seconds), has_tasks=has_tasks)
    return watcher.start()
