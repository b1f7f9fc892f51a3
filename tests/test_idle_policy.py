"""The idle policy with a fake clock and fed readings: exact, instant."""

from __future__ import annotations

import math

import pytest

from trayapp.idle.reading import IdleReading
from trayapp.idle.policy import CpuLoad, IdlePolicy, PolicySettings

NOBODY = IdleReading(math.inf, session=False)


def policy(**kw) -> IdlePolicy:
    return IdlePolicy(PolicySettings(**kw))


def test_nobody_logged_in_is_idle_at_once_whatever_the_idle_time_setting():
    p = policy(idle_after_s=300)
    assert p.decide(0.0, NOBODY).available
    assert p.seconds_until_idle(NOBODY) == 0


def test_the_user_counts_as_away_only_after_the_full_idle_time():
    p = policy(idle_after_s=300)
    verdict = p.decide(0.0, IdleReading(299.9))
    assert not verdict.available and verdict.reason == "waiting for 5 min without keyboard or mouse input"
    assert p.seconds_until_idle(IdleReading(299.9)) == pytest.approx(0.1)
    assert p.decide(0.1, IdleReading(300.0)).available
    # Input again: present at once; the whole idle time must pass again.
    assert not p.decide(0.2, IdleReading(0.0)).available
    assert p.seconds_until_idle(IdleReading(0.0)) == 300


def test_a_locked_screen_counts_as_idle_even_right_after_input():
    assert policy(idle_after_s=300).decide(0.0, IdleReading(2.0, locked=True)).available


@pytest.mark.parametrize("setting, available", [("pause", False), ("work", True)])
def test_on_battery_the_setting_decides(setting, available):
    p = policy(idle_after_s=0, on_battery=setting)
    verdict = p.decide(0.0, IdleReading(10.0), on_battery=True)
    assert verdict.available is available
    if not available:
        assert verdict.reason == "on battery"
    assert p.decide(1.0, IdleReading(10.0), on_battery=False).available
    assert p.decide(2.0, IdleReading(10.0), on_battery=None).available  # a desktop has no battery


def test_battery_pauses_even_a_headless_slave():
    assert not policy(on_battery="pause").decide(0.0, NOBODY, on_battery=True).available


def test_a_brief_cpu_spike_does_not_stop_the_slave():
    p = policy(idle_after_s=0, max_foreign_cpu=0.5, cpu_window_s=10)
    idle = IdleReading(100.0)
    for t in range(0, 30):  # quiet
        assert p.decide(float(t), idle, foreign_cpu=0.05).available
    for t in range(30, 33):  # three seconds of full load from some other program
        assert p.decide(float(t), idle, foreign_cpu=1.0).available
    assert p.cpu.average < 0.5


def test_sustained_load_stops_the_slave_and_it_needs_a_clearly_lower_load_to_start_again():
    p = policy(idle_after_s=0, max_foreign_cpu=0.5, cpu_window_s=10)
    idle = IdleReading(100.0)
    t = 0.0
    while p.decide(t, idle, foreign_cpu=0.9).available:
        t += 1.0
        assert t < 30, "90 % load must stop the slave within a few time constants"
    assert 5 <= t <= 15
    verdict = p.decide(t, idle, foreign_cpu=0.9)
    assert not verdict.available and "other programs use" in verdict.reason
    # Hovering just under the limit does not start it again (hysteresis)...
    for _ in range(60):
        t += 1.0
        assert not p.decide(t, idle, foreign_cpu=0.45).available
    # ...clearly under it does.
    while not p.decide(t, idle, foreign_cpu=0.1).available:
        t += 1.0
    assert p.cpu.average < 0.5 * 0.75


def test_the_cpu_average_is_kept_warm_while_the_user_is_active():
    p = policy(idle_after_s=60, max_foreign_cpu=0.5, cpu_window_s=10)
    for t in range(0, 40):  # the user runs a long computation, then leaves it running
        p.decide(float(t), IdleReading(float(t)), foreign_cpu=1.0)
    verdict = p.decide(60.0, IdleReading(60.0), foreign_cpu=1.0)
    assert not verdict.available and "CPU" in verdict.reason


def test_cpu_load_uses_elapsed_time_not_sample_count():
    fast, slow = CpuLoad(0.5, 10, 0.75), CpuLoad(0.5, 10, 0.75)
    fast.update(0.0, 0.0)
    slow.update(0.0, 0.0)
    for i in range(1, 11):
        fast.update(i * 0.5, 1.0)
    slow.update(5.0, 1.0)
    assert fast.average == pytest.approx(slow.average)
