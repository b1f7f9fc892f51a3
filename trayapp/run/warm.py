"""Warm starts: a task forked from an interpreter that has already imported its job's modules.

A small Brian task spends most of a cold start importing Brian; a sweep pays
that once per task, on every PC. :class:`WarmRunner` wraps the POSIX runner
and keeps, per (master's job, slot), one warm parent
(:mod:`trayapp.run.warmparent`, :mod:`trayapp.run.forkserver`) that has
imported the modules the launch names (``Launch.warm``: the main script's
top-level imports and the manifest's ``warm`` list, found by
:mod:`trayapp.run.warmmodules`), and forks each task from it. A forked task
is held in exactly as a cold one: its own session, its own cgroup (it is
moved in before it runs its first instruction) with the same caps, the
rlimits the cgroup does not hold, the same sandbox binds, the same kills;
the parent's memory is counted against the slot (the task's cgroup gets the
cap less what the parent holds). The task cannot tell it was forked
(:mod:`trayapp.run.forkserver` lists what it sets up). Where the parent has a
cgroup, the processes of its sandbox are found from that cgroup's member list
(a few lines), never by a scan of every process's ``/proc`` entry, which was
most of the slave's CPU per trivial task.

Cold starts remain whenever warming does not work, with the reason logged:

- the first task of a (job, slot) starts cold while its warm parent imports
  in the background (a start never waits for an import: a returning user's
  kill must not wait behind one);
- a module fails to import in the parent, or starts a thread there: every
  task of that job on this slot starts cold (said once);
- anything about a fork fails (the parent died, the child could not be
  found from outside or moved into its cgroup): that task starts cold, and the
  parent is ended (the next task starts a new one).

A warm parent ends when the user returns (preemption: it comes back with
the next task), when another job takes its slot, when it has been idle for
:data:`IDLE_S`, when the PC runs short of memory, and with the runner.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import psutil

from trayapp.run.caps import TaskCaps
from trayapp.run.cgroup import TaskCgroups
from trayapp.run.posix import PosixRunner, PosixTask
from trayapp.run.proctree import kill_tree, same_process
from trayapp.run.runner import Launch
from trayapp.run.taskfiles import remove_tree
from trayapp.run.warmparent import EXIT_REPORT_TIMEOUT_S, WarmFailed, WarmParent, warm_environment

log = logging.getLogger(__name__)

KILLED_REPORT_TIMEOUT_S = 1.0  # a killed task's parent reports at once; a kill (preemption) waits no longer
IDLE_S = 120.0  # a job whose tasks stopped coming no longer holds the slot's memory
LOW_MEMORY_FRACTION = 0.1  # below this share of the PC's memory available, idle parents end
_WATCH_EVERY_S = 5.0


class WarmTask(PosixTask):
    """A task forked from a warm parent: a :class:`PosixTask` (same kills, same
    identity for the spool) whose exit code comes from the parent, and whose
    folders go back from the parent's box to the task's folder when it ends."""

    def __init__(self, launch: Launch, pid: int, created: float | None, parent: WarmParent):
        super().__init__(launch, pid, created)
        self.parent = parent
        # Measured there by the disk watch: the whole bound folder, as the task may write beside its own.
        self.moved_files = (parent.work,)
        # Ends what the task left running once it is over (set by the runner: its cgroup, or its session).
        self.end_leftovers: Callable[[], None] = lambda: None
        self._code: int | None = None
        self._settled = False
        self._gone_since: float | None = None

    def has_ended(self) -> bool:
        """Never blocks: the engine's loop (and with it every master's tasks and a
        returning user's preemption) must not wait on a parent that runs master code.
        The task is gone: its exit report is read if it is there; a parent silent
        for EXIT_REPORT_TIMEOUT_S after that means no report (and the parent ends)."""
        if self._settled:
            return True
        if same_process(self.pid, self.created) is not None:
            return False
        code = self.parent.wait_exit(0)
        if code is None and self.parent.alive():
            now = time.monotonic()
            self._gone_since = self._gone_since or now
            if now - self._gone_since < EXIT_REPORT_TIMEOUT_S:
                return False
        self._settle(code)
        return True

    def wait_fd(self) -> int | None:
        # Gone, its report not read yet: the engine waits on the parent's channel (its
        # pidfd would stay readable, and the engine's loop would spin until the report).
        if self._gone_since is not None and not self._settled and self.parent.chan is not None:
            return self.parent.chan.fileno()
        return super().wait_fd()

    def exit_code(self) -> int | None:
        self.has_ended()
        return self._code

    def kill_whole_tree(self) -> None:
        kill_tree(self.pid, self.created, self.token)
        if not self._settled:
            # Killed: its report follows at once from an honest parent; a silent one is ended.
            self._settle(self.parent.wait_exit(KILLED_REPORT_TIMEOUT_S) if self.parent.alive() else None)

    def _settle(self, code: int | None) -> None:
        """The task is over: its folders back where the engine packs them, its exit code written."""
        self._settled, self._code = True, code
        parent = self.parent
        if code is None:  # the parent did not report: nothing in its sandbox can be trusted to be over
            parent.kill()
        # Nothing the task started outlives it: a process left behind would go on using the
        # slot, and could race the clean-up of its folder (swap a folder for a link).
        self.end_leftovers()
        _move_back(parent, self.launch)
        if code is not None:
            (self.launch.task_dir / "exitcode").write_text(f"{code}\n")
        parent.busy = False
        parent.idle_since = time.monotonic()
        if parent.ended is not None:  # ended while this task was in it: its box can go now
            parent.ended()


def _move_in(parent: WarmParent, launch: Launch) -> None:
    os.rename(launch.work_dir, parent.work / "task")
    try:
        # Over the empty folder a task that had none may have left (a rename replaces an
        # empty folder; one a task left files in fails it: the next task does not see them).
        os.rename(launch.task_dir / "tmp", parent.work / "tmp")
    except FileNotFoundError:
        pass  # no scratch folder of its own: TMPDIR is not set for it either


def _move_back(parent: WarmParent, launch: Launch) -> None:
    """Renames only (no stat, no mkdir: a few syscalls of each task's path)."""
    for inside, outside in ((parent.work / "task", launch.work_dir), (parent.work / "tmp", launch.task_dir / "tmp")):
        try:
            os.rename(inside, outside)
        except FileNotFoundError:
            pass  # never moved in (a failed start), or moved back already
        except OSError as exc:
            log.warning("could not move task %s's folder back from its warm parent: %s", launch.token, exc)


class WarmRunner(PosixRunner):
    """The POSIX runner with warm parents (see the module's docstring)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._parents: dict[tuple[str, int], WarmParent] = {}
        self._cold_reasons: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()
        self._count = 0
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None  # started with the first parent

    def start(self, launch: Launch) -> PosixTask:
        key = (launch.warm_key, launch.slot)
        with self._lock:
            # One parent per slot: whatever starts there now, another job's parent (perhaps
            # another master's) does not stay beside it.
            for other in [k for k in self._parents if k[1] == launch.slot and k != key]:
                self._end(other)
            if not launch.warm:
                return super().start(launch)
            parent = self._parent_for(key, launch)
            if parent is None or not parent.poll_ready():
                return super().start(launch)
            try:
                return self._fork(parent, launch)
            except Exception as exc:  # noqa: BLE001 - a parent running master code must never end the slave
                log.warning("task %s starts cold: forking it from its warm parent failed (%s)", launch.token, exc)
                _move_back(parent, launch)
                self._end(key)
                return super().start(launch)

    def kill_at_once(self, handles: Iterable[PosixTask]) -> None:
        super().kill_at_once(handles)
        # The user came back (or the slave stops): the parents' memory is the user's
        # again. Not waited for: the engine's thorough kills follow.
        with self._lock:
            for key in list(self._parents):
                self._end(key, wait=False)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for key in list(self._parents):
                self._end(key)
        super().close()

    def parents(self) -> list[WarmParent]:
        """The living warm parents (for tests and the bench)."""
        with self._lock:
            return list(self._parents.values())

    # ----- internals -------------------------------------------------------------------

    def _parent_for(self, key: tuple[str, int], launch: Launch) -> WarmParent | None:
        if key in self._cold_reasons:
            return None
        parent = self._parents.get(key)
        if parent is not None:
            parent.poll_ready()  # what it reported since: ready, or why it cannot be
            if parent.failure:
                self._give_up(key, parent, parent.failure)
                return None
            if parent.busy or (parent.ready and not parent.alive()):
                # A task of the slot still in it (cannot be: nothing of it is trusted),
                # or it ended (killed after a task it did not report): a new one.
                self._end(key)
                parent = None
        if parent is None:
            self._count += 1
            boxes = launch.task_dir.parent.parent / "warm"
            if self._count == 1:
                _remove_abandoned_boxes(boxes)
            box = boxes / f"{os.getpid()}-{self._count}"
            parent = WarmParent(launch.warm_key, launch.slot, box, launch.argv[0], launch.warm)
            procs = self.cgroups.prepare(parent.token) if self.cgroups is not None else None
            # It imports master code (the job's modules, packages it asked for): held to
            # the caps of the job's tasks, as a task is: by its cgroup where the
            # controllers are, by rlimits for what they do not hold (none, on a PC
            # whose cgroups have no memory or pids controller).
            # Its box's disk use is watched with its task's (moved_files), not capped here:
            # a task's disk cap follows the free space, and a fork only lowers rlimits.
            caps = TaskCaps(launch.memory_mb, launch.max_processes, None)
            if procs is not None:
                caps = self.cgroups.limit(parent.token, caps)
                parent.sandbox_pids = lambda token=parent.token: self.cgroups.members(token)
            parent.start(launch, self.confinement, cgroup_procs=procs, caps=caps,
                         spawn=lambda popen: self._starts.run(launch.nice, popen))
            self._parents[key] = parent
            if self._watch is None:
                self._watch = threading.Thread(target=self._watch_idle, name="warm-parents", daemon=True)
                self._watch.start()
            log.info("warming up %s for job slot %s: importing %s", parent.box.name, launch.slot,
                     ", ".join(launch.warm))
            return None  # this task starts cold; the next ones fork once it is ready
        return parent

    def _give_up(self, key: tuple[str, int], parent: WarmParent, why: str) -> None:
        log.warning("tasks of job %s on slot %s start cold: %s", key[0], key[1], why)
        self._cold_reasons[key] = why
        self._end(key)

    def _end(self, key: tuple[str, int], *, wait: bool = True) -> None:
        """End the key's parent; its box goes once no task's folder is in it."""
        parent = self._parents.pop(key, None)
        if parent is None:
            return
        if self.cgroups is not None:
            self.cgroups.kill(parent.token)
        parent.kill(wait=wait)

        def remove() -> None:
            try:
                parent.remove_box()
            except Exception:  # noqa: BLE001 - never in the way of a kill or a start; the next start retries
                log.exception("could not remove warm box %s", parent.box)
            self._release(parent.token)

        if parent.busy:
            parent.ended = remove
        else:
            remove()

    def _fork(self, parent: WarmParent, launch: Launch) -> WarmTask:
        procs = self.cgroups.prepare(launch.token) if self.cgroups is not None else None
        caps = TaskCaps(launch.memory_mb, launch.max_processes, launch.disk_mb)
        limits = self.cgroups.limit(launch.token, self._less_parent(caps, parent)) if procs is not None else caps
        _move_in(parent, launch)
        parent.busy = True
        try:
            with open(launch.task_dir / "stdout.txt", "wb") as out, open(launch.task_dir / "stderr.txt", "wb") as err:
                host_pid, _ = parent.fork({"argv": list(launch.argv), "env": warm_environment(
                    launch, parent.box, self.confinement), "cwd": str(parent.work / "task"),
                    "limits": _rlimits(limits, sandboxed=self.confinement.sandboxed)}, out.fileno(), err.fileno())
            try:
                created = psutil.Process(host_pid).create_time()
            except psutil.Error as exc:  # not an OSError: the callers' fallbacks would miss it
                raise WarmFailed(f"the forked task vanished before it was held ({exc})") from None
            task = WarmTask(launch, host_pid, created, parent)
            # Not born inside: the parent imported master code, whose fork hooks may have
            # forked already in the child; the root and all its descendants are moved.
            # Born in the parent's cgroup: everything there but the parent's own is moved
            # (its cgroup's list, not a scan of /proc: an orphan is no descendant, but is listed).
            if procs is not None and not self.cgroups.move_members(parent.token, launch.token, parent.keep):
                raise WarmFailed("could not move it into its cgroup")
            task.end_leftovers = _leftovers_killer(self.cgroups if procs is not None else None, launch.token,
                                                   parent)
            # Inside the try: a parent that died here must not stay busy (its box and
            # cgroup would wait for a task that never ran); the child, never told to
            # go, ends when its parent's end closes the pipe it waits on.
            parent._send(op="go")
        except BaseException:
            parent.busy = False
            if self.cgroups is not None:
                self.cgroups.release(launch.token)
            raise
        task.on_close = self._release
        return task

    def _less_parent(self, caps: TaskCaps, parent: WarmParent) -> TaskCaps:
        """The task's memory cap less what its warm parent holds (counted in the parent's
        cgroup, which the pages the task shares with it are charged to)."""
        if not caps.memory_mb or self.cgroups is None:
            return caps
        try:
            held = int((self.cgroups.base / f"task-{parent.token}" / "memory.current").read_text()) >> 20
        except (OSError, ValueError):
            return caps
        return TaskCaps(max(1, caps.memory_mb - held), caps.processes, caps.disk_mb)

    def _watch_idle(self) -> None:
        while not self._stop.wait(_WATCH_EVERY_S):
            try:
                short = psutil.virtual_memory().available < LOW_MEMORY_FRACTION * psutil.virtual_memory().total
            except (psutil.Error, OSError):
                short = False
            now = time.monotonic()
            with self._lock:
                for key, parent in list(self._parents.items()):
                    if parent.busy:
                        continue
                    if short or now - parent.idle_since > IDLE_S:
                        log.info("ending warm parent %s (%s)", parent.box.name,
                                 "the PC is short of memory" if short else "idle")
                        self._end(key)


def _remove_abandoned_boxes(boxes: Path) -> None:
    """Boxes of a slave that died (their parents died with its channel; a task that
    was in one is reported lost by the next engine's recovery)."""
    try:
        found = list(boxes.iterdir())
    except OSError:
        return
    for box in found:
        owner = box.name.split("-")[0]
        if owner.isdigit() and int(owner) != os.getpid() and not psutil.pid_exists(int(owner)):
            remove_tree(box)


def _leftovers_killer(cgroups: TaskCgroups | None, token: str, parent: WarmParent) -> Callable[[], None]:
    """How to end whatever a forked task left running: its cgroup at once (else, if
    that fails, the processes that carry its marker), then every process in the
    parent's sandbox but the parent itself and the sandbox's own (its cgroup's
    members, else its process tree: an orphan there is the task's; the parent only
    imported, and it may be hostile, so its own sweep is not relied on).

    Without cgroups there is no marker sweep per task (it reads every process's
    environment on the PC: ~25 ms here): inside a sandbox an orphan cannot leave the
    sandbox's pid namespace, all of it under the parent's sandbox; outside one, an
    orphan that left the parent's tree runs on as a cold task's would (neither is
    swept at a task's end there)."""
    def end() -> None:
        if cgroups is not None and not cgroups.kill(token):
            kill_tree(None, None, token)
        _end_strays(parent)
    return end


def _end_strays(parent: WarmParent) -> None:
    if parent.popen is None or parent.host_pid is None:
        return
    members = parent.sandbox_pids() if parent.sandbox_pids is not None else None
    if members is not None:  # its cgroup lists what runs in its sandbox, orphans and all
        for pid in members:
            if pid not in parent.keep:
                _kill_member(pid, parent.token)
        return
    try:
        strays = [p for p in psutil.Process(parent.popen.pid).children(recursive=True) if p.pid not in parent.keep]
    except psutil.Error:
        return
    for proc in strays:
        try:
            proc.kill()
        except psutil.Error:
            pass


def _kill_member(pid: int, token: str) -> None:
    """SIGKILL a process listed in ``task-<token>``'s cgroup, by a pidfd opened while it
    still is there (the pid cannot be another process's by the time the signal goes)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return  # gone already
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            if fh.read().rstrip().endswith(f"/task-{token}"):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rlimits(caps: TaskCaps, *, sandboxed: bool) -> dict[str, int]:
    """The rlimits a forked task sets itself: what the cold path's ``ulimit`` prefix sets."""
    limits = {}
    if caps.memory_mb:
        limits["RLIMIT_AS"] = caps.memory_mb << 20
    if caps.processes and sandboxed:  # per user: only inside the sandbox's user namespace
        limits["RLIMIT_NPROC"] = caps.processes
    if caps.disk_mb:
        limits["RLIMIT_FSIZE"] = caps.disk_mb << 20
    return limits
