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

import contextlib
import logging
import secrets
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trayapp.master.results import collect, collected_by, results_path
from trayapp.master.slurm.cluster import Cluster, ClusterProblem, Finished, SlurmBusy, Snapshot
from trayapp.master.slurm.options import SlurmOptions
from trayapp.master.slurm.script import archive_sha
from trayapp.master.slurm.squeue import ENDED_BY_SLURM, LOST, RUNNING, WAITING, config_int
from trayapp.master.store import Claim, Store
from trayapp.run.posix import describe_exit
from trayapp.status import AttemptOutcome, TaskStatus
from trayapp.wire.archive import UnsafeArchiveError, unpack
from trayapp.wire.links import LinkClosed
from trayapp.wire.ssh import ClientKeyError, HostKeyError, LoginRefused, SSHShell

log = logging.getLogger(__name__)


@dataclass
class SlurmSettings:
    lost_after_s: float = 600.0  # unreachable this long: its tasks run elsewhere
    backoff_max_s: float = 60.0
    blocked_s: float = 60.0  # after a problem a person must fix, submit nothing for this long (doubling)
    blocked_max_s: float = 900.0
    max_results_mb: int = 2048


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


class SlurmDriver(threading.Thread):
    def __init__(self, name: str, store_factory: Callable[[], Store], connect: Callable[[], SSHShell],
                 options: SlurmOptions, settings: SlurmSettings | None = None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(name=f"slurm-{name}", daemon=True)
        self.host = name
        self._store_factory = store_factory
        self._connect = connect
        self.options = options
        self.settings = settings or SlurmSettings()
        self._clock = clock
        self._stopping = threading.Event()
        self._retiring = False
        self.inflight: dict[str, _Element] = {}  # token -> element
        self._chunks: set[str] = set()  # chunk folders on the cluster not yet removed
        self._settled: list[str] = []  # tokens whose task folders go at the end of this poll
        self.array_size = 1000
        self.budget = options.max_in_flight
        self._blocked_until = 0.0
        self._blocked_for = 0.0
        self._unreachable_since: float | None = None
        self.store: Store | None = None
        self.cluster: Cluster | None = None
        self.connected = threading.Event()

    def stop(self, *, retire: bool = False) -> None:
        """Stop driving; tasks on the cluster go on (a restart collects them).
        ``retire``: the host was removed, so our arrays there are cancelled."""
        self._retiring = self._retiring or retire
        self._stopping.set()

    def is_connected(self) -> bool:
        return self.connected.is_set()

    # ----- lifecycle -------------------------------------------------------------

    def run(self) -> None:
        self.store = self._store_factory()
        backoff = 1.0
        try:
            while not self._stopping.is_set():
                shell = None
                try:
                    shell = self._connect()
                    self.cluster = Cluster(shell, self.options, self.host)
                    self._start_session()
                    backoff = 1.0
                    while not self._stopping.is_set():
                        self._poll()
                        self._stopping.wait(self.options.poll_s)
                    if self._retiring:
                        self._cancel_everything()
                except ClusterProblem as exc:
                    self._problem(exc)
                except (HostKeyError, ClientKeyError, LoginRefused) as exc:
                    self.store.set_host_state(self.host, "error", str(exc))
                except (LinkClosed, OSError, EOFError) as exc:
                    self._unreachable(str(exc))
                except Exception as exc:  # noqa: BLE001 - a bug must not stop a host for good
                    log.exception("host %s: unexpected error", self.host)
                    self._unreachable(f"internal error ({exc}); see the log")
                finally:
                    self.connected.clear()
                    if shell is not None:
                        shell.close()
                if not self._stopping.is_set():
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, self.settings.backoff_max_s)
        finally:
            self.store.close()

    def _start_session(self) -> None:
        self.cluster.prepare()
        config = self.cluster.config()
        # Indexes go up to MaxArraySize - 1, so an array 0..m-1 may hold MaxArraySize tasks.
        self.array_size = max(1, config_int(config, "MaxArraySize") or 1001)
        self.budget = min(self.options.max_in_flight, config_int(config, "MaxSubmitJobs") or 10 ** 9)
        self._unreachable_since = None
        self._reconcile()
        self.connected.set()
        log.info("host %s: connected (arrays of up to %d, %d in flight at most)", self.host, self.array_size,
                 self.budget)

    def _unreachable(self, reason: str) -> None:
        now = self._clock()
        if self._unreachable_since is None:
            self._unreachable_since = now
        self.store.set_host_state(self.host, "unreachable", reason)
        if now - self._unreachable_since >= self.settings.lost_after_s:
            self.store.lose_open_attempts(self.host,
                                          f"{self.host}: unreachable for {now - self._unreachable_since:.0f} s")
            self.inflight.clear()

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
        if collected_by(results_path(claim)) == claim.attempt_id:
            self._end(element, AttemptOutcome.SUCCEEDED if code == 0 else AttemptOutcome.EXITED, None)
            return
        outcome = AttemptOutcome.SUCCEEDED if code == 0 else AttemptOutcome.EXITED
        message = None if code == 0 else f"{describe_exit(code) if code is not None else 'no exit code'}\n" \
                                         f"{self.cluster.stderr_tail(token)}".strip()
        try:
            self._collect(claim, finished, outcome, message)
        except OSError as exc:
            # This master cannot write the results (disk full, read-only): they
            # wait on the cluster and are collected at a later poll.
            self.store.note_running_task(claim.attempt_id, f"cannot write the results to {claim.results_dir}: "
                                         f"{exc}; they wait on {self.host} until that works")
            return
        self.inflight.pop(token, None)
        self._settled.append(token)

    def _collect(self, claim: Claim, finished: Finished, outcome: AttemptOutcome, message: str | None) -> None:
        """Fetch, check and move the results into place, then record the outcome."""
        code = finished.exit_code
        with contextlib.ExitStack() as scratch:
            unpacked, problem = self._fetch_results(claim, finished.results_size, scratch)
            if problem:
                outcome, message = AttemptOutcome.REJECTED, problem
            if outcome is AttemptOutcome.SUCCEEDED:
                collect(claim, unpacked, exit_code=code, host=self.host)
            new = self.store.finish_attempt(claim.attempt_id, outcome, exit_code=code, message=message)
            if new is TaskStatus.FAILED and unpacked is not None and outcome is not AttemptOutcome.SUCCEEDED:
                collect(claim, unpacked, exit_code=code, host=self.host)  # its logs and partial results

    def _fetch_results(self, claim: Claim, size: int | None,
                       scratch: contextlib.ExitStack) -> tuple[Path | None, str | None]:
        """Fetch and unpack a task's results archive with the checks slaves' get
        (no links, devices, absolute or ``..`` names; a size cap)."""
        if size is None:
            return None, f"{self.host} finished the task but wrote no results archive"
        if size > self.settings.max_results_mb << 20:
            return None, (f"the task's results on {self.host} are {size >> 20} MB, over the "
                          f"{self.settings.max_results_mb} MB limit (max_results_mb)")
        root = Path(claim.results_dir)
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix=".incoming-", dir=root)))
        self.cluster.fetch_results(claim.token, tmp / "results.tar")
        try:
            unpack(tmp / "results.tar", tmp / "unpacked")
        except UnsafeArchiveError as exc:
            return None, f"refused the results archive from {self.host}: {exc}"
        except (tarfile.TarError, EOFError) as exc:
            return None, f"the results archive from {self.host} is damaged: {exc}"
        return tmp / "unpacked", None

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
            claims = self.store.claim(self.host, min(room, self.array_size))
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
