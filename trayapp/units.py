"""Durations and memory sizes as people type them ("10m", "2 GB"): one reading
for manifests, the command line and host options alike."""

from __future__ import annotations

import math
import re

DURATION_FORMS = 'a number of seconds (90) or text with units: "90s", "10m", "2h", "1h30m", "1.5h"'
MEMORY_FORMS = 'text like "2 GB", "2G", "512 MB", "512 MiB", or a whole number of megabytes'

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"(?:(?P<h>{_NUMBER})\s*h(?:ours?|rs?)?)?\s*"
                       rf"(?:(?P<m>{_NUMBER})\s*m(?:in(?:ute)?s?)?)?\s*"
                       rf"(?:(?P<s>{_NUMBER})\s*s(?:ec(?:ond)?s?)?)?")
_MEMORY = re.compile(rf"({_NUMBER})\s*([a-z]*)")
_MB_PER_UNIT = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024,
                "t": 1024 ** 2, "tb": 1024 ** 2, "tib": 1024 ** 2, "k": 1 / 1024, "kb": 1 / 1024, "kib": 1 / 1024}


def parse_duration(text: str | int | float) -> float:
    """Seconds from 90, "90", "90s", "10m", "2h", "1h30m" or "1.5h" (more than zero)."""
    seconds = None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    elif isinstance(text, str):
        spec = text.strip().lower()
        if re.fullmatch(rf"[+-]?{_NUMBER}", spec):
            seconds = float(spec)
        elif (match := _DURATION.fullmatch(spec)) and any(match.groupdict().values()):
            h, m, s = (float(match[unit] or 0) for unit in "hms")
            seconds = h * 3600 + m * 60 + s
    if seconds is None:
        raise ValueError(f"{text!r} is not a duration; use {DURATION_FORMS}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{text!r} is not a usable duration: it must be more than zero; use {DURATION_FORMS}")
    return seconds


def parse_memory_mb(text: str | int) -> int:
    """Megabytes from "2 GB", "2G", "512MB", "512 MiB" or an int (already MB); rounds up."""
    megabytes = None
    if isinstance(text, int) and not isinstance(text, bool):
        megabytes = text
    elif isinstance(text, str):
        match = _MEMORY.fullmatch(text.strip().lower())
        if match and match[2] in _MB_PER_UNIT:
            megabytes = math.ceil(float(match[1]) * _MB_PER_UNIT[match[2]])  # round up: it is a need
    if megabytes is None:
        raise ValueError(f"{text!r} is not a memory size; use {MEMORY_FORMS}")
    if megabytes < 1:
        raise ValueError(f"{text!r} is not a usable memory size: it must be at least 1 MB; use {MEMORY_FORMS}")
    return megabytes
