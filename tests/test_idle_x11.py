"""The X11 idle source and the slave daemon against a real Xvfb, with real
input from xdotool (XTest): nothing between them is faked."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import wait_until
from conftest import needs_xvfb
from support.xvfb import Xvfb

from trayapp.idle.sources import open_idle_source

pytestmark = [pytest.mark.desktop, needs_xvfb]


@pytest.fixture(scope="module")
def xvfb():
    server = Xvfb().start()
    yield server
    # Listeners closed by the tests end only at the next input event (pynput's
    # shutdown hang, see trayapp.idle.userinput); give them one, so they end
    # cleanly instead of failing when the display goes away under them.
    server.key("shift")
    server.move_mouse(1, 1)
    time.sleep(0.2)
    server.stop()


@pytest.fixture
def source(xvfb):
    from trayapp.idle.x11 import X11Source

    src = X11Source(xvfb.display, locked_hint=lambda: None)
    yield src
    src.close()


def test_the_display_is_chosen_when_there_is_one(xvfb):
    src = open_idle_source(environ={"DISPLAY": xvfb.display}, platform="linux")
    try:
        assert src.name == f"X11 screensaver extension on {xvfb.display}"
    finally:
        src.close()


def test_idle_time_grows_and_input_resets_it(xvfb, source):
    xvfb.key()
    first = source.read().idle_s
    time.sleep(0.6)
    later = source.read()
    assert later.idle_s >= first + 0.5 and later.session and not later.locked
    xvfb.move_mouse(100, 100)
    assert source.read().idle_s < 0.5
    time.sleep(0.3)
    xvfb.key("a")
    assert source.read().idle_s < 0.3


def test_listeners_call_back_the_instant_input_arrives(xvfb, source):
    events = []
    got = threading.Event()

    def on_input():
        events.append(time.monotonic())
        got.set()

    assert source.notify_input(on_input)
    for act in (lambda: xvfb.key("shift"), lambda: xvfb.move_mouse(10, 20 + len(events))):
        got.clear()
        before = len(events)
        started = act()
        assert got.wait(5), "no callback for real input"
        assert events[before] - started < 0.5


def test_closing_does_not_wait_for_the_next_key_press(xvfb):
    from trayapp.idle.x11 import X11Source

    src = X11Source(xvfb.display, locked_hint=lambda: None)
    assert src.notify_input(lambda: None)
    started = time.monotonic()
    src.close()  # no input follows: pynput's stop()+join() would block here
    assert time.monotonic() - started < 0.5


def _daemon(home, env, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sparecycles", "slave", "--slots", "1", *args],
                            env={**os.environ, "SPARECYCLES_HOME": str(home), **env},
                            stdout=subprocess.DEVNULL, stderr=open(home.parent / f"{home.name}.log", "wb"))


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_slave_daemon_waits_for_idle_then_lends_and_stops_at_a_key_press(xvfb, tmp_path):
    home = tmp_path / "desk"
    home.mkdir()
    (home / "config.toml").write_text("max_foreign_cpu = 1.0\n")  # other tests load this shared CPU
    log = tmp_path / "desk.log"
    xvfb.key()
    proc = _daemon(home, xvfb.env, "--idle-after", "1.5")
    try:
        wait_until(lambda: "lending after 1.5 s without input" in log.read_text(), what="the watcher to start")
        wait_until(lambda: "state: ready" in log.read_text(), timeout=20, what="the slave to lend the PC")
        xvfb.key("space")
        wait_until(lambda: "state: waiting (waiting for 1.5 s without keyboard or mouse input)" in
                   log.read_text().split("state: ready", 1)[1], timeout=10, what="the key press to count")
        stopped = time.monotonic()
    finally:
        _stop(proc)
    assert time.monotonic() - stopped < 5, "stopping must not wait for input"


def test_slave_daemon_without_display_and_nobody_logged_in_lends_at_once(tmp_path):
    home = tmp_path / "service"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    log = tmp_path / "service.log"
    proc = subprocess.Popen([sys.executable, "-m", "sparecycles", "slave", "--slots", "1"],
                            env={**env, "SPARECYCLES_HOME": str(home)}, stdout=subprocess.DEVNULL,
                            stderr=open(log, "wb"))
    try:
        wait_until(lambda: "state: ready" in log.read_text(), timeout=20, what="the slave to be ready")
        if "nobody is logged in" not in log.read_text():
            pytest.skip("someone is logged in at this PC")
    finally:
        _stop(proc)
