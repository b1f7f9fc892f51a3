"""The allowed range of every numeric setting, in one table, checked in one place.

``load_config`` checks the types; this module checks the values, so that
``poll_interval_s = -1`` (which would stop all work), ``0`` (which would burn a
core), a negative size or ``nan`` seconds are refused at start-up with the
same kind of message, naming the setting, its range and the way back to the
default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from trayapp.errors import UserError


@dataclass(frozen=True)
class Range:
    low: float
    high: float = math.inf
    low_open: bool = False  # the low end itself is not allowed
    meaning: str = ""
    zero_means: str = ""  # 0 is allowed too, below the range, and means this

    def holds(self, value: float) -> bool:
        if value == 0 and self.zero_means:
            return True
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        low = f"more than {self.low:g}" if self.low_open else f"{self.low:g} or more"
        text = low if self.high == math.inf else f"from {self.low:g}{' (excluded)' if self.low_open else ''} to " \
                                                 f"{self.high:g}"
        if self.zero_means:
            text += f", or 0 for {self.zero_means}"
        return f"{text} ({self.meaning})" if self.meaning else text


# Python and its compiler (Brian's code generation) need a few processes of their own.
MIN_TASK_PROCESSES = 16


RANGES: dict[str, Range] = {
    "slots": Range(0, meaning="0 = one per core"),
    "nice": Range(0, 19, meaning="the Unix niceness of tasks"),
    "default_retries": Range(0, 100),
    "poll_interval_s": Range(0.01, 3600, meaning="seconds"),
    "time_limit_grace_s": Range(1, meaning="seconds past a job's time limit"),
    "max_results_mb": Range(0, meaning="megabytes"),
    "fetch_timeout_s": Range(1, meaning="seconds one task's results may take to arrive"),
    "min_free_mb": Range(0, meaning="megabytes"),
    "fair_share_half_life_s": Range(0, low_open=True, meaning="seconds"),
    "idle_after_s": Range(0, meaning="seconds"),
    "max_foreign_cpu": Range(0, 1, low_open=True, meaning="a share of all cores"),
    "suspend_grace_s": Range(0, meaning="seconds"),
    "envs_max_gb": Range(0, low_open=True, meaning="the disk in GB job environments may use"),
    "max_task_memory_mb": Range(0, meaning="megabytes; 0 = three quarters of this PC's memory"),
    "max_task_disk_mb": Range(0, meaning="megabytes one task's folder may fill; 0 = its slot's share of half "
                                         "the free disk"),
    "max_task_processes": Range(MIN_TASK_PROCESSES, zero_means="no cap",
                                meaning="processes and threads of one task; fewer cannot run Python and its compiler"),
}


def check_ranges(path: Path, config: object) -> None:
    """Raise :class:`UserError` for the first numeric setting out of its range
    (or not finite: ``nan`` and ``inf`` are never a setting)."""
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        allowed = RANGES.get(f.name)
        if math.isfinite(value) and (allowed is None or allowed.holds(value)):
            continue
        default = f.default
        what = allowed.describe() if allowed else "a finite number"
        raise UserError(f"{path}: setting '{f.name}' must be {what}, not {value!r}",
                        f"change it in {path}, or delete the line to use the default ({default!r})")
