"""Reading SLURM's answers: ``squeue`` lines and ``scontrol show config``.

One ``squeue --states=all`` per poll covers every array of the host; states
of elements that ended stay visible for the cluster's ``MinJobAge``, which is
how a time limit or a node failure is told apart from a task that simply
finished (its ``done`` marker says that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trayapp.status import AttemptOutcome

SQUEUE_FORMAT = "%F|%K|%T|%r|%j"
SQUEUE_ARGS = ["squeue", "-h", "-r", "--me", "--states=all", "-o", SQUEUE_FORMAT]

WAITING = frozenset({"PENDING", "CONFIGURING", "RESV_DEL_HOLD", "REQUEUE_HOLD", "SUSPENDED", "STOPPED"})
RUNNING = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"})
# Not the task's doing: it goes back to the queue and uses no retry.
LOST = {"PREEMPTED": "preempted by SLURM", "REQUEUED": "requeued by SLURM", "REQUEUE_FED": "requeued by SLURM",
        "NODE_FAIL": "its node failed", "BOOT_FAIL": "its node failed to boot", "REVOKED": "revoked by SLURM",
        "DEADLINE": "SLURM's deadline passed", "SPECIAL_EXIT": "requeued by SLURM"}
# Ended by SLURM for what the task did.
ENDED_BY_SLURM = {"TIMEOUT": AttemptOutcome.TIMED_OUT, "OUT_OF_MEMORY": AttemptOutcome.EXITED}


@dataclass(frozen=True)
class Element:
    """One array element as squeue shows it."""

    array_id: str
    index: int
    state: str
    reason: str
    name: str


def parse_squeue(text: str) -> dict[tuple[str, int], Element]:
    """Elements by (array id, index); jobs that are not arrays are skipped."""
    found = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) != 5 or not parts[1].isdigit():
            continue
        array_id, index, state, reason, name = parts
        element = Element(array_id, int(index), state.split()[0].rstrip("+"), reason, name)
        found[(array_id, element.index)] = element
    return found


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config``: ``Name = value`` lines as a dict."""
    config = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+)\s*=\s*(.*?)\s*$", line)
        if match:
            config[match[1]] = match[2]
    return config


def config_int(config: dict[str, str], name: str) -> int | None:
    match = re.match(r"^\d+", config.get(name, ""))
    return int(match[0]) if match else None
