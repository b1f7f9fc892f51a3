"""Fair share as a pure function of usage, demand, weights, clock and randomness."""

from __future__ import annotations

import random

import pytest

from trayapp.slave.fairshare import FairShare

HOUR = 3600.0


def test_usage_decays_with_the_half_life():
    fs = FairShare(half_life_s=HOUR)
    fs.charge("a", 100.0, now=0.0)
    assert fs.usage("a", 0.0) == pytest.approx(100.0)
    assert fs.usage("a", HOUR) == pytest.approx(50.0)
    assert fs.usage("a", 3 * HOUR) == pytest.approx(12.5)
    fs.charge("a", 10.0, now=HOUR)
    assert fs.usage("a", HOUR) == pytest.approx(60.0)


def test_least_recent_usage_wins():
    fs = FairShare()
    fs.charge("alice", 500.0, now=0.0)
    fs.charge("bob", 20.0, now=0.0)
    assert fs.pick({"alice": 10_000, "bob": 20}, {}, now=10.0, rng=random.Random(1)) == "bob"


def test_queue_length_does_not_matter():
    fs = FairShare()
    fs.charge("alice", 5.0, now=0.0)
    fs.charge("bob", 5.0, now=0.0)
    picks = [fs.pick({"alice": 10_000, "bob": 1}, {}, now=1.0, rng=random.Random(seed)) for seed in range(200)]
    assert 60 < picks.count("bob") < 140  # a tie: random, not by queue length


def test_ties_are_broken_at_random_but_reproducibly():
    fs = FairShare()
    wanting = {"a": 1, "b": 1, "c": 1}
    first = [fs.pick(wanting, {}, 0.0, random.Random(7)) for _ in range(5)]
    assert len(set(first)) == 1  # same seed, same choice
    seen = {fs.pick(wanting, {}, 0.0, random.Random(seed)) for seed in range(50)}
    assert seen == {"a", "b", "c"}


def test_nobody_wanting_means_no_grant():
    fs = FairShare()
    assert fs.pick({}, {}, 0.0, random.Random(0)) is None
    assert fs.pick({"a": 0, "b": 0}, {}, 0.0, random.Random(0)) is None


def test_a_master_that_disappears_is_never_chosen_and_its_usage_fades():
    fs = FairShare(half_life_s=HOUR)
    fs.charge("gone", 1.0, now=0.0)
    fs.charge("here", 1000.0, now=0.0)
    # "gone" has the least usage, but it no longer asks for work.
    assert fs.pick({"here": 5}, {}, 1.0, random.Random(0)) == "here"
    assert fs.usage("gone", 10 * HOUR) < 0.001


def test_a_master_back_after_a_day_is_not_punished_for_yesterday():
    fs = FairShare(half_life_s=HOUR)
    fs.charge("yesterday", 50_000.0, now=0.0)  # a huge sweep a day ago
    day = 24 * HOUR
    fs.charge("today", 30.0, now=day - 60)  # a little work just now
    assert fs.usage("yesterday", day) < 0.01
    assert fs.pick({"yesterday": 100, "today": 100}, {}, day, random.Random(0)) == "yesterday"


def test_weights_scale_the_share():
    fs = FairShare(weights={"lab-head": 2.0})
    fs.charge("lab-head", 150.0, now=0.0)
    fs.charge("student", 100.0, now=0.0)
    # 150 / 2 = 75 < 100: the double-weight master still comes first.
    assert fs.pick({"lab-head": 5, "student": 5}, {}, 0.0, random.Random(0)) == "lab-head"


def test_caps_limit_slots_per_master():
    fs = FairShare(caps={"greedy": 1})
    assert fs.pick({"greedy": 50}, {"greedy": 1}, 0.0, random.Random(0)) is None
    assert fs.pick({"greedy": 50, "other": 1}, {"greedy": 1}, 0.0, random.Random(0)) == "other"


def simulate(queues: dict[str, int], arrivals: dict[str, float], slots: int, task_s: float, weights=None,
             seed: int = 0) -> dict[str, list[float]]:
    """A slave granting freed slots by the policy, in simulated time: returns each
    master's grant times. Usage is charged for running slots as time passes."""
    fs = FairShare(half_life_s=HOUR, weights=weights or {})
    rng = random.Random(seed)
    now, running, grants = 0.0, [], {m: [] for m in queues}
    left = dict(queues)
    while any(left.values()) or running:
        present = {m: n for m, n in left.items() if arrivals[m] <= now}
        holding = {}
        for _, m in running:
            holding[m] = holding.get(m, 0) + 1
        while len(running) < slots and (chosen := fs.pick(present, holding, now, rng)):
            running.append((now + task_s, chosen))
            grants[chosen].append(now)
            left[chosen] -= 1
            present[chosen] -= 1
            holding[chosen] = holding.get(chosen, 0) + 1
        events = [end for end, _ in running] + [t for t in arrivals.values() if t > now]
        step = min(events) - now
        for _, m in running:
            fs.charge(m, step, now + step)
        now += step
        running = [(end, m) for end, m in running if end > now + 1e-9]
    return grants


def test_simulated_newcomer_gets_half_of_the_freed_slots():
    grants = simulate({"alice": 10_000, "bob": 40}, {"alice": 0.0, "bob": 0.6}, slots=4, task_s=0.5)
    start, end = grants["bob"][0], grants["bob"][-1]
    alice_in_window = sum(1 for t in grants["alice"] if start <= t <= end)
    share = len(grants["bob"]) / (len(grants["bob"]) + alice_in_window)
    assert 0.4 <= share <= 0.6


def test_simulated_weights_give_twice_the_slots():
    grants = simulate({"head": 400, "student": 400}, {"head": 0.0, "student": 0.0}, slots=3, task_s=1.0,
                      weights={"head": 2.0})
    horizon = 100.0
    head = sum(1 for t in grants["head"] if t < horizon)
    student = sum(1 for t in grants["student"] if t < horizon)
    assert head / student == pytest.approx(2.0, rel=0.1)


def test_slots_held_come_before_usage():
    # Alice has used the slave for an hour; Bob just arrived. By usage alone Bob
    # would take every freed slot; holding fewer slots, Alice gets this one.
    fs = FairShare()
    fs.charge("alice", 4 * HOUR, now=0.0)
    assert fs.pick({"alice": 100, "bob": 100}, {"alice": 1, "bob": 3}, now=1.0, rng=random.Random(0)) == "alice"
    assert fs.pick({"alice": 100, "bob": 100}, {"alice": 2, "bob": 2}, now=1.0, rng=random.Random(0)) == "bob"


def test_simulated_newcomer_after_a_long_head_start_still_gets_half():
    grants = simulate({"alice": 10_000, "bob": 40}, {"alice": 0.0, "bob": 600.0}, slots=4, task_s=0.5)
    start, end = grants["bob"][0], grants["bob"][-1]
    alice_in_window = sum(1 for t in grants["alice"] if start <= t <= end)
    share = len(grants["bob"]) / (len(grants["bob"]) + alice_in_window)
    assert 0.4 <= share <= 0.6


def test_among_masters_holding_equally_few_the_longest_unserved_goes_first():
    # Alice has used far more than Bob, yet once Bob was served the next tie goes
    # to Alice: usage alone would hand Bob every tied slot until the usages met.
    fs = FairShare()
    fs.charge("alice", 4 * HOUR, now=0.0)
    rng = random.Random(1)
    order = []
    for step in range(6):
        now = 10.0 + step
        chosen = fs.pick({"alice": 5, "bob": 5}, {"alice": 0, "bob": 0}, now, rng)
        fs.note_grant(chosen, now)
        order.append(chosen)
    assert order == ["bob", "alice", "bob", "alice", "bob", "alice"]
