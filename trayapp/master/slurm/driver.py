"""The master's driver for one SLURM cluster: keeps the queue in step with SLURM.

One :class:`SlurmDriver` thread per cluster host, with its own queue
connection. Every poll it makes two kinds of remote call at most: one script
that runs ``squeue`` once for all of the host's arrays and lists the marker
files of the tasks it waits for, and the calls that act on what that showed
(collect, cancel, submit). Tasks are claimed from the queue only when they are
submitted, as one job array per chunk (at most ``MaxArraySize`` elements, and
no more than the in-flight budget), so a cluster never sits on work that
desktops could run.

Where every task is lives on the cluster, not in this process: a chunk's
``tasks.tsv`` maps array elements to attempts, its ``jobid`` (or its job name)
to SLURM, and ``done`` markers say what finished. A master killed at any point
rebuilds its picture from those on restart: it collects what finished, follows
what is still queued, and sends back to the queue only what never reached SLURM
or left it unfinished, so no task is lost or run twice.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trayapp.master.bounds import HostMisbehaved
from trayapp.master.fetch import Offer, ResultsLimits
from trayapp.master.quarantine import Quarantine
from trayapp.master.remotehost import RemoteHost
from trayapp.master.settling import Settler
from trayapp.master.slurm.cluster import Cluster, ClusterProblem, Finished, SlurmBusy, Snapshot
from trayapp.master.slurm.options import SlurmOptions
from trayapp.master.slurm.script import archive_sha
from trayapp.master.slurm.squeue import ENDED_BY_SLURM, LOST, RUNNING, WAITING, config_int
from trayapp.master.store import Claim, Store
from trayapp.run.posix import describe_exit
from trayapp.status import AttemptOutcome
from trayapp.wire.links import LinkClosed
from trayapp.wire.ssh import ClientKeyError, HostKeyError, LoginRefused, SSHShell

log = logging.getLogger(__name__)


@dataclass
class SlurmSettings:
    lost_after_s: float = 600.0  # unreachable this long: its tasks run elsewhere
    backoff_max_s: float = 60.0
    blocked_s: float = 60.0  # after a problem a person must fix, submit nothing for this long (doubling)
    blocked_max_s: float = 900.0
    # The same limits as a desktop slave's results (DriverSettings): from the same settings.
    max_results_mb: int = 2048
    fetch_timeout_s: float = 900.0
    recollect_s: float = 2.0
    recollect_max_s: float = 60.0


@dataclass
class _Element:
    """One task submitted as one element of one array."""

    claim: Claim
    chunk_id: str
    index: int
    array_id: str | None
    submitted: float
    running: bool = False
    missing_since: float | None = None


class SlurmDriver(RemoteHost):
    """A SLURM cluster's driver: arrays, squeue and markers; the lifecycle is
    :class:`RemoteHost`'s, the results settling :class:`Settler`'s."""

    thread_prefix = "slurm"
    backoff_min_s = 1.0

    def __init__(self, name: str, store_factory: Callable[[], Store], connect: Callable[[], SSHShell],
                 options: SlurmOptions, settings: SlurmSettings | None = None,
                 clock: Callable[[], float] = time.monotonic):
        settings = settings or SlurmSettings()
        # A cluster is not quarantined: it runs no code of ours that could break a protocol.
        super().__init__(name, store_factory, connect, lost_after_s=settings.lost_after_s,
                         backoff_max_s=settings.backoff_max_s, quarantine=Quarantine(clock=clock), clock=clock)
        self.options = options
        self.settings = settings
        self.settler = Settler(name, ResultsLimits(settings.max_results_mb << 20, settings.fetch_timeout_s),
                               recollect_s=settings.recollect_s, recollect_max_s=settings.recollect_max_s,
                               clock=clock)
        self.inflight: dict[str, _Element] = {}  # token -> element
        self._chunks: set[str] = set()  # chunk folders on the cluster not yet removed
        self._settled: list[str] = []  # tokens whose task folders go at the end of this poll
        self.array_size = 1000
        self.budget = options.max_in_flight
        self._blocked_until = 0.0
        self._blocked_for = 0.0
        self.cluster: Cluster | None = None

    # ----- lifecycle -------------------------------------------------------------

    def _drive(self, shell: SSHShell) -> None:
        """Poll until stopped; tasks on the cluster go on after (a restart
        collects them), unless the host was removed: then our arrays go."""
        self.cluster = Cluster(shell, self.options, self.host)
        self._start_session()
        while not self._stopping.is_set():
            self._poll()
            self._stopping.wait(self.options.poll_s)
        if self._retiring:
            self._cancel_everything()

    def _connect_failed(self, exc: Exception) -> None:
        if isinstance(exc, (HostKeyError, ClientKeyError, LoginRefused)):
            self.store.set_host_state(self.host, "error", str(exc))  # a person must fix it; shown as such
        else:
            super()._connect_failed(exc)

    def _session_failed(self, exc: Exception) -> None:
        if isinstance(exc, ClusterProblem):
            self._problem(exc)
        elif isinstance(exc, SlurmBusy):
            # The login node answered; SLURM's controller did not (maintenance, a restart).
            # Its arrays run on without it: the host is not lost, nothing is requeued,
            # and the session starts again after the usual wait, as a busy poll does.
            self._unreachable_since = None
            log.warning("host %s: %s", self.host, exc)
            self.store.set_host_state(self.host, "busy", f"{exc}; trying again", seen=True)
        else:
            super()._session_failed(exc)

    def _start_session(self) -> None:
        self.cluster.prepare()
        config = self.cluster.config()
        # Indexes go up to MaxArraySize - 1, so an array 0..m-1 may hold MaxArraySize tasks.
        self.array_size = max(1, config_int(config, "MaxArraySize") or 1001)
        self.budget = min(self.options.max_in_flight, config_int(config, "MaxSubmitJobs") or 10 ** 9)
        self._reconcile()
        self._reached()
        log.info("host %s: connected (arrays of up to %d, %d in flight at most)", self.host, self.array_size,
                 self.budget)

    def _problem(self, exc: ClusterProblem) -> None:
        """A setting a person must fix: shown on the host's row, and nothing is
        submitted there for a while (longer each time it happens again)."""
        log.warning("host %s: %s", self.host, exc)
        self._blocked_for = min(max(self.settings.blocked_s, self._blocked_for * 2), self.settings.blocked_max_s)
        self._blocked_until = self._clock() + self._blocked_for
        self.store.set_host_state(self.host, "error", str(exc), seen=True)

    # ----- one poll ------------------------------------------------------------------

    def _poll(self) -> None:
        self._cancel_unwanted()
        try:
            snapshot = self.cluster.poll(list(self.inflight))
        except SlurmBusy as exc:
            self.store.set_host_state(self.host, "busy", f"{exc}; trying again", seen=True)
            return
        finished = []
        for token, element in list(self.inflight.items()):
            if token in snapshot.done:
                if not self.settler.is_waiting(token):  # its results wait until this master can write them
                    finished.append(element)
            else:
                self._follow(element, snapshot)
        for element in finished:
            self._settle_finished(element, snapshot.done[element.claim.token])
        self._forget_settled()
        if self._clock() >= self._blocked_until:
            self._submit()
            if self._blocked_until <= self._clock():
                self._blocked_for = 0.0
        self._report()

    def _follow(self, element: _Element, snapshot: Snapshot) -> None:
        """An unfinished element: note that it runs, or judge it if it left SLURM."""
        seen = snapshot.elements.get((element.array_id, element.index))
        state = seen.state if seen else None
        if state in WAITING:
            element.missing_since = None
        elif state in RUNNING:
            element.missing_since = None
            if not element.running:
                element.running = True
                if not self.store.mark_running(element.claim.attempt_id, 0):
                    self._cancel([element])
        elif state in LOST:
            if state not in ("PREEMPTED", "NODE_FAIL", "BOOT_FAIL"):
                self.cluster.cancel([f"{element.array_id}_{element.index}"])  # requeued: it must not run later
            self._end(element, AttemptOutcome.HOST_LOST, f"{self.host}: {LOST[state]}; it will run again")
        elif state in ENDED_BY_SLURM:
            outcome = ENDED_BY_SLURM[state]
            why = ("over its time limit" if outcome is AttemptOutcome.TIMED_OUT
                   else "stopped by SLURM: over its memory limit (--mem)")
            self._end(element, outcome, f"{self.host}: {why}\n{self.cluster.stderr_tail(element.claim.token)}")
        else:
            # Gone from SLURM's queue (or ended there) without a done marker.
            # On a shared file system the marker may show a little late.
            now = self._clock()
            if element.missing_since is None:
                element.missing_since = now
            elif now - element.missing_since >= max(2 * self.options.poll_s, 5.0):
                if state == "FAILED":
                    self._end(element, AttemptOutcome.EXITED, f"{self.host}: SLURM ended it (FAILED) before it "
                              f"finished; see {self.cluster.layout.chunk(element.chunk_id)}/slurm-{element.index}.out")
                else:
                    self._end(element, AttemptOutcome.HOST_LOST,
                              f"{self.host}: left SLURM's queue ({state or 'no longer listed'}) unfinished; "
                              "it will run again")

    def _end(self, element: _Element, outcome: AttemptOutcome, message: str | None) -> None:
        self.inflight.pop(element.claim.token, None)
        self.settler.drop(element.claim.token)  # its results may have waited here: its job is free again
        self.store.finish_attempt(element.claim.attempt_id, outcome, message=message)
        self._settled.append(element.claim.token)

    # ----- cancelling -------------------------------------------------------------------

    def _cancel_unwanted(self) -> None:
        unwanted = [e for e in self.inflight.values() if not self.store.attempt_is_wanted(e.claim.attempt_id)]
        if unwanted:
            self._cancel(unwanted)

    def _cancel(self, elements: list[_Element]) -> None:
        """scancel whole arrays where every element goes, single elements otherwise."""
        by_array: dict[str, set[int]] = {}
        for e in elements:
            by_array.setdefault(e.array_id, set()).add(e.index)
        ids = []
        for array_id, indexes in by_array.items():
            total = {e.index for e in self.inflight.values() if e.array_id == array_id}
            ids += [array_id] if indexes >= total else [f"{array_id}_{i}" for i in sorted(indexes)]
        self.cluster.cancel(ids)
        for e in elements:
            self._end(e, AttemptOutcome.CANCELLED, "cancelled by the user")

    def _cancel_everything(self) -> None:
        """The host was removed: our arrays there go; their tasks run elsewhere."""
        arrays = sorted({e.array_id for e in self.inflight.values() if e.array_id})
        self.cluster.cancel(arrays)
        for e in list(self.inflight.values()):
            self._end(e, AttemptOutcome.HOST_LOST, f"host {self.host} was removed; the task will run elsewhere")
        self._forget_settled()

    # ----- results ----------------------------------------------------------------------

    def _settle_finished(self, element: _Element, finished: Finished) -> None:
        claim = element.claim
        token = claim.token
        code, wrapper_error = finished.exit_code, finished.wrapper_error
        if wrapper_error:
            self._end(element, AttemptOutcome.HOST_LOST, f"{self.host}: {wrapper_error}; it will run elsewhere")
            self._problem(ClusterProblem(wrapper_error, _wrapper_fix(wrapper_error, self.host)))
            return
        outcome = AttemptOutcome.SUCCEEDED if code == 0 else AttemptOutcome.EXITED
        message = None if code == 0 else f"{describe_exit(code) if code is not None else 'no exit code'}\n" \
                                         f"{self.cluster.stderr_tail(token)}".strip()
        offer = Offer(self.cluster.results_path(token) if finished.results_size is not None else None,
                      finished.results_sha, finished.results_size)
        try:
            settled = self.settler.settle(self.store, self.cluster.shell, claim, offer, outcome, exit_code=code,
                                          message=message)
        except HostMisbehaved as exc:
            # Our own wrapper packs beside the task on the cluster: what it packed
            # wrong, the task made (a link named results); the task fails, the cluster is not to blame.
            self._end(element, AttemptOutcome.REJECTED, f"refused the results from {self.host}: {exc}")
            return
        if settled:
            self.inflight.pop(token, None)
            self._settled.append(token)

    def _forget_settled(self) -> None:
        """Remove the remote folders of settled tasks and of arrays with none left, in one call."""
        live = {e.chunk_id for e in self.inflight.values()}
        done = [c for c in self._chunks if c not in live]
        if done or self._settled:
            self.cluster.forget(self._settled, done)
            self._chunks.difference_update(done)
            self._settled = []

    # ----- submitting ---------------------------------------------------------------------

    def _submit(self) -> None:
        while not self._stopping.is_set():
            room = self.budget - len(self.inflight)
            if room <= 0:
                return
            # Not for jobs whose results this master cannot write now.
            claims = self.store.claim(self.host, min(room, self.array_size), self.settler.blocked_jobs)
            if not claims:
                return
            by_job: dict[int, list[Claim]] = {}
            for claim in claims:
                by_job.setdefault(claim.job_seq, []).append(claim)
            groups = list(by_job.values())
            for n, group in enumerate(groups):
                try:
                    self._submit_chunk(group)
                except (ClusterProblem, SlurmBusy, OSError) as exc:
                    for rest in groups[n:]:
                        for claim in rest:
                            self.store.finish_attempt(claim.attempt_id, AttemptOutcome.HOST_LOST,
                                                      message=f"{self.host}: could not submit: {exc}")
                    if isinstance(exc, ClusterProblem):
                        self._problem(exc)
                    elif isinstance(exc, SlurmBusy):
                        self.store.set_host_state(self.host, "busy", str(exc), seen=True)
                        self._blocked_until = self._clock() + self.options.poll_s
                    else:
                        self._problem(ClusterProblem(str(exc), "free space under --remote-root on the cluster"))
                    if isinstance(exc, (LinkClosed, EOFError)):
                        raise
                    return

    def _submit_chunk(self, claims: list[Claim]) -> None:
        first = claims[0]
        self.cluster.ensure_job_folder(Path(first.archive_path), archive_sha(first))
        chunk_id = secrets.token_hex(6)
        array_id = self.cluster.submit(chunk_id, claims)
        now = self._clock()
        self._chunks.add(chunk_id)
        for index, claim in enumerate(claims):
            self.inflight[claim.token] = _Element(claim, chunk_id, index, array_id, now)
        log.info("host %s: submitted %d tasks of job %s as array %s", self.host, len(claims), first.job_id,
                 array_id)

    # ----- after a (re)start --------------------------------------------------------------

    def _reconcile(self) -> None:
        """Rebuild the picture of what runs there from the cluster's own files."""
        self.inflight.clear()
        self.settler.forget_waiting()
        self._chunks = set()
        opened = {a.token: a for a in self.store.open_attempts(self.host)}
        placed = {}
        chunk_tokens = self.cluster.chunk_tokens()
        for chunk_id, tokens in chunk_tokens.items():
            for index, token in enumerate(tokens):
                placed[token] = (chunk_id, index)
        snapshot = self.cluster.poll(list(opened), with_chunks=True)
        arrays = dict(snapshot.chunks)
        for element in snapshot.elements.values():
            if element.name.startswith("sc-") and element.name[3:] in chunk_tokens:
                arrays.setdefault(element.name[3:], element.array_id)
        now = self._clock()
        for token, attempt in opened.items():
            chunk_id, index = placed.get(token, (None, 0))
            array_id = arrays.get(chunk_id)
            if chunk_id is None or (array_id is None and token not in snapshot.done):
                self.store.finish_attempt(attempt.attempt_id, AttemptOutcome.HOST_LOST,
                                          message=f"{self.host}: never reached SLURM; it will run again")
                continue
            self.inflight[token] = _Element(self.store.claim_for(attempt.attempt_id), chunk_id, index, array_id, now)
            self._chunks.add(chunk_id)
        # Arrays of settled tasks (cancelled or requeued while we were away) must not run on.
        stale = [a for c, a in arrays.items() if c not in self._chunks]
        if stale:
            self.cluster.cancel(stale)
        leftovers = [t for t in placed if t not in self.inflight]
        self.cluster.forget(leftovers, [c for c in chunk_tokens if c not in self._chunks])

    # ----- what the host's row shows -----------------------------------------------------

    def _report(self) -> None:
        now = self._clock()
        pending = [e for e in self.inflight.values() if not e.running]
        info = {"kind": "slurm", "in_flight": len(self.inflight), "pending": len(pending),
                "running": len(self.inflight) - len(pending),
                "oldest_pending_s": round(max((now - e.submitted for e in pending), default=0.0), 1),
                "max_array_size": self.array_size, "budget": self.budget}
        blocked = self._blocked_until > now
        if not blocked:
            self.store.set_host_state(self.host, "ready", None, info=info, seen=True)
        else:
            current = self.store.host(self.host)
            self.store.set_host_state(self.host, current.state, current.reason, info=info, seen=True)


def _wrapper_fix(error: str, host: str) -> str:
    if "interpreter" in error:
        return (f"install Python on the compute nodes or name one that is there with --python "
                f"(then 'sparecycles hosts remove {host}' and add it again)")
    if "--setup" in error:
        return "correct --setup so that its lines work inside a batch job too"
    return "check the task folder under --remote-root on the cluster"
