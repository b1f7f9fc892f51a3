"""A pool for the SSH benchmarks: a loopback sshd, slave daemons, one master.

Built on the test suite's pool (``tests/support/pool.py``): ``Sshd`` runs the
system's ``/usr/sbin/sshd`` on 127.0.0.1 with its own host key, client key and
authorized_keys; ``SlaveDaemon`` runs ``sparecycles slave`` in its own home.
The master home registers each slave the way a user does (``hosts add`` then
``hosts trust --fingerprint``), so the benchmarks go through the same code
path as a real lab, SSH and SFTP included.

The OpenSSH client (for GNU parallel and scp) gets a known_hosts file holding
the loopback sshd's host key, so nothing turns host-key checking off.

Every process started here is stopped here, by PID; :func:`our_leftovers`
finds any process that still refers to the benchmark's temporary folder, so a
run can prove it left nothing behind.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import psutil

_BENCH = Path(__file__).resolve().parent
_TESTS = _BENCH.parent / "tests"
for _folder in (str(_BENCH), str(_TESTS)):
    if _folder not in sys.path:
        sys.path.insert(0, _folder)

from _common import PYTHON, BenchError, Processes, home_env, sparecycles, tail  # noqa: E402
from support import pool as support_pool  # noqa: E402
from support.commands import CommandFailed  # noqa: E402
from support.daemons import SlaveDaemon  # noqa: E402
from support.sshd import Sshd  # noqa: E402


class Pool(support_pool.Pool):
    """A loopback sshd, slave daemons behind it, and a master home that knows them.

    Use as a context manager: leaving it stops the master (if started here),
    every slave daemon and the sshd, whatever happened.
    """

    def __init__(self, root: Path, processes: Processes, *, task_nice: int | None = None,
                 program: list[str] | None = None):
        """``program``: the ``sparecycles`` command of another installation (an
        earlier release, :mod:`_release`) that every process of this pool runs:
        slave daemons, agents, the master and the CLI calls; else this checkout's."""
        self.master_home = root / "master-home"
        # Tasks run with the benchmark's interpreter, as the baselines do.
        super().__init__(root, None, home_env(self.master_home), slave_env={"SPARECYCLES_TASK_PYTHON": PYTHON})
        self.processes = processes
        self.task_nice = task_nice
        self.program = program
        self.master: subprocess.Popen | None = None
        self.master_log = root / "master.log"
        self.known_hosts = root / "known_hosts"

    # ----- set-up ---------------------------------------------------------------------

    def __enter__(self) -> "Pool":
        self.sshd = Sshd(self.root / "sshd")
        self.sshd.start()
        host_key = (self.sshd.host_key.with_suffix(".pub")).read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.sshd.port} {host_key[0]} {host_key[1]}\n")
        self.master_home.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add_slave(self, name: str, slots: int) -> SlaveDaemon:
        config = f"nice = {self.task_nice}\n" if self.task_nice is not None else ""
        if self.program is None:
            try:
                return super().add_slave(name, slots, config=config)
            except CommandFailed as exc:
                raise BenchError(str(exc)) from exc
        # Another installation: its daemon, and registered with its own CLI (its queue, its schema).
        home = self.root / f"slave-{name}"
        home.mkdir(parents=True, exist_ok=True)
        if config:
            (home / "config.toml").write_text(config, encoding="utf-8")
        slave = SlaveDaemon(home, slots, env=self.slave_env, program=self.program)
        self.slaves[name] = slave
        try:
            slave.start()
        except RuntimeError as exc:
            raise BenchError(str(exc)) from exc
        self.cli(["hosts", "add", name, "--host", "127.0.0.1", "--port", str(self.sshd.port), "--user",
                  self.sshd.user, "--key", str(self.sshd.client_key), "--agent-command", slave.agent_command])
        self.cli(["hosts", "trust", name, "--fingerprint", self.sshd.host_key_fingerprint()])
        return slave

    def cli(self, args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
        """A CLI call of this pool's installation, in its master home."""
        return sparecycles(args, self.master_env, program=self.program)

    def start_master(self) -> subprocess.Popen:
        """``sparecycles master --no-local``: only the slaves run tasks."""
        with self.master_log.open("ab") as log:
            self.master = self.processes.start([*(self.program or [PYTHON, "-m", "sparecycles"]), "master",
                                                "--no-local"], self.master_env, stdout=log, stderr=subprocess.STDOUT)
        return self.master

    def wait_connected(self, timeout: float = 60.0) -> float:
        """Block until the master has said hello to every slave; returns the seconds it took."""
        t0 = time.perf_counter()
        deadline = t0 + timeout
        wanted = set(self.slaves)
        while True:
            if self.master is not None and self.master.poll() is not None:
                raise BenchError(f"the master exited ({self.master.returncode}):\n{tail(self.master_log)}")
            states = self.host_states()
            if all(states.get(name) in ("ready", "working") for name in wanted):
                return time.perf_counter() - t0
            if time.perf_counter() > deadline:
                raise BenchError(f"the master did not connect to every slave in {timeout:g} s: {states}\n"
                                 f"{tail(self.master_log)}")
            time.sleep(0.05)

    def host_states(self) -> dict[str, str]:
        """The host states the master recorded, read straight from its queue (read-only)."""
        db = self.master_home / "queue.sqlite3"
        if not db.exists():
            return {}
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
                return dict(conn.execute("SELECT name, state FROM hosts").fetchall())
        except sqlite3.Error:
            return {}

    # ----- the OpenSSH client ------------------------------------------------------------

    def ssh_options(self) -> list[str]:
        """Options for ssh/scp/rsync against the loopback sshd: its key, its known host key, no prompts."""
        return ["-F", "/dev/null", "-i", str(self.sshd.client_key), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]

    def ssh_command(self) -> str:
        return shlex.join(["ssh", "-p", str(self.sshd.port), *self.ssh_options()])

    # ----- tear-down --------------------------------------------------------------------

    def stop_master(self) -> None:
        if self.master is not None:
            stopped = Processes.stop(self.master, timeout=30)
            if stopped.code not in (0, -signal.SIGTERM) and stopped.code is not None:
                print(f"(the master exited {stopped.code})", file=sys.stderr)
            self.master = None

    def close(self) -> None:
        self.stop_master()
        for slave in self.slaves.values():
            _stop_slave(slave)
        if self.sshd is not None:
            self.sshd.stop()
            self.sshd = None


def _stop_slave(slave: SlaveDaemon) -> None:
    """SIGTERM (the daemon stops its tasks), then SIGKILL with its leftovers if it hangs."""
    proc = slave.proc
    if proc is None or proc.poll() is not None:
        return
    Processes.stop(proc, timeout=30)


def our_leftovers(root: Path) -> list[psutil.Process]:
    """Processes still running that refer to ``root`` (in their command line or
    environment): anything of ours that outlived the run."""
    needle = str(root)
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        if proc.info["pid"] == me:
            continue
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + " ".join(
                f"{k}={v}" for k, v in (proc.info["environ"] or {}).items())
            if needle in text and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def reap_leftovers(root: Path) -> list[str]:
    """Kill (by PID) whatever :func:`our_leftovers` finds; returns what it was."""
    victims = our_leftovers(root)
    described = []
    for proc in victims:
        try:
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=5)
    return described


def with_leftovers(broken: str | None, root: Path | None) -> str | None:
    """``broken``, plus what of ours outlived the run under ``root`` (killed now):
    a benchmark that leaves processes behind is broken too."""
    if root is not None:
        killed = reap_leftovers(root)
        if killed:
            broken = (broken + "\n" if broken else "") + f"processes left behind (now killed): {killed}"
    return broken


def job_counts(pool: Pool, job: str) -> dict:
    done, _ = pool.cli(["status", job, "--json"])
    info = json.loads(done.stdout)
    return {"status": info["status"], "counts": {k: v for k, v in info["counts"].items() if v}}


def wait_job_done(master_home: Path, job_id: str, timeout: float, poll: float = 0.05,
                  master: subprocess.Popen | None = None) -> float:
    """Poll the master's queue every ``poll`` s (in-process, read-only: what
    ``status`` reads, without spawning an interpreter every 50 ms) until the
    job has no unfinished task; returns the time.perf_counter() it was seen done."""
    db = master_home / "queue.sqlite3"
    deadline = time.perf_counter() + timeout
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        seq = conn.execute("SELECT seq FROM jobs WHERE id=?", (job_id,)).fetchone()[0]
        while True:
            left = conn.execute("SELECT count(*) FROM tasks WHERE job_seq=? AND status IN "
                                "('queued','dispatched','running')", (seq,)).fetchone()[0]
            if left == 0:
                return time.perf_counter()
            if master is not None and master.poll() is not None:
                raise BenchError(f"the master exited ({master.returncode}) with {left} tasks unfinished")
            if time.perf_counter() > deadline:
                raise BenchError(f"job {job_id}: {left} tasks still unfinished after {timeout:g} s")
            time.sleep(poll)
