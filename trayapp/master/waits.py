"""Why a job waits: every queued job says so, in words, with a code to decide on.

Two sources, both in the queue so that any process (``status``, ``wait``, the
window, the API) reads the same answer the dispatcher acts on:

- the ``declines`` table: each host's refusal of a job for what it needs
  (written by the host's driver, forgotten after a while, when the host's task
  environment changes, or when the user retries the job);
- the ``hosts`` table: each host's state as it last reported it ("paused until
  14:00", unreachable, quarantined...).

Like HTCondor's ``condor_q -better-analyze``, in a line:
"declined by lab-07: no version of X matches (...); lab-08 paused until 14:00".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from trayapp.master.store import JobRecord, Store
from trayapp.status import TaskStatus


class WaitCode(str, Enum):
    """Why a job (or its queued tasks) is not running now."""

    UNRESOLVABLE = "unresolvable"  # a requirement has no version on the index: the job fails
    DECLINED = "declined"  # a host cannot run it as it is (memory, its Python, a build failed)
    PREPARING = "preparing"  # a host builds the job's environment
    PAUSED = "paused"  # the host's user paused lending
    IN_USE = "in_use"  # the host's user is at it: it lends when idle
    BUSY = "busy"  # the host's slots run other work
    UNREACHABLE = "unreachable"  # no connection, or no slave daemon there
    UNAVAILABLE = "unavailable"  # the host reports an error (no sandbox, disk full...)
    QUARANTINED = "quarantined"
    NO_HOSTS = "no_hosts"


# Host states (as hosts report them, trayapp.slave.availability.SlaveState, and as
# drivers set them) that keep a job waiting, with the code they mean.
_HOST_WAITS = {
    "paused": WaitCode.PAUSED, "waiting": WaitCode.IN_USE, "working": WaitCode.BUSY,
    "unreachable": WaitCode.UNREACHABLE, "offline": WaitCode.UNREACHABLE, "unknown": WaitCode.UNREACHABLE,
    "unavailable": WaitCode.UNAVAILABLE, "error": WaitCode.UNAVAILABLE, "quarantined": WaitCode.QUARANTINED,
    "busy": WaitCode.BUSY,
}
# Host-side reasons a job waits, worth saying before the ones that pass by themselves.
_ORDER = [WaitCode.UNRESOLVABLE, WaitCode.DECLINED, WaitCode.PREPARING, WaitCode.UNAVAILABLE,
          WaitCode.QUARANTINED, WaitCode.UNREACHABLE, WaitCode.PAUSED, WaitCode.IN_USE, WaitCode.BUSY,
          WaitCode.NO_HOSTS]


@dataclass(frozen=True)
class Wait:
    code: WaitCode
    host: str | None
    words: str  # for people: "declined by lab-07: ..." / "lab-08 paused until 14:00"

    def to_json(self) -> dict:
        return {"code": self.code.value, "host": self.host, "words": self.words}


# ----- the declines table (written by host drivers, kept by the store) ----------------

def record_decline(store: Store, job_seq: int, host: str, code: str, reason: str) -> None:
    store.record_decline(job_seq, host, code, reason)


def declined_here(store: Store, host: str) -> frozenset[int]:
    """The jobs ``host`` declined and is not offered again (yet)."""
    return store.declined_jobs(host)


# Recorded by the master itself when a job's archive could not be sent to a host.
UPLOAD_FAILED = "upload_failed"

# Decline codes a host may outgrow (its lender raises the cap, memory or disk frees up):
# a job every host declined only for these waits for them, and says so.
HOST_CAN_CHANGE = frozenset({"memory", UPLOAD_FAILED})


def nobody_can_run(declines: dict[str, tuple[str, str]], connected: list[str]) -> str | None:
    """Why no connected host can run a job, one reason per host, or None while
    one of them has not declined it or declined only for what it may outgrow."""
    if not connected:
        return None  # nobody to ask yet: the job waits for a host, as any job does
    reasons = []
    for host in connected:
        code, reason = declines.get(host, (None, None))
        if code is None or code in HOST_CAN_CHANGE:
            return None
        reasons.append(f"{host}: {reason}")
    return "; ".join(reasons)


def declines_of(store: Store, job_seq: int) -> dict[str, tuple[str, str]]:
    """Per host that declined the job: (code, reason)."""
    return store.declines_of(job_seq)


def forget_declines(store: Store, *, host: str | None = None, job_seq: int | None = None,
                    older_than: float | None = None) -> int:
    """Offer jobs again: a host's (its environment changed), a job's (the user
    retried it), or those declined before ``older_than`` (a clock time)."""
    return store.forget_declines(host=host, job_seq=job_seq, older_than=older_than)


# ----- reading why ------------------------------------------------------------------------

def why_waiting(store: Store, job: JobRecord) -> list[Wait]:
    """Why the job's queued tasks are not running, most telling first; empty
    when it has none queued (a running job is under way, a finished one done)."""
    if not job.count(TaskStatus.QUEUED):
        return []
    declines = declines_of(store, job.seq)
    under_way = job.count(TaskStatus.DISPATCHED) + job.count(TaskStatus.RUNNING) > 0
    waits = []
    for host, (code, reason) in declines.items():
        code = WaitCode.UNRESOLVABLE if code == WaitCode.UNRESOLVABLE.value else WaitCode.DECLINED
        waits.append(Wait(code, host, f"declined by {host}: {reason}"))
    if job.waiting_on:  # a host builds its environment, or holds its results
        waits.append(Wait(WaitCode.PREPARING, None, job.waiting_on))
    for host in store.hosts():
        if host.name in declines:
            continue
        code = _HOST_WAITS.get(host.state)
        if code is None:
            continue  # ready, donating: it takes work when its turn comes
        if under_way and code is not WaitCode.UNAVAILABLE:
            continue  # its tasks run: hosts busy or away are no news
        what = host.reason or ("its slots run other tasks" if code is WaitCode.BUSY else host.state)
        words = f"{host.name} {what}" if what.startswith(host.state) else f"{host.name} {host.state}: {what}"
        waits.append(Wait(code, host.name, words))
    if not waits and not store.hosts():
        waits.append(Wait(WaitCode.NO_HOSTS, None, "no hosts, and this PC runs no tasks"))
    return sorted(waits, key=lambda w: _ORDER.index(w.code))


def describe_waits(waits: list[Wait]) -> str:
    """The reasons in one line, for ``status``, ``wait`` and the window."""
    return "; ".join(w.words for w in waits)
