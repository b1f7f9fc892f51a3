"""What a master tells a host of its queue (``demand``): not every claim, but
never a figure the host would act on wrongly."""

from __future__ import annotations

import pytest

from trayapp.master.driver import demand_worth_saying


def said_while_draining(queued: int, slots: object) -> list[tuple[int, int]]:
    """(true demand, what the host believes) after each claim of one task."""
    sent, seen = None, []
    for demand in range(queued, -1, -1):
        if demand_worth_saying(sent, demand, slots):
            sent = demand
        seen.append((demand, sent))
    return seen


@pytest.mark.parametrize("slots", [1, 2, 4, 16])
def test_a_draining_queue_is_told_in_few_messages_and_exactly_near_the_end(slots):
    seen = said_while_draining(100, slots)
    messages = len({believed for _, believed in seen})
    assert messages <= 32, messages  # was 101: one per claimed task
    for true, believed in seen:
        assert believed >= true, "never less than there is: a slot would sit idle"
        assert believed - true <= max(slots, believed // 8), (true, believed)
        if true <= slots:
            assert believed == true, "exact from the host's slot count down: grants follow the last tasks"
    assert seen[-1] == (0, 0)


def test_every_rise_and_every_change_without_known_slots_is_said():
    assert demand_worth_saying(None, 50, 2)  # the first, and after resend_demand()
    assert demand_worth_saying(40, 41, 2)
    assert not demand_worth_saying(41, 41, 2)
    assert not demand_worth_saying(41, 40, 2)
    assert demand_worth_saying(41, 40, None) and demand_worth_saying(41, 40, True)
    assert [d for d in range(100, -1, -1) if demand_worth_saying(d + 1, d, None)] == list(range(100, -1, -1))
