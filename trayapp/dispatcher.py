"""The master's dispatcher: claims queued tasks and runs them on this machine's slots.

One dispatcher runs per SpareCycles home (a lock file says which process it
is). It is a single-threaded event loop: it sleeps until a task process exits
(pidfd), a time limit falls due, or the poll interval passes (new jobs and
cancellations arrive through the queue, which other processes write), and it
never holds a task only in memory: the queue always says where every task is.

Crash recovery is ordinary code (:meth:`Dispatcher.recover`): on start-up every
attempt the queue still shows in flight on this host is settled explicitly:
adopted if its process still runs, collected if it finished meanwhile, put back
in the queue (without using up a retry) if it vanished.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from trayapp.config import Config
from trayapp.home import Home
from trayapp.proctree import kill_tree, processes_with_marker, same_process
from trayapp.results import collect, collected_by, results_path
from trayapp.runner import LaunchSettings, TaskProcess, prepare, start, tail_of
from trayapp.status import AttemptOutcome, TaskStatus
from trayapp.store import OpenAttempt, Store

log = logging.getLogger(__name__)

LOCAL_HOST = "local"


class DispatcherLock:
    """Makes sure only one dispatcher runs tasks for one home."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> int | None:
        """The pid of the running dispatcher, or None if there is none."""
        if self.acquire():
            self.release()
            return None
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return -1


@dataclass
class DispatcherStats:
    started: int = 0
    succeeded: int = 0
    failed: int = 0


class Dispatcher:
    def __init__(self, store: Store, home: Home, config: Config, *, host: str = LOCAL_HOST):
        self.store = store
        self.home = home
        self.config = config
        self.host = host
        self.slots = config.effective_slots
        self.launch = LaunchSettings(python=config.task_interpreter, nice=config.nice)
        self.running: dict[int, TaskProcess] = {}
        self.stats = DispatcherStats()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    # ----- lifecycle ----------------------------------------------------------

    def request_stop(self, *_args) -> None:
        """Safe to call from a signal handler: the loop notices at once."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self, *, until_idle: float | None = None) -> DispatcherStats:
        """Run until stopped, or until nothing was queued or running for ``until_idle`` s."""
        self.recover()
        idle_since = time.monotonic()
        try:
            while not self._stopping:
                self.step()
                if self.running:
                    idle_since = time.monotonic()
                elif until_idle is not None and time.monotonic() - idle_since >= until_idle:
                    break
                self._wait()
        finally:
            self.shutdown()
        return self.stats

    def step(self) -> None:
        self._reap()
        self._enforce()
        if not self._stopping:
            self._fill()

    def shutdown(self) -> None:
        """Stop every running task and put it back in the queue: a stopped
        dispatcher must not leave work running unobserved on this PC."""
        for attempt_id, proc in list(self.running.items()):
            proc.kill()
            self._discard(proc)
            self.store.finish_attempt(attempt_id, AttemptOutcome.HOST_LOST,
                                      message="the dispatcher was stopped; the task will run again")
        self.running.clear()

    # ----- the loop's parts ---------------------------------------------------

    def _wait(self) -> None:
        timeout = self.config.poll_interval_s
        now = time.monotonic()
        for proc in self.running.values():
            if proc.deadline is not None:
                timeout = min(timeout, max(0.0, proc.deadline - now))
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            polled = False
            for proc in self.running.values():
                if proc.pidfd is not None:
                    selector.register(proc.pidfd, selectors.EVENT_READ)
                else:
                    polled = True
            if polled:
                timeout = min(timeout, 0.05)
            for key, _ in selector.select(timeout):
                if key.fd == self._wake_r:
                    os.read(self._wake_r, 1024)

    def _fill(self) -> None:
        free = self.slots - len(self.running)
        for claim in self.store.claim(self.host, free):
            try:
                run_dir = prepare(claim, self.home.runs_dir, self.home.unpacked_dir)
                self.store.set_run_dir(claim.attempt_id, str(run_dir))
                proc = start(claim, run_dir, self.launch)
            except Exception as exc:  # noqa: BLE001 - whatever broke, the task must not vanish
                log.exception("could not start task %s/%s", claim.job_id, claim.idx)
                self.store.finish_attempt(claim.attempt_id, AttemptOutcome.REJECTED,
                                          message=f"could not start on {self.host}: {exc}")
                continue
            self.running[claim.attempt_id] = proc
            self.stats.started += 1
            log.info("started task %s/%s (pid %s)", claim.job_id, claim.idx, proc.pid)
            if not self.store.mark_running(claim.attempt_id, proc.pid, proc.created):
                self._cancel(proc)  # cancelled between claim and start

    def _reap(self) -> None:
        for attempt_id, proc in list(self.running.items()):
            if proc.has_ended():
                del self.running[attempt_id]
                self._settle_finished(proc)

    def _enforce(self) -> None:
        now = time.monotonic()
        for attempt_id, proc in list(self.running.items()):
            if not self.store.attempt_is_wanted(attempt_id):
                del self.running[attempt_id]
                self._cancel(proc)
            elif proc.deadline is not None and now >= proc.deadline:
                proc.timed_out = True
                proc.kill()
                del self.running[attempt_id]
                self._settle_finished(proc)

    def _cancel(self, proc: TaskProcess) -> None:
        self.running.pop(proc.claim.attempt_id, None)
        proc.kill()
        self._discard(proc)
        self.store.finish_attempt(proc.claim.attempt_id, AttemptOutcome.CANCELLED, message="cancelled by the user")

    def _settle_finished(self, proc: TaskProcess) -> None:
        claim = proc.claim
        code = proc.exit_code()
        if proc.timed_out:
            outcome = AttemptOutcome.TIMED_OUT
            message = f"stopped after its time limit of {claim.time_limit_s:g} s"
        elif code == 0:
            outcome, message = AttemptOutcome.SUCCEEDED, None
        elif code is None:
            outcome, message = AttemptOutcome.HOST_LOST, "the task's process vanished without an exit code"
        else:
            outcome = AttemptOutcome.EXITED
            message = _describe_exit(code)
        if outcome is not AttemptOutcome.SUCCEEDED and outcome is not AttemptOutcome.HOST_LOST:
            tail = proc.stderr_tail()
            if tail:
                message = f"{message}; stderr ends with:\n{tail}"
        if outcome is AttemptOutcome.SUCCEEDED:
            # Results first, then the queue: a crash in between is healed on
            # restart by collect()'s marker, never by running the task again.
            collect(claim, proc.run_dir, exit_code=code, host=self.host)
            self.stats.succeeded += 1
        new = self.store.finish_attempt(claim.attempt_id, outcome, exit_code=code, message=message)
        log.info("task %s/%s %s%s", claim.job_id, claim.idx, outcome.value,
                 f" ({message.splitlines()[0]}), now {new.value if new else 'settled'}" if message else "")
        if new is TaskStatus.FAILED:
            collect(claim, proc.run_dir, exit_code=code, host=self.host)  # logs and partial results
            self.stats.failed += 1
        self._discard(proc)

    def _discard(self, proc: TaskProcess) -> None:
        proc.close()
        shutil.rmtree(proc.run_dir, ignore_errors=True)

    # ----- crash recovery -------------------------------------------------------

    def recover(self) -> None:
        """Settle every attempt a previous dispatcher left in flight on this host."""
        for attempt in self.store.open_attempts(self.host):
            self._recover_one(attempt)

    def _recover_one(self, attempt: OpenAttempt) -> None:
        claim = self.store.claim_for(attempt.attempt_id)
        run_dir = Path(attempt.run_dir) if attempt.run_dir else None
        wanted = self.store.attempt_is_wanted(attempt.attempt_id)
        alive = same_process(attempt.pid, attempt.pid_created)
        if alive is not None and run_dir is not None:
            remaining = None
            if claim.time_limit_s:
                remaining = claim.time_limit_s - (time.time() - attempt.started)
            proc = TaskProcess(claim, run_dir, attempt.pid, attempt.pid_created,
                               time.monotonic() + remaining if remaining is not None else None)
            if not wanted:
                self._cancel(proc)
                return
            log.info("adopting task %s/%s (pid %s), still running", claim.job_id, claim.idx, attempt.pid)
            self.running[attempt.attempt_id] = proc
            return
        if collected_by(results_path(claim)) == attempt.attempt_id:
            self.store.finish_attempt(attempt.attempt_id, AttemptOutcome.SUCCEEDED, exit_code=0)
            if run_dir:
                shutil.rmtree(run_dir, ignore_errors=True)
            return
        if run_dir is not None and (run_dir / "exitcode").exists():
            log.info("task %s/%s finished while no dispatcher ran; collecting", claim.job_id, claim.idx)
            proc = TaskProcess(claim, run_dir, attempt.pid or 0, attempt.pid_created or 0.0, None)
            self._settle_finished(proc)
            return
        # It never started, or its process died with the machine: no exit code,
        # no result. Make sure nothing of it still runs, then queue it again.
        for straggler in processes_with_marker(claim.token):
            kill_tree(straggler.pid, None, claim.token)
        if run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        self.store.finish_attempt(attempt.attempt_id, AttemptOutcome.HOST_LOST if wanted else AttemptOutcome.CANCELLED,
                                  message="the dispatcher stopped before the task finished; it will run again")


def _describe_exit(code: int) -> str:
    # sh reports a task killed by signal N as 128 + N.
    if code > 128 and code - 128 < 65:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return f"killed by {name} (exit code {code})"
    return f"exit code {code}"


def start_background_dispatcher(home: Home, python: str, log_file: Path, until_idle: float = 60.0) -> int | None:
    """Start a detached dispatcher for ``home`` unless one runs; returns its pid."""
    lock = DispatcherLock(home.dispatcher_lock)
    if lock.holder() is not None:
        return None
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        # The environment (SPARECYCLES_HOME among it) passes on unchanged, so the
        # child serves the same home as its caller.
        proc = subprocess.Popen([python, "-m", "trayapp", "master", "--until-idle", str(until_idle),
                                 "--quiet-if-running"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    return proc.pid
