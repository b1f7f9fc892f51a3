"""``sparecycles pause|donate|resume [--for DURATION]`` against a real slave
daemon: the same functions the tray menu calls, through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import wait_until
from support.daemons import SlaveDaemon


def verb(home, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run([sys.executable, "-m", "sparecycles", *args], capture_output=True, text=True, timeout=60,
                          env={**env, "SPARECYCLES_HOME": str(home)})


@pytest.fixture
def slave(tmp_path):
    home = tmp_path / "desk"
    daemon = SlaveDaemon(home, slots=1, env={"DISPLAY": "", "WAYLAND_DISPLAY": ""}).start()
    yield daemon
    daemon.stop()


def as_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_pause_for_a_while_then_it_lends_again_by_itself(slave):
    before = time.time()
    paused = as_json(verb(slave.home, "pause", "--for", "2s", "--json"))
    assert paused["state"] == "paused" and before + 1.5 < paused["paused_until"] < time.time() + 2.5
    text = verb(slave.home, "pause", "--for", "1h").stdout
    assert text.startswith("slave: paused (paused until ") and "0 of 1 slots busy" in text
    as_json(verb(slave.home, "pause", "--for", "2s", "--json"))  # a new pause replaces the last
    wait_until(lambda: "state: ready" in slave.log().rsplit("state: paused", 1)[-1], timeout=10,
               what="the pause to end by itself")
    assert as_json(verb(slave.home, "resume", "--json"))["paused"] is False


@pytest.mark.slow
def test_donate_for_a_while_ends_by_itself_and_resume_ends_it_at_once(slave):
    donating = as_json(verb(slave.home, "donate", "--for", "30m", "--json"))
    assert donating["donating"] and donating["donating_until"] > time.time() + 1700
    until = time.strftime("%H:%M", time.localtime(donating["donating_until"]))
    assert f"(lent by its user until {until})" in verb(slave.home, "donate", "--for", "30m").stdout
    resumed = as_json(verb(slave.home, "resume", "--json"))
    assert not resumed["donating"] and resumed["state"] == "ready"
    # Long enough that a CLI start on a busy machine still sees it running; short enough to wait out.
    short = as_json(verb(slave.home, "donate", "--for", "8s", "--json"))
    assert short["donating"]
    assert "(lent by its user until" in verb(slave.home, "status").stdout  # status only reads

    def ended() -> bool:
        out = verb(slave.home, "status").stdout
        return "slave: ready" in out and "lent by its user" not in out

    wait_until(ended, timeout=30, what="the donation to end by itself")


@pytest.mark.parametrize("args, message", [
    (("pause", "--for", "banana"), "'banana' is not a duration"),
    (("donate", "--for", "0"), "must be more than zero"),
    (("pause", "--for=-5m"), "'-5m' is not a"),
])
def test_bad_durations_are_refused_with_the_forms_that_work(slave, args, message):
    out = verb(slave.home, *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_verbs_without_a_slave_daemon_say_how_to_start_one(tmp_path):
    out = verb(tmp_path / "nobody", "pause")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "sparecycles slave" in out.stderr, out.stderr
