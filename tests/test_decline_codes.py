"""A master decides on a decline's code, never on its words; a slave of the
release before codes (no ``code``) still has its archive asked for again."""

from __future__ import annotations

import pytest

from trayapp.master.driver import archive_may_be_gone
from trayapp.wire.fields import refusal
from trayapp.wire.protocol import ARCHIVE_GONE, DECLINE_CODES, TO_MASTER_FIELDS


@pytest.mark.parametrize("declined, gone", [
    ({"code": "archive_missing", "reason": "archive missing; send it first"}, True),
    ({"code": "archive_damaged", "reason": "checksum mismatch"}, True),
    # The words mention an archive; the code says what happened, and wins.
    ({"code": "no_slot", "reason": "no free slot (the archive is fine)"}, False),
    ({"code": "unavailable", "reason": "paused while the archive folder is cleaned"}, False),
    # Declined for good: nothing is asked for again.
    ({"code": "archive_unsafe", "reason": "refused the job archive: a link", "retry": False}, False),
    # A slave of the previous release sends no code: the archive is asked for again, whatever the words.
    ({"reason": "no free slot"}, True),
])
def test_whether_the_archive_is_asked_for_again_follows_the_code(declined, gone):
    assert archive_may_be_gone({"type": "declined", "token": "ab" * 8, **declined}) is gone


def test_every_code_that_drops_the_archive_is_a_documented_code():
    assert ARCHIVE_GONE <= set(DECLINE_CODES)


@pytest.mark.parametrize("field, value, says", [
    ("code", 3, "code must be a decline code"),
    ("retry", "no", "retry must be true or false"),
    ("host_failed", 1, "host_failed must be true or false"),
    ("reason", {"a": 1}, "reason must be text"),
])
def test_a_malformed_decline_is_refused_by_its_field_table(field, value, says):
    message = {"type": "declined", "token": "ab" * 8, "reason": "no free slot", "code": "no_slot", field: value}
    assert says in (refusal(message, TO_MASTER_FIELDS["declined"]) or "")
    good = {"type": "declined", "token": "ab" * 8, "reason": "no free slot"}  # as the previous release sends it
    assert refusal(good, TO_MASTER_FIELDS["declined"]) is None
