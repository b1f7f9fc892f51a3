"""What a task that failed because its results were refused says, from any kind
of host: one assertion, so a desktop slave's words and a cluster's are
compared with the same phrases rather than copied into each test."""

from __future__ import annotations

# The phrase each refusal's reason holds (trayapp.master.fetch.over_the_cap, too_slow).
PHRASES = {
    "oversized": ("more than this master takes", "max_results_mb"),
    "stalled": ("did not arrive within", "fetch_timeout_s"),
}


def assert_results_refused(task: dict, why: str, host: str) -> None:
    """``task`` (a task of ``status --json``) failed because ``host``'s results were refused for ``why``."""
    assert task["status"] == "failed", task
    message = task.get("message") or ""
    assert f"the results on {host} " in message, task
    for phrase in PHRASES[why]:
        assert phrase in message, task
