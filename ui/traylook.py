"""What the tray shows for a state: icon, tooltip in words, and which menu
items make sense. Pure functions of the state, so every case is testable
without a tray.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from trayapp.humantime import until
from sparecycles_ui.snapshot import Snapshot


@dataclass(frozen=True)
class Look:
    icon: str
    tooltip: str
    can_pause: bool = False
    can_donate: bool = False
    resume_label: str | None = None  # None: no Resume item (nothing to resume)
    donate_offered: bool = True  # a master does not lend its PC: no Donate menu at all


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def slave_look(state: dict | None, problem: str | None = None) -> Look:
    """From the slave daemon's ``state`` message (None when it cannot be reached).
    A slave that lends with a warning (no sandbox) says so in every look."""
    look = _slave_look(state, problem)
    warning = (state or {}).get("warning")
    if warning and look.icon != "slave-unavailable":
        return replace(look, tooltip=f"{look.tooltip}. Warning: {warning}")
    return look


def _slave_look(state: dict | None, problem: str | None) -> Look:
    if state is None:
        return Look("slave-unavailable", f"Unavailable: {problem or 'the slave daemon is not running'}")
    name = state["state"]
    running, slots = state.get("running", 0), state.get("slots", 0)
    if name == "unavailable":
        return Look("slave-unavailable", f"Unavailable: {state.get('reason') or 'unknown problem'}",
                    can_pause=True)
    if name == "paused":
        return Look("slave-paused", f"Paused {until(state.get('paused_until'))}: this PC is not lent",
                    resume_label="Resume")
    donating = bool(state.get("donating"))
    work = ""
    if running:
        names = state.get("master_names") or {}
        per_master = state.get("running_by_master") or {}
        whom = ", ".join(names.get(m, m) for m in sorted(per_master, key=lambda m: -per_master[m])) or "a master"
        work = f"{_plural(running, 'task')} for {whom}"
    if donating:
        text = f"Donating {until(state.get('donating_until'))}: " + (work or f"{_plural(slots, 'core')} offered")
        return Look("slave-donating", text, can_pause=True, resume_label="Stop donating")
    if name == "working" or running:
        return Look("slave-working", f"Working: {work}", can_pause=True, can_donate=True)
    if name == "ready":
        return Look("slave-waiting", f"Idle PC: ready to lend {_plural(slots, 'core')}, no work yet",
                    can_pause=True, can_donate=True)
    return Look("slave-waiting", f"Waiting for this PC to be idle ({_plural(slots, 'core')} to lend)",
                can_pause=True, can_donate=True)


def master_look(snapshot: Snapshot | None, *, paused_until: float | None | bool = False,
                attention: list[str] | None = None, dispatcher_problem: str | None = None) -> Look:
    """``paused_until``: False when not paused, None when paused until resumed, else a time."""
    if paused_until is not False:
        return Look("master-paused", f"Paused {until(paused_until)}: no new tasks start", resume_label="Resume",
                    donate_offered=False)
    problems = list(attention or []) + ([dispatcher_problem] if dispatcher_problem else [])
    jobs = snapshot.jobs if snapshot else []
    running = sum(j.in_flight for j in jobs)
    queued = sum(j.queued for j in jobs)
    if problems:
        return Look("master-attention", "Needs attention: " + "; ".join(problems), can_pause=True,
                    donate_offered=False)
    if running or queued:
        hosts = sorted({h for j in jobs for h in j.hosts})
        text = f"Working: {_plural(running, 'task')} running" + (f" on {', '.join(hosts)}" if hosts else "")
        return Look("master-working", text + (f", {queued} queued" if queued else ""), can_pause=True,
                    donate_offered=False)
    return Look("master-idle", "Idle: no tasks queued; drop a job folder on the window", can_pause=True,
                donate_offered=False)


def attention_reasons(snapshot: Snapshot, seen_until: float) -> list[str]:
    """Failed jobs that ended since the user last looked, and hosts we cannot reach."""
    reasons = [f"job {j.name} ended with {_plural(j.failed, 'failed task')}" for j in snapshot.jobs
               if j.failed and j.finished is not None and j.finished > seen_until]
    reasons += [f"host {h.name} is {h.state}" for h in snapshot.hosts if h.state in ("unreachable", "error")]
    return reasons
