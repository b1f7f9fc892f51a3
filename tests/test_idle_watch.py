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
