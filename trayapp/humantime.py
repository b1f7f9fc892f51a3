"""Durations and moments as people read them, in the CLI's tables and the window's alike."""

from __future__ import annotations

import time


def duration(seconds: float | None) -> str | None:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``; None when there is no duration to show."""
    if seconds is None:
        return None
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def moment(ts: float) -> str:
    """A date and time to the minute, in local time."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def ago(ts: float | None, now: float) -> str:
    """How long ago ``ts`` was: seconds, then minutes, then the moment itself."""
    if not ts:
        return "never"
    seconds = max(0.0, now - ts)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return moment(ts)


def until(ts: float | None) -> str:
    """Till when something lasts: a clock time today, or until someone ends it (None)."""
    return "until resumed" if ts is None else "until " + time.strftime("%H:%M", time.localtime(ts))
