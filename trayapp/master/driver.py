"""The master's driver for one host: keeps the link up and the queue in step with it.

One :class:`HostDriver` runs per host, on its own thread with its own queue
connection. It connects (again and again, with backoff), says hello,
reconciles what the host holds with what the queue believes, and then follows
the conversation: the host grants a slot, the driver claims a queued task for
it, makes sure the host has the job's archive, starts the task, and when the
host reports it finished, fetches the results, checks and unpacks them, moves
them into place, records the outcome and acknowledges, in that order, so a
crash at any point is settled by the next reconciliation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from trayapp.wire.links import Link, LinkClosed
from trayapp.wire.fields import refusal
from trayapp.wire.protocol import ARCHIVE_GONE, TO_MASTER_FIELDS, LineBuffer, ProtocolError, decode, encode
from trayapp.master.driversettings import DriverSettings
from trayapp.master.bounds import HostMisbehaved, check_finished, grant_within_slots
from trayapp.master.fetch import TRANSFER_TRIES, ResultsLimits, offer_in_report
from trayapp.master.quarantine import Quarantine
from trayapp.master.remotehost import RemoteHost
from trayapp.master.results import paths_in_job_folder, results_path
from trayapp.master.settling import Settler
from trayapp.master.timelimit import TimeLimits
from trayapp.status import AttemptOutcome
from trayapp.master.store import Claim, Store
from trayapp.master.waits import UPLOAD_FAILED, declined_here, forget_declines, record_decline

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 30.0
GRANT_KEPT_S = 5.0  # a slave keeps an unused grant open 10 s; we use a deferred one well within that


class HostOffline(Exception):
    """The host answered, but no slave daemon runs there."""


@dataclass
class _InFlight:
    claim: Claim
    started: bool = False


@dataclass
class _Conversation:
    link: Link
    inbox: LineBuffer = field(default_factory=LineBuffer)
    archives_present: set[str] = field(default_factory=set)
    waiting_for_archive: dict[str, list[Claim]] = field(default_factory=dict)
    upload_tries: dict[str, int] = field(default_factory=dict)
    demand_sent: int | None = None
    synced: bool = False  # no demand before reconciling, or a fresh claim could be taken for lost
    early: list[dict] = field(default_factory=list)  # arrived with the hello, handled after it
    slots: object = None  # as the host advertises them: no grant makes us run more there
    # Slots granted beyond those, by when they were granted: used as our tasks
    # there end, for as long as the host keeps a grant open.
    deferred_grants: list[float] = field(default_factory=list)
    wanted_checked: float = 0.0  # when the queue was last asked whether our tasks there are still wanted

    def resend_demand(self) -> None:
        """Say the demand again at the next tick, even if it did not change:
        what the host may be asked for changed (a slot handed back, a job
        declined or offered again, a quarantine)."""
        self.demand_sent = None


class HostDriver(RemoteHost):
    """A protocol slave's driver: the conversation; the lifecycle is :class:`RemoteHost`'s."""

    def __init__(self, name: str, store_factory: Callable[[], Store], connect: Callable[[], Link],
                 settings: DriverSettings, *, cap: int | None = None, on_stop_stop_tasks: bool = False):
        super().__init__(name, store_factory, connect, lost_after_s=settings.lost_after_s,
                         backoff_max_s=settings.backoff_max_s,
                         quarantine=Quarantine(after_jobs=settings.quarantine_after_jobs,
                                               duration_s=settings.quarantine_s))
        self.settings = settings
        self.cap = cap
        self._stop_tasks_on_stop = on_stop_stop_tasks
        self.inflight: dict[str, _InFlight] = {}  # token -> attempt
        # Jobs whose requirements this host cannot meet are not offered to it again
        # for a while: kept in the queue's declines table (trayapp.master.waits), so
        # that `status` says why they wait, and `retry` offers them again.
        self._env_stamp = None
        self._next_expiry = 0.0
        # Results home, and those this master cannot write now (they wait on the host).
        self.settler = Settler(name, ResultsLimits(settings.max_results_bytes, settings.fetch_timeout_s),
                               recollect_s=settings.recollect_s, recollect_max_s=settings.recollect_max_s)
        self._reported_state: tuple[str, str | None] = ("unknown", None)  # what the host last said of itself
        self._cancels_sent: set[str] = set()  # only these may come back "cancelled"
        self.time_limits = TimeLimits(settings.time_limit_grace_s, settings.time_limit_prepare_s)
        self._showing_quarantine = False
        # One handler per message a slave sends (trayapp.wire.protocol.SLAVE_TO_MASTER);
        # the first hello is the handshake's, read before the conversation starts.
        self.handlers: dict[str, Callable[[_Conversation, dict], None]] = {
            "hello": self._on_hello_again,
            "grant": self._on_grant,
            "archive": self._on_archive,
            "archive_ok": self._on_archive_ok,
            "archive_bad": self._on_archive_bad,
            "started": self._on_started,
            "declined": self._on_declined,
            "preparing": self._on_preparing,
            "finished": self._on_finished,
            "tasks": self._on_tasks,
            "state": self._on_state,
            "error": self._on_error,
        }

    # ----- the lifecycle's hooks (trayapp.master.remotehost) ------------------------------

    def _drive(self, link: Link) -> None:
        self._converse(_Conversation(link))

    def _session_failed(self, exc: Exception) -> None:
        if isinstance(exc, HostOffline):
            self.store.set_host_state(self.host, "offline", str(exc), seen=True)
            self._requeue_all("the host's slave daemon is not running")
        else:
            super()._session_failed(exc)

    def _while_unreachable(self) -> None:
        self.time_limits.give_up_overdue(self.store, self.host, None, spare=set(self.settler.waiting))

    def _show_quarantine(self) -> None:
        self._show_state(*self._reported_state)

    # ----- the conversation ---------------------------------------------------------

    def _send(self, conv: _Conversation, kind: str, **fields) -> None:
        conv.link.send(encode(kind, **fields))

    def _receive(self, conv: _Conversation, timeout: float) -> list[dict]:
        import select

        ready, _, _ = select.select([conv.link], [], [], timeout)
        if not ready:
            return []
        return [decode(line) for line in conv.inbox.feed(conv.link.recv())]

    def _converse(self, conv: _Conversation) -> None:
        self._send(conv, "hello", master=self.settings.master_id, name=self.settings.master_name)
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        hello = None
        while hello is None:
            if time.monotonic() > deadline:
                raise LinkClosed("no hello from the host")
            for message in self._receive(conv, 1.0):
                if hello is not None:
                    conv.early.append(message)
                elif message["type"] == "error" and message.get("offline"):
                    raise HostOffline(message["reason"])
                elif message["type"] == "error":
                    raise ProtocolError(message["reason"])
                elif message["type"] == "hello":
                    hello = message
        self.inflight.clear()  # rebuilt from the queue and the host's own list by _reconcile
        self.settler.forget_waiting()  # the host's list reports them again
        conv.slots = hello.get("slots")
        self._show_state(hello["state"], hello.get("reason"), info=_info(hello))
        self._note_env_stamp(conv, hello.get("env_stamp"))
        self._send(conv, "sync")
        self._reached()
        log.info("host %s: connected (%s, %s slots)", self.host, hello["state"], hello.get("slots"))
        for message in conv.early:
            self._handle(conv, message)
        while not self._stopping.is_set():
            for message in self._receive(conv, self.settings.tick_s):
                self._handle(conv, message)
            self._tick(conv)
        self._say_goodbye(conv)

    def _say_goodbye(self, conv: _Conversation) -> None:
        if self._retiring:
            for token in {*self.inflight, *self.settler.waiting}:
                self._cancel(conv, token)
            self.settler.forget_waiting()
            # Including what it claimed between `hosts remove` and the dispatcher noticing.
            self._requeue_all(f"host {self.host} was removed; the task will run elsewhere")
        # Our own cores are not asked to stop their tasks here: the engine's own
        # stop sequence (trayapp.master.kinds.local.LocalSlave), which follows,
        # kills them all at once, launches that raced the stop included. Asking
        # here too stopped them twice, the first time one tree after another.
        self._send(conv, "bye", stop_tasks=False)
        if self._stop_tasks_on_stop:
            # They run again next time (or elsewhere).
            self._requeue_all("the dispatcher was stopped; the task will run again")

    def _tick(self, conv: _Conversation) -> None:
        now = time.monotonic()
        for report in self.settler.due():
            self._on_finished(conv, report)
        if now >= conv.wanted_checked + self.settings.tick_s / 2:
            # A query per task under way: after every message it was most of a
            # busy tick's queue reads; a cancel is still seen within a tick.
            conv.wanted_checked = now
            for token, entry in list(self.inflight.items()):
                if not self.store.attempt_is_wanted(entry.claim.attempt_id):
                    self._cancel(conv, token)
        if self._showing_quarantine and not self.quarantine.active:
            self._show_state(*self._reported_state)  # the quarantine is over
        if not conv.synced:
            return
        # Only once the host listed its tasks: after a restart of this master a task
        # the host finished long ago is collected, not given up as overdue.
        for token in self.time_limits.give_up_overdue(self.store, self.host, partial(self._cancel, conv),
                                                      spare=set(self.settler.waiting)):
            self.inflight.pop(token, None)
        self._expire_declines(now)
        queued = 0 if self.quarantine.active else self.store.count_queued(self.not_offered())
        demand = queued if self.cap is None else max(0, min(queued, self.cap - len(self.inflight)))
        if demand_worth_saying(conv.demand_sent, demand, conv.slots):
            self._send(conv, "demand", queued=demand)
            conv.demand_sent = demand

    def _handle(self, conv: _Conversation, message: dict) -> None:
        kind = message["type"]
        handler = self.handlers.get(kind)
        if handler is None:
            raise ProtocolError(f"a master does not accept '{kind}'")
        problem = refusal(message, TO_MASTER_FIELDS.get(kind, {}))
        if problem:
            raise HostMisbehaved(f"a malformed '{kind}' message ({problem})")
        handler(conv, message)

    def _on_hello_again(self, conv: _Conversation, message: dict) -> None:
        raise ProtocolError("the host said hello again in the middle of the conversation")

    def _on_grant(self, conv: _Conversation, message: dict) -> None:
        n = message["n"]
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1000:
            raise ProtocolError(f"a grant of {n!r} slots")
        # Never claim more than we asked for, nor more than the host's slots, whatever it says.
        asked = min(n, conv.demand_sent or 0)
        usable = grant_within_slots(asked, conv.slots, len(self.inflight), asked)
        # A slot freed by a task ending is granted before that task's report arrives: kept for then.
        most = conv.slots if isinstance(conv.slots, int) else 0
        conv.deferred_grants = (conv.deferred_grants + [time.monotonic()] * (asked - usable))[:most]
        self._claim_granted(conv, usable)

    def _on_archive_ok(self, conv: _Conversation, message: dict) -> None:
        conv.archives_present.add(message["sha"])
        for claim in conv.waiting_for_archive.pop(message["sha"], []):
            self._start(conv, claim)

    def _on_started(self, conv: _Conversation, message: dict) -> None:
        entry = self.inflight.get(message["token"])
        pid = message.get("pid")
        if entry is not None and not entry.started:
            entry.started = True
            self.time_limits.started(message["token"])
            self.quarantine.start_worked()
            if not self.store.mark_running(entry.claim.attempt_id, pid if isinstance(pid, int) else 0):
                self._cancel(conv, message["token"])

    def _on_tasks(self, conv: _Conversation, message: dict) -> None:
        self._reconcile(conv, message["tasks"])
        conv.synced = True

    def _on_preparing(self, conv: _Conversation, message: dict) -> None:
        entry = self.inflight.get(message["token"])
        if entry is not None:
            self.store.note_running_task(entry.claim.attempt_id, f"{self.host}: {message['detail']}"[:500],
                                         event=False)

    def _on_state(self, conv: _Conversation, message: dict) -> None:
        self._note_env_stamp(conv, message.get("env_stamp"))
        conv.slots = message.get("slots", conv.slots)
        self._show_state(message["state"], message.get("reason"), info=_info(message))

    def _on_error(self, conv: _Conversation, message: dict) -> None:
        log.warning("host %s says: %s", self.host, message["reason"])

    def _cancel(self, conv: _Conversation, token: str) -> None:
        self._cancels_sent.add(token)
        self._send(conv, "cancel", token=token)

    def _use_deferred_grant(self, conv: _Conversation) -> None:
        fresh_since = time.monotonic() - GRANT_KEPT_S
        conv.deferred_grants = [t for t in conv.deferred_grants if t >= fresh_since]
        if not conv.deferred_grants:
            return
        usable = grant_within_slots(len(conv.deferred_grants), conv.slots, len(self.inflight),
                                    conv.demand_sent or 0)
        del conv.deferred_grants[:usable]
        if usable:
            self._claim_granted(conv, usable)

    def _claim_granted(self, conv: _Conversation, n: int) -> None:
        claims = self.store.claim(self.host, n, self.not_offered())
        for claim in claims:
            self.inflight[claim.token] = _InFlight(claim)
            sha = Path(claim.archive_path).stem
            if sha in conv.archives_present:
                self._start(conv, claim)
            elif sha in conv.waiting_for_archive:
                conv.waiting_for_archive[sha].append(claim)
            else:
                conv.waiting_for_archive[sha] = [claim]
                self._send(conv, "need_archive", sha=sha)
        if len(claims) < n:
            # Another host took the work first: hand the slots back now rather
            # than let them sit idle until the grant times out.
            self._send(conv, "release", n=n - len(claims))
            conv.resend_demand()
            self._tick(conv)  # and the smaller demand right behind it, before a new grant

    def _on_archive(self, conv: _Conversation, message: dict) -> None:
        sha = message["sha"]
        if message["present"]:
            conv.archives_present.add(sha)
            for claim in conv.waiting_for_archive.pop(sha, []):
                self._start(conv, claim)
            return
        claims = conv.waiting_for_archive.get(sha, [])
        if not claims:
            return
        local = Path(claims[0].archive_path)
        try:
            conv.link.put(local, str(message.get("upload_path")))
        except OSError as exc:
            # The host cannot take the file (its disk is full or read-only):
            # its tasks go back to the queue now, to run elsewhere.
            self._upload_failed(conv, sha, f"could not send the job to {self.host}: {exc}")
            self.store.set_host_state(self.host, "unavailable", f"could not receive the job archive: {exc}")
            conv.resend_demand()
            return
        self._send(conv, "archive_uploaded", sha=sha, path=message["upload_path"])

    def _on_archive_bad(self, conv: _Conversation, message: dict) -> None:
        sha = message["sha"]
        tries = conv.upload_tries.get(sha, 0) + 1
        conv.upload_tries[sha] = tries
        log.warning("host %s: archive %s arrived damaged (%s), try %d", self.host, sha[:12], message["reason"], tries)
        if tries < TRANSFER_TRIES:
            self._send(conv, "need_archive", sha=sha)
            return
        self._upload_failed(conv, sha, f"{self.host}: the job archive arrived damaged {tries} times")

    def _upload_failed(self, conv: _Conversation, sha: str, why: str) -> None:
        """The job's archive did not reach the host: its tasks go back to the queue
        to run elsewhere, and the host is not offered the job again for a while
        (``declined_for_s``), or it would take it, fail the upload, and take it again,
        for ever (an archive over its incoming quota, a full disk)."""
        for claim in conv.waiting_for_archive.pop(sha, []):
            self.inflight.pop(claim.token, None)
            self.store.finish_attempt(claim.attempt_id, AttemptOutcome.HOST_LOST, message=why)
            record_decline(self.store, claim.job_seq, self.host, UPLOAD_FAILED, why)

    def _start(self, conv: _Conversation, claim: Claim) -> None:
        try:
            line = encode("start", token=claim.token, job=claim.job_id, idx=claim.idx, params=claim.params,
                          main=claim.main, archive_sha=Path(claim.archive_path).stem,
                          time_limit_s=claim.time_limit_s, requires=list(claim.requires), memory_mb=claim.memory_mb)
        except ProtocolError as exc:  # a parameter set no host can take: the task's fault, not the link's
            self.inflight.pop(claim.token, None)
            self.store.finish_attempt(claim.attempt_id, AttemptOutcome.REJECTED,
                                      message=f"its parameter set cannot be sent to a host: {exc}")
            return
        conv.link.send(line)

    def not_offered(self) -> frozenset[int]:
        """Jobs not to claim for this host: declined here, or their results cannot be written now."""
        return declined_here(self.store, self.host) | self.settler.blocked_jobs

    def _expire_declines(self, now: float) -> None:
        if now >= self._next_expiry:
            self._next_expiry = now + 5.0
            forget_declines(self.store, host=self.host, older_than=time.time() - self.settings.declined_for_s)

    def _note_env_stamp(self, conv: _Conversation, stamp) -> None:
        """The host's task environment changed (a package installed there): what it
        declined before may suit it now."""
        if stamp != self._env_stamp and self._env_stamp is not None:
            if forget_declines(self.store, host=self.host):
                log.info("host %s: its task environment changed; offering the jobs it declined again", self.host)
            conv.resend_demand()
        self._env_stamp = stamp

    def _on_declined(self, conv: _Conversation, message: dict) -> None:
        entry = self.inflight.pop(message["token"], None)
        if entry is None:
            return
        self._use_deferred_grant(conv)
        reason = f"{self.host} declined: {message['reason']}"
        code = message.get("code")
        if message.get("requirements"):
            # Not this task's fault and not the host's: the job needs another
            # environment. Other hosts may take it; this one is not asked again.
            record_decline(self.store, entry.claim.job_seq, self.host, code or "declined", message["reason"])
            conv.resend_demand()
        if code == "unresolvable":
            # The index has no such package or version: no host will do better,
            # so the job fails now, paused and busy hosts notwithstanding.
            package = message.get("package") or "a requirement"
            why = f"{package} cannot be installed: no version of it on the package index matches. {reason}"
            self.store.finish_attempt(entry.claim.attempt_id, AttemptOutcome.REJECTED, message=why)
            self.store.fail_queued_tasks(entry.claim.job_seq, why)
            return
        if archive_may_be_gone(message):
            conv.archives_present.discard(Path(entry.claim.archive_path).stem)
        if not message.get("retry", True):
            outcome = AttemptOutcome.REJECTED
        elif message.get("host_failed"):
            outcome = AttemptOutcome.HOST_FAILED
            self._host_failed(conv, entry.claim.job_seq, message["reason"])
        else:
            outcome = AttemptOutcome.HOST_LOST
        self.store.finish_attempt(entry.claim.attempt_id, outcome, message=reason)

    def _host_failed(self, conv: _Conversation, job_seq: int, reason: str) -> None:
        if self.quarantine.start_failed(job_seq, reason):
            log.error("host %s: %s", self.host, self.quarantine.describe())
            self._show_state(*self._reported_state)
            conv.resend_demand()

    def _show_state(self, state: str, reason: str | None, *, info: dict | None = None) -> None:
        """Record the host's state as it reports it, unless our quarantine overrides it."""
        self._reported_state = (state, reason)
        quarantined = self.quarantine.describe()
        self._showing_quarantine = quarantined is not None
        if quarantined:
            state, reason = "quarantined", quarantined
        self.store.set_host_state(self.host, state, reason, info=info, seen=True)

    # ----- results --------------------------------------------------------------------

    def _on_finished(self, conv: _Conversation, report: dict) -> None:
        check_finished(report)
        token = report["token"]
        entry = self.inflight.pop(token, None)
        if entry is not None:
            self._use_deferred_grant(conv)
        claim = entry.claim if entry else self._claim_for_token(token)
        if claim is None:
            self._cancels_sent.discard(token)
            self.settler.drop(token)  # its results may have waited here: its job is free again
            self._send(conv, "ack", token=token)  # not ours to collect (e.g. already settled, or given up)
            return
        outcome = _outcome(report["outcome"])
        if outcome is AttemptOutcome.CANCELLED and token not in self._cancels_sent:
            raise HostMisbehaved(f"it reported task {claim.job_id}#{claim.idx} cancelled, which only its master may do")
        self._cancels_sent.discard(token)
        if outcome is AttemptOutcome.HOST_FAILED:
            self._host_failed(conv, claim.job_seq, str(report.get("message")))
        if outcome is AttemptOutcome.CANCELLED:
            self.store.finish_attempt(claim.attempt_id, outcome, message="cancelled by the user")
            return
        message = report.get("message")
        if isinstance(message, str):
            message = paths_in_job_folder(message, claim.token, self.store.job(claim.job_id).folder,
                                          str(results_path(claim)))
        offer = offer_in_report(report, in_place=conv.link.results_in_place, host=self.host)
        if not self.settler.settle(self.store, conv.link, claim, offer, outcome, exit_code=report.get("exit_code"),
                                   message=message, again_with=report):
            return  # kept on the host (no ack) until this master can write them
        if self.settler.take_unblocked():
            conv.resend_demand()  # the job's queued tasks count again
        self._send(conv, "ack", token=token)

    def _claim_for_token(self, token: str) -> Claim | None:
        row = self.store.attempt_by_token(token)
        if row is None or row["host"] != self.host or row["ended"] is not None:
            return None
        return self.store.claim_for(row["id"])

    # ----- reconciliation ----------------------------------------------------------------

    def _reconcile(self, conv: _Conversation, held: list[dict]) -> None:
        """Bring the queue and the host into agreement after (re)connecting."""
        if not isinstance(held, list) or not all(isinstance(t, dict) and isinstance(t.get("token"), str)
                                                 for t in held):
            raise HostMisbehaved("a malformed list of its tasks")
        on_host = {t["token"]: t for t in held}
        for attempt in self.store.open_attempts(self.host):
            if attempt.token in on_host:
                claim = self.store.claim_for(attempt.attempt_id)
                report = on_host.pop(attempt.token)
                self.inflight[attempt.token] = _InFlight(claim, started=report.get("state") != "preparing")
                if report.get("state") == "finished":
                    self._on_finished(conv, report)
            else:
                # The host never heard of it (the start was lost) or lost it.
                self.store.finish_attempt(attempt.attempt_id, AttemptOutcome.HOST_LOST,
                                          message=f"{self.host} no longer had the task; it will run again")
        for token, report in on_host.items():
            # The queue settled these already (cancelled, or requeued while the
            # host was away): stop them and drop their results, never collect twice.
            if report.get("state") == "running":
                self._cancel(conv, token)
            else:
                self._send(conv, "ack", token=token)


def demand_worth_saying(sent: int | None, demand: int, slots: object) -> bool:
    """Whether the host must hear a new demand. Every claim lowers the queue,
    and telling each host every time was one message per task, each way
    (read, decoded and weighed by every slave daemon). A host acts on a demand
    by whether it is above nought and how it compares with its slots, so: any
    rise, any fall to its slot count or below (exact from there on: the last
    tasks, or none), and a fall above it once it is an eighth or a slot count
    (a slave's ``by_demand`` baseline weighs masters by their queues: a little
    stale, never low). Slots not known: every change, as before."""
    if sent is None or demand > sent:
        return True
    if demand == sent:
        return False
    if not isinstance(slots, int) or isinstance(slots, bool) or demand <= slots:
        return True
    return sent - demand >= max(slots, sent // 8)


def archive_may_be_gone(declined: dict) -> bool:
    """Whether, after this decline, the slave may no longer hold the job archive
    (so the next start of the job asks for it again)."""
    if not declined.get("retry", True):
        return False  # the task is rejected; the archive is not asked for again
    code = declined.get("code")
    # A slave of a release before decline codes sends none: then the archive
    # may be what it lacks. Asking again costs one need_archive round trip
    # (answered "present" if it is there); not asking would start the next
    # task from an archive the slave no longer has, and be declined again.
    return code is None or code in ARCHIVE_GONE


def _outcome(value: str) -> AttemptOutcome:
    try:
        return AttemptOutcome(value)
    except ValueError:
        raise ProtocolError(f"unknown outcome {value!r}") from None


def _info(message: dict) -> dict:
    # "share" from a slave of this release; "usage" (every master's) from an older one.
    keys = ("slots", "running", "running_mine", "share", "other_masters", "running_by_master", "usage", "python",
            "brian", "name", "version")
    return {k: message.get(k) for k in keys if k in message}
