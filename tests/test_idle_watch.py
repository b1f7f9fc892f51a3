"""The idle watcher between a source and the engine, with a fake clock and source."""

from __future__ import annotations

import math
import threading
import time

from trayapp.idle.reading import IdleReading
from trayapp.idle.policy import IdlePolicy, PolicySettings
from trayapp.idle.watch import IdleWatcher


class FakeSource:
    name = "fake"

    def __init__(self, idle_s: float = 0.0, session: bool = True, instant: bool = True):
        self.idle_s, self.session, self.instant = idle_s, session, instant
        self.callback = None
        self.closed = False

    def read(self) -> IdleReading:
        if isinstance(self.idle_s, Exception):
            raise self.idle_s
        return IdleReading(self.idle_s, session=self.session)

    def notify_input(self, callback) -> bool:
        self.callback = callback
        return self.instant

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watcher(source, clock, idle_after=60.0, **kw):
    reports = []
    w = IdleWatcher(source, IdlePolicy(PolicySettings(idle_after_s=idle_after)),
                    lambda available, reason: reports.append((available, reason)), battery=lambda: None,
                    clock=clock, **kw)
    w.instant = source.notify_input(w.user_input)
    return w, reports


def test_reports_only_when_the_verdict_changes():
    source, clock = FakeSource(idle_s=10), Clock()
    w, reports = watcher(source, clock)
    w.check()
    w.check()
    assert reports == [(False, "waiting for 1 min without keyboard or mouse input")]
    source.idle_s = 61
    w.check()
    w.check()
    assert reports[1:] == [(True, None)]


def test_input_is_reported_at_once_on_the_listeners_thread_and_only_once():
    source, clock = FakeSource(idle_s=100), Clock()
    w, reports = watcher(source, clock)
    w.check()
    assert reports == [(True, None)]
    source.callback()
    assert reports[-1][0] is False
    for _ in range(1000):  # a mouse move is an event each: nothing more to say
        source.callback()
    assert len(reports) == 2


def test_a_reading_taken_before_a_key_press_cannot_undo_its_report():
    source, clock = FakeSource(idle_s=100), Clock()
    w, reports = watcher(source, clock)
    w.check()
    clock.now += 0.5
    source.callback()  # the key press
    w.check()  # the source still says 100 s (read before the press reached it)
    assert reports == [(True, None), (False, "waiting for 1 min without keyboard or mouse input")]
    clock.now += 60
    source.idle_s = 60.2
    w.check()
    assert reports[-1] == (True, None)


def test_input_without_a_user_session_means_nothing():
    source, clock = FakeSource(idle_s=math.inf, session=False), Clock()
    w, reports = watcher(source, clock)
    w.check()
    source.callback()
    assert reports == [(True, None)]


def test_an_unreadable_source_counts_the_user_as_present():
    source, clock = FakeSource(idle_s=100), Clock()
    w, reports = watcher(source, clock)
    w.check()
    source.idle_s = OSError("display gone")
    w.check()
    assert reports[-1][0] is False


def test_poll_pace():
    source, clock = FakeSource(idle_s=59.5), Clock()
    w, _ = watcher(source, clock, poll_s=1.0, fast_poll_s=0.1, has_tasks=lambda: True)
    w.check()
    assert abs(w.next_poll_s() - 0.51) < 1e-9  # wake right when the idle time is reached
    source.idle_s = 100
    w.check()
    assert w.next_poll_s() == 1.0  # instant notice: no need to poll fast while tasks run
    polled, _ = watcher(FakeSource(idle_s=100, instant=False), clock, poll_s=1.0, fast_poll_s=0.1,
                        has_tasks=lambda: True)
    polled.check()
    assert polled.next_poll_s() == 0.1


def test_the_thread_stops_at_once():
    source = FakeSource(idle_s=100)
    reports = []
    w = IdleWatcher(source, IdlePolicy(PolicySettings(idle_after_s=60)), lambda *r: reports.append(r),
                    battery=lambda: None, poll_s=30.0).start()
    assert reports == [(True, None)] and w.instant
    started = time.monotonic()
    w.stop()
    assert time.monotonic() - started < 1.0 and source.closed
    assert not any(t.name == "idle-watcher" for t in threading.enumerate())


class HangingSource(FakeSource):
    """A source whose read hangs once (a display that never answers), until released."""

    def __init__(self, idle_s: float):
        super().__init__(idle_s=idle_s)
        self.hang_on_read = 2  # the first read is start()'s; the poll thread's first read hangs
        self.reads = 0
        self.release = threading.Event()

    def read(self) -> IdleReading:
        self.reads += 1
        if self.reads == self.hang_on_read:
            self.release.wait(30)
        return super().read()


def test_a_watcher_stuck_in_a_poll_says_where_and_polls_again(caplog):
    source = HangingSource(idle_s=0.0)  # the user is at the PC
    reports = []
    w = IdleWatcher(source, IdlePolicy(PolicySettings(idle_after_s=60)), lambda *r: reports.append(r),
                    battery=lambda: None, poll_s=0.1).start()
    try:
        assert reports == [(False, "waiting for 1 min without keyboard or mouse input")]
        deadline = time.monotonic() + 10
        while w.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert w.restarts >= 1, "the watchdog must notice a poll that never ends"
        assert "has not re-evaluated" in caplog.text and "in read" in caplog.text, caplog.text
        source.idle_s = 100.0  # the user left: the new poll thread must see it
        deadline = time.monotonic() + 10
        while reports[-1] != (True, None) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reports[-1] == (True, None)
        assert w.restarts == 1, "one stuck poll, one restart"
    finally:
        source.release.set()
        w.stop()


def test_a_listener_stuck_while_it_reports_does_not_stop_the_polls(caplog):
    source = FakeSource(idle_s=100.0)
    reports, stuck = [], threading.Event()

    def report(available, reason):
        reports.append((available, reason))
        if threading.current_thread().name == "listener":
            stuck.wait(30)  # the slave's report never returns to the listener's thread

    w = IdleWatcher(source, IdlePolicy(PolicySettings(idle_after_s=1)), report, battery=lambda: None,
                    poll_s=0.1).start()
    try:
        assert reports == [(True, None)]
        listener = threading.Thread(target=source.callback, name="listener", daemon=True)
        listener.start()
        deadline = time.monotonic() + 5
        while len(reports) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reports[-1][0] is False, "a key press reports at once"
        # The listener holds the watcher's lock for good; the user has left since.
        deadline = time.monotonic() + 10
        while reports[-1] != (True, None) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reports[-1] == (True, None), "the polls must go on and lend again"
        assert "lock was held" in caplog.text
    finally:
        stuck.set()
        w.stop()
