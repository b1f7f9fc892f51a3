"""Idle sources fed raw values: Windows ticks, macOS HIDIdleTime, D-Bus replies,
logind session files, CPU counters. Only the operating system's own calls are
replaced (Win32, IOKit, the D-Bus call, /proc counters); the arithmetic and the
decisions around them are the real code. The X11 source runs against a real
Xvfb in test_idle_x11.py."""

from __future__ import annotations

import math
from collections import namedtuple
from types import SimpleNamespace

import pytest

from trayapp.idle import dbus as idledbus
from trayapp.idle.sources import IdleReading, NoSessionSource, local_sessions, open_idle_source
from trayapp.idle.dbus import FREEDESKTOP, MUTTER, DBusUnavailable, DesktopBusSource, logind_idle_seconds
from trayapp.idle.macos import MacSource, hid_idle_seconds
from trayapp.idle.watch import ForeignCpu, on_battery
from trayapp.idle.windows import WindowsSource, idle_ms_between


# ----- Windows: GetLastInputInfo / GetTickCount -----------------------------------------------

class FakeWin32:
    def __init__(self, last: int, now: int, desktop_opens: bool = True):
        self.last, self.now, self.desktop_opens = last, now, desktop_opens

    def last_input_tick(self) -> int:
        return self.last

    def tick_count(self) -> int:
        return self.now

    def input_desktop_opens(self) -> bool:
        return self.desktop_opens


def test_windows_idle_time_is_the_tick_difference():
    assert WindowsSource(FakeWin32(last=1_000, now=61_000)).read() == IdleReading(60.0, locked=False)


def test_windows_tick_wrap_around_after_49_days_is_handled():
    # Last input 2 s before GetTickCount wrapped to 0; now 3 s after the wrap.
    last = 2**32 - 2_000
    assert idle_ms_between(last, 3_000) == 5_000
    assert WindowsSource(FakeWin32(last=last, now=3_000)).read().idle_s == 5.0
    assert idle_ms_between(2**32 - 1, 2**32 - 1) == 0


def test_windows_locked_when_the_input_desktop_cannot_be_opened():
    assert WindowsSource(FakeWin32(0, 10, desktop_opens=False)).read().locked


# ----- macOS: HIDIdleTime ---------------------------------------------------------------------

class FakeIOKit:
    def __init__(self, raw, locked=False):
        self.raw, self.locked = raw, locked

    def hid_idle_raw(self):
        return self.raw

    def screen_locked(self) -> bool:
        return self.locked


def test_macos_hid_idle_time_is_in_nanoseconds_as_number_or_data():
    assert hid_idle_seconds(1_500_000_000) == 1.5
    assert hid_idle_seconds((42 * 10**9).to_bytes(8, "little")) == 42.0
    assert MacSource(FakeIOKit(7 * 10**9, locked=True)).read() == IdleReading(7.0, locked=True)


# ----- Wayland: the desktop's idle monitor on D-Bus ---------------------------------------------

def bus(replies: dict):
    """A fake D-Bus call answering (service, method) from a table; absent = not there."""
    calls = []

    def call(bus_name, service, path, interface, method):
        calls.append((bus_name, service, method))
        if (service, method) not in replies:
            raise DBusUnavailable(f"{service} {method}")
        return replies[(service, method)]
    call.calls = calls
    return call


def test_gnome_mutter_idle_monitor_is_preferred_and_read_in_milliseconds():
    call = bus({(MUTTER[0], "GetIdletime"): (12_345,), ("org.gnome.ScreenSaver", "GetActive"): (False,),
                (FREEDESKTOP[0], "GetSessionIdleTime"): (1,)})
    source = DesktopBusSource.connect(call, locked_hint=lambda: None)
    assert source.name == "GNOME idle monitor"
    assert source.read() == IdleReading(12.345, locked=False)


def test_kde_freedesktop_screensaver_when_there_is_no_mutter():
    call = bus({(FREEDESKTOP[0], "GetSessionIdleTime"): (90_000,), (FREEDESKTOP[0], "GetActive"): (True,)})
    source = DesktopBusSource.connect(call, locked_hint=lambda: None)
    assert source.read() == IdleReading(90.0, locked=True)


def test_logind_locked_hint_counts_as_locked():
    call = bus({(MUTTER[0], "GetIdletime"): (0,)})
    assert DesktopBusSource.connect(call, locked_hint=lambda: True).read().locked


def test_no_idle_monitor_on_the_bus_means_no_desktop_source():
    assert DesktopBusSource.connect(bus({}), locked_hint=lambda: None) is None


def test_logind_idle_hint_of_the_least_idle_local_session():
    sessions = [("1", 1000, "alice", "seat0", "/s/1"), ("2", 1001, "bob", "", "/s/2"),
                ("3", 1002, "carol", "seat0", "/s/3")]
    props = {"/s/1": {"Remote": False, "Class": "user", "LockedHint": False, "IdleHint": True,
                      "IdleSinceHintMonotonic": 40_000_000},
             "/s/2": {"Remote": True, "Class": "user"},  # over SSH: not at the PC
             "/s/3": {"Remote": False, "Class": "greeter"}}  # the login screen: nobody

    def call(*args):
        return (sessions,)

    def prop(bus_name, service, path, interface, name):
        return props[path][name]

    assert logind_idle_seconds(call, prop, lambda: 100_000_000) == 60.0
    props["/s/1"]["IdleHint"] = False
    assert logind_idle_seconds(call, prop, lambda: 100_000_000) == 0.0
    props["/s/1"]["LockedHint"] = True
    assert logind_idle_seconds(call, prop, lambda: 100_000_000) == math.inf


def test_logind_unreachable_says_nothing():
    def call(*args):
        raise DBusUnavailable("no system bus")
    assert logind_idle_seconds(call, call) is None
    assert idledbus.logind_locked(prop=call) is None


# ----- nobody logged in --------------------------------------------------------------------------

def test_headless_with_nobody_logged_in_is_idle():
    reading = NoSessionSource(sessions=lambda: []).read()
    assert reading.session is False and reading.idle_s == math.inf


def test_headless_with_someone_at_the_console_asks_logind_else_counts_them_present():
    assert NoSessionSource(sessions=lambda: ["alice"], logind_idle_s=lambda: 42.0).read() == IdleReading(42.0)
    assert NoSessionSource(sessions=lambda: ["alice"], logind_idle_s=lambda: None).read() == IdleReading(0.0)


def test_local_sessions_from_logind_files_skip_remote_and_greeter(tmp_path):
    (tmp_path / "1").write_text("USER=alice\nREMOTE=0\nCLASS=user\nSTATE=active\n")
    (tmp_path / "2").write_text("USER=bob\nREMOTE=1\nCLASS=user\nSTATE=active\n")
    (tmp_path / "3").write_text("USER=gdm\nREMOTE=0\nCLASS=greeter\nSTATE=online\n")
    (tmp_path / "4.ref").write_text("")
    assert local_sessions(tmp_path) == ["alice"]


def test_local_sessions_from_utmp_where_there_is_no_logind(tmp_path):
    user = namedtuple("user", "name terminal host started pid")
    users = [user("alice", "tty7", ":0", 0, 1), user("bob", "pts/1", "10.0.0.5", 0, 2), user("root", "tty1", "", 0, 3)]
    assert local_sessions(tmp_path / "absent", users=lambda: users) == ["alice", "root"]


def test_a_service_without_display_gets_the_headless_source():
    source = open_idle_source(environ={}, platform="linux")
    assert isinstance(source, NoSessionSource)


@pytest.mark.parametrize("monitor", [None, "desktop source"])
def test_under_wayland_the_desktop_answers_not_xwayland(monkeypatch, monitor):
    # XWayland's $DISPLAY sees only input to X programs: it must not be used.
    monkeypatch.setattr(DesktopBusSource, "connect", classmethod(lambda cls, *a, **kw: monitor))
    source = open_idle_source(environ={"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, platform="linux")
    if monitor is None:
        assert isinstance(source, NoSessionSource) and source.read().session  # someone is there
    else:
        assert source == monitor


def test_this_test_machine_counts_as_headless():
    # The pool tests' slave daemons rely on it: no DISPLAY and nobody logged in.
    if local_sessions():
        pytest.skip("someone is logged in at this PC")
    assert open_idle_source(environ={}, platform="linux").read().session is False


# ----- CPU load of other programs, battery ------------------------------------------------------

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_foreign_cpu_share_excludes_the_tasks_own_time():
    # Two cores over one second: 2 s of CPU time in all.
    samples = iter([CpuTimes(10, 0, 0, 100, 0, 0, 0, 0, 0, 0),
                    CpuTimes(11.5, 0, 0.1, 100.4, 0, 0, 0, 0, 0, 0)])
    tasks = iter([5.0, 6.0])
    meter = ForeignCpu(lambda: next(tasks), lambda: next(samples))
    assert meter.sample() is None
    # 1.6 s busy, 1.0 s of it the tasks': others used 0.6 s of 2.0 s.
    assert meter.sample() == pytest.approx(0.3)


def test_battery_state():
    assert on_battery(lambda: None) is None
    assert on_battery(lambda: SimpleNamespace(power_plugged=False)) is True
    assert on_battery(lambda: SimpleNamespace(power_plugged=True)) is False
