"""One warm parent, seen from the host: its sandbox, its channel, and the task it forked.

A warm parent (:mod:`trayapp.run.forkserver`) serves one (job, slot) of one
master. It lives in a sandbox of its own whose bound, writable folder is
fixed (``<box>/work``); a task's folder and scratch folder are moved (renamed,
on the spool's file system) into it as ``<box>/work/task`` and
``<box>/work/tmp`` before the fork and back after the task ended, so a task
only ever sees its own files, and the engine packs them where it always does.

Forking one task (:meth:`WarmParent.fork`): the parent forks; the child
stops before the task's first instruction; the host finds its pid (its
``NSpid`` from outside the sandbox, among the members of the parent's cgroup,
where it is born; without cgroups, among the parent's children), opens a
pidfd on it, moves it (and anything it forked meanwhile) into the attempt's
cgroup and only then lets it go. The parent reaps it and reports
its exit code, which the host writes where the cold wrapper would
(``task_dir/exitcode``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import psutil

from trayapp.run import forkserver
from trayapp.run.caps import TaskCaps
from trayapp.run.proctree import MARKER_VARIABLE
from trayapp.run.runner import Launch
from trayapp.run.sandbox import Confinement, sandboxed_environment
from trayapp.run.taskfiles import remove_tree

log = logging.getLogger(__name__)

# The forkserver arrives on stdin: nothing of SpareCycles needs to be importable in the sandbox.
BOOT = "import sys; exec(compile(sys.stdin.read(), '<sparecycles warm parent>', 'exec'))"


def _forkserver_source() -> bytes:
    """The forkserver's source, read when a parent starts (not at import: a bundle
    missing the file must still start, and then runs every task cold)."""
    try:
        return Path(forkserver.__file__).read_bytes()
    except OSError as exc:
        raise WarmFailed(f"the forkserver's source is missing ({exc}): tasks start cold") from None
# Room a forked task writes its own command line and environment into (see forkserver).
ARG_ROOM = 4096
ENV_ROOM = 16384
FORK_TIMEOUT_S = 10.0
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
EXIT_REPORT_TIMEOUT_S = 10.0
# Joins the warm parent's cgroup before anything starts, as the cold wrapper does for a task.
_JOIN = 'cg=$1; shift; [ -z "$cg" ] || echo $$ >"$cg" || exit 125; exec "$@"'


class WarmFailed(Exception):
    """Warming up, or forking from a warm parent, did not work: start cold, and say why."""


class WarmParent:
    def __init__(self, key: str, slot: int, box: Path, python: str, modules: tuple[str, ...]):
        self.key, self.slot, self.box, self.python = key, slot, box, python
        # Names come from a master's message: only dotted identifiers ("/home/x" would name a folder).
        self.modules = tuple(m for m in modules if isinstance(m, str) and _MODULE_NAME.fullmatch(m))
        self.token = f"warm-{box.name}"  # its cgroup's name
        self.popen: subprocess.Popen | None = None
        self.chan: socket.socket | None = None
        self.ready = False
        self.failure: str | None = None
        self.host_pid: int | None = None
        self.busy = False
        self.idle_since = time.monotonic()
        self.imported: list[str] = []
        self.ns_pid: int | None = None
        self.ended = None  # set by the runner when it ended the parent while a task was in it
        # What runs in its sandbox, from its cgroup's member list (set by the runner where the
        # parent has a cgroup): finds the processes there without a scan of all of /proc.
        self.sandbox_pids: Callable[[], list[int] | None] | None = None
        self.keep: set[int] = set()  # the parent and the sandbox's own processes above it

    @property
    def work(self) -> Path:
        return self.box / "work"

    def start(self, launch: Launch, confinement: Confinement, *, cgroup_procs: Path | None, caps: TaskCaps,
              spawn) -> None:
        """Start the parent in its sandbox (``spawn`` runs the Popen at the task's priority);
        it imports in the background, :meth:`poll_ready` tells when it is done."""
        try:
            source = _forkserver_source()
        except WarmFailed as exc:
            self.failure = str(exc)
            return
        if self.box.exists():
            remove_tree(self.box)
        self.work.mkdir(parents=True)
        (self.box / "tmp").mkdir()
        job_copy = self._copy_own_modules(launch.work_dir)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**os.environ, **launch.env, forkserver.ROOM_VARIABLE: " " * ENV_ROOM}
        for per_task in (MARKER_VARIABLE, "SPARECYCLES_TASK"):
            env.pop(per_task, None)
        # Its own scratch folder: Brian's import log. The sandbox's /tmp is private to it.
        env["TMPDIR"] = "/tmp" if confinement.sandboxed else str(self.box / "tmp")
        pseudo = replace(launch, token=self.token, task_dir=self.box,
                         argv=(self.python, "-c", BOOT, str(theirs.fileno()), "#" * ARG_ROOM),
                         writable=tuple(p for p in launch.writable if not Path(p).is_relative_to(launch.task_dir)))
        argv, env = confinement.wrap(pseudo, env, caps)  # caps: what its cgroup does not hold
        if confinement.sandboxed:
            env["TMPDIR"] = "/tmp"
        command = ["/bin/sh", "-c", _JOIN, "sparecycles-warm", str(cgroup_procs or ""), *argv]
        with open(self.box / "parent.log", "wb") as errors:
            self.popen = spawn(lambda prefix: subprocess.Popen(
                command[:4] + prefix + command[4:], cwd=self.work, env=env, start_new_session=True,
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, pass_fds=(theirs.fileno(),)))
        theirs.close()
        self.chan = ours
        try:
            self.popen.stdin.write(source)
            self.popen.stdin.close()
            self._send(op="warm", modules=list(self.modules), sandboxed=confinement.sandboxed,
                       path=str(job_copy) if job_copy else None)
        except OSError as exc:
            self.failure = f"the warm parent did not start: {exc}"

    def _copy_own_modules(self, job_files: Path) -> Path | None:
        """The job's own modules the manifest asks to warm (``warm = ["mymodel"]``), copied
        where the parent imports them from: the task's copy of the job folder is its own."""
        target = self.work / ".job"
        for name in self.modules:
            top = name.split(".")[0]
            if (job_files / f"{top}.py").is_file():
                target.mkdir(exist_ok=True)
                shutil.copy2(job_files / f"{top}.py", target / f"{top}.py")
            elif (job_files / top).is_dir():
                shutil.copytree(job_files / top, target / top, symlinks=True, dirs_exist_ok=True)
        return target if target.exists() else None

    def poll_ready(self) -> bool:
        """Whether the parent has imported its modules (never blocks); sets ``failure`` if it could not."""
        if self.ready or self.failure:
            return self.ready
        if self.popen.poll() is not None and not self._readable(0):
            self.failure = f"the warm parent exited ({self.popen.returncode}): {self._log_tail()}"
            return False
        if not self._readable(0):
            return False
        message = self._receive(1.0)
        if message is None:
            self.failure = f"the warm parent ended before it was ready: {self._log_tail()}"
        elif message.get("op") == "failed":
            self.failure = message.get("reason") or "the warm parent failed"
        elif message.get("op") == "ready" and _whole(message.get("pid")):
            imported = message.get("imported")
            self.ready = True
            self.imported = [m for m in imported if isinstance(m, str)] if isinstance(imported, list) else []
            self.ns_pid = message["pid"]
        else:
            self.failure = "the warm parent answered what it never sends"
        return self.ready

    def fork(self, request: dict, stdout: int, stderr: int) -> tuple[int, int]:
        """Fork a child for ``request`` (argv, env, cwd, limits); (its host pid, its pid in the sandbox)."""
        self._send((stdout, stderr), op="fork", **request)
        message = self._receive(FORK_TIMEOUT_S)
        if message is None or message.get("op") != "forked" or not _whole(message.get("pid")):
            raise WarmFailed(f"the warm parent did not fork (it answered {str(message)[:200]})")
        ns_pid = message["pid"]
        host = self._host_pid_of_child(ns_pid)
        if host is None:
            self.send_quietly(op="abort")
            raise WarmFailed(f"the forked task (pid {ns_pid} in its sandbox) was not found from outside")
        return host, ns_pid

    def wait_exit(self, timeout: float) -> int | None:
        """The forked task's exit code as the parent reports it (sh's form), None if it does not."""
        deadline = time.monotonic() + timeout
        for _ in range(64):  # a flood of other messages (master code can write there) is no report
            message = self._receive(max(0.0, deadline - time.monotonic()))
            if message is None:
                return None
            if message.get("op") == "exited":
                if not _whole(message.get("code")):
                    return None  # not what the forkserver sends: treated as no report (the parent is ended)
                if message.get("leftovers"):
                    log.info("warm parent %s: the task left %s processes running; killed them",
                             self.box.name, str(message["leftovers"])[:20])
                return message["code"]
        return None

    def send_quietly(self, **message) -> None:
        try:
            self._send(**message)
        except OSError:
            pass

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None and self.failure is None

    def kill(self, *, wait: bool = True) -> None:
        """End the parent and its whole sandbox (what a task left running in it too):
        its pid namespace ends with it."""
        if self.chan is not None:
            self.chan.close()
            self.chan = None
        if self.popen is None:
            return
        # popen's pid is ours until reaped; the parent's host pid is only while its
        # sandbox lives (bwrap ends with it): once popen ended that pid may be another's.
        sandbox_lives = self.popen.poll() is None
        for kill, pid in ((os.killpg, self.popen.pid), (os.kill, self.host_pid if sandbox_lives else None)):
            try:
                if pid:
                    kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if wait:
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                log.warning("warm parent %s did not end within 5 s of SIGKILL", self.box.name)
        else:
            self.popen.poll()

    def remove_box(self) -> None:
        remove_tree(self.box)  # what a task left there may be deep, or made unreadable

    # ----- internals --------------------------------------------------------------

    def _host_pid_of_child(self, ns_pid: int) -> int | None:
        """The host's pid of the parent's child whose pid in the sandbox is ``ns_pid``."""
        members = self.sandbox_pids() if self.sandbox_pids is not None else None
        if members is not None:  # the child is born in the parent's cgroup
            if self.host_pid is None:
                self._find_self(members)
            return next((pid for pid in members if pid not in self.keep and _status_of(pid) == (self.host_pid, ns_pid)),
                        None) if self.host_pid is not None else None
        if self.host_pid is None:
            try:
                self.host_pid = self._find(lambda p: _innermost_pid(p) == self.ns_pid, [psutil.Process(self.popen.pid)])
            except psutil.Error:
                return None
            self.keep = self._ancestry()
        if self.host_pid is None:
            return None
        try:
            return self._find(lambda p: _innermost_pid(p) == ns_pid, psutil.Process(self.host_pid).children())
        except psutil.Error:
            return None

    def _find_self(self, members: list[int]) -> None:
        """The parent's host pid among its cgroup's members (the one whose pid in the sandbox
        it reported, under the sandbox's own processes), and those above it."""
        for pid in members:
            status = _status_of(pid)
            if status is not None and status[1] == self.ns_pid:  # without a sandbox: popen's own pid
                self.host_pid = pid
                self.keep = self._ancestry()
                return

    def _ancestry(self) -> set[int]:
        """The parent and its ancestors up to the sandbox's outermost process (started by us)."""
        keep, pid = set(), self.host_pid
        while pid and pid not in keep and len(keep) < 8:
            keep.add(pid)
            if pid == self.popen.pid:
                break
            status = _status_of(pid)
            pid = status[0] if status else None
        return keep

    def _find(self, match, first: list[psutil.Process]) -> int | None:
        pending = list(first)
        while pending:
            proc = pending.pop()
            if match(proc):
                return proc.pid
            try:
                pending += proc.children()
            except psutil.Error:
                pass
        return None

    def _send(self, fds: tuple[int, ...] = (), **message) -> None:
        if self.chan is None:
            raise OSError("the warm parent's channel is closed")
        data = json.dumps(message).encode()
        if fds:
            socket.send_fds(self.chan, [data], list(fds))
        else:
            self.chan.send(data)

    def _readable(self, timeout: float) -> bool:
        if self.chan is None:
            return False
        ready, _, _ = select.select([self.chan], [], [], timeout)
        return bool(ready)

    def _receive(self, timeout: float) -> dict | None:
        if not self._readable(timeout):
            return None
        try:
            data = self.chan.recv(forkserver.MAX_MESSAGE)
        except OSError:
            return None
        # The parent imported the job's modules (master code, hostile at worst): what it
        # says is checked like any message from outside, and never ends the slave.
        try:
            message = json.loads(data) if data else None
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the parser's depth
            return None
        return message if isinstance(message, dict) else None

    def _log_tail(self) -> str:
        try:
            text = (self.box / "parent.log").read_text(errors="replace").strip()
        except OSError:
            return "no output"
        return text[-500:] or "no output"


def _status_of(pid: int) -> tuple[int, int] | None:
    """(its parent's pid, its pid in its own innermost pid namespace) of a process, from outside."""
    ppid = inner = None
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("PPid:"):
                    ppid = int(line.split()[1])
                elif line.startswith("NSpid:"):
                    inner = int(line.split()[-1])
                    break
    except (OSError, ValueError, IndexError):
        return None
    return (ppid, inner) if ppid is not None and inner is not None else None


def _innermost_pid(proc: psutil.Process) -> int | None:
    """A process's pid in its own (innermost) pid namespace, from outside it."""
    try:
        with open(f"/proc/{proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None


def warm_environment(launch: Launch, box: Path, confinement: Confinement) -> dict[str, str]:
    """The forked task's environment: what a cold start of it would get, its
    folders being where they are while it runs (in the box)."""
    env = {**os.environ, **launch.env, MARKER_VARIABLE: launch.token}
    if "TMPDIR" in launch.env:
        env["TMPDIR"] = str(box / "work" / "tmp")
    if confinement.sandboxed:
        env = sandboxed_environment(env, box / "work" / "task")
    env["PWD"] = str(box / "work" / "task")  # as the cold start's shell exports it
    return env


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 31
