"""A stopped master or slave leaves nothing running, whenever the stop lands.

Stopping is one ordered sequence (:mod:`trayapp.slave.engine`): no task starts
once it has begun, a launch that raced it is killed with the rest, then the
process exits. These tests stop real masters and real slave daemons with
SIGTERM at random moments while short process-tree tasks keep starting, in
the sandbox users get, and look for any process of theirs alive 2 s after the
process exits. ``SPARECYCLES_TEST_HOLD_LAUNCH_S`` holds every launch between
fork and exec, so many stops land while a launch is under way (a quiet
machine would hit that window rarely). A master killed outright (SIGKILL)
finds its orphans at its next start and adopts or kills each one.

Stops run in lanes side by side, each lane on homes of its own, so 100 stops
cost about a minute or two rather than 100 start-ups in a row.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from conftest import cli, make_job, wait_until
from support.daemons import SlaveDaemon
from support.pool import register_slave
from support.tasks import kill_all, task_processes_under

from trayapp.install.selfcommand import sparecycles_command
from trayapp.run.posix import HOLD_LAUNCH_VARIABLE
from trayapp.slave.spool import Spool

pytestmark = [pytest.mark.slow, pytest.mark.pool]

# STOPS_FOR_TEST=10 STOPS_VERBOSE=1: a quick look while working on stopping.
STOPS = int(os.environ.get("STOPS_FOR_TEST", "100"))
LANES = 2
# The launch hold: long enough that many stops land inside it, short enough
# that a launch held when its process exits would have run well within 2 s.
HOLD_S = 0.3

# A process tree: the task and a child that would outlive it by far.
TREE_TASK = """
import json, os, sys, time
p = json.loads(sys.argv[1])
child = os.fork()
if child == 0:
    time.sleep(120)
    os._exit(0)
print("pid", os.getpid(), "child", child, flush=True)
time.sleep(p["sleep"])
os.makedirs("results", exist_ok=True)
with open("results/done.json", "w") as fh:
    json.dump(p, fh)
os.kill(child, 9)
"""


def sandboxed_env(home: Path, **extra: str) -> dict:
    """The environment of a master or slave in ``home`` (the sandbox on, as users get it)."""
    env = {**os.environ, "SPARECYCLES_HOME": str(home), **extra}
    env.pop("DISPLAY", None)  # nobody at these PCs: they lend at once
    return env


def submit_tree_tasks(home: Path, folder: Path, n: int, sleep: float) -> str:
    params = [{"i": i, "sleep": sleep} for i in range(n)]
    job_dir, params_file = make_job(folder, TREE_TASK, params=params)
    out = cli("submit", str(job_dir), "--params", str(params_file), "--no-start", "--json",
              env={"SPARECYCLES_HOME": str(home)}, check=True).stdout
    return json.loads(out)["job"]


def a_launch_began(spool_tasks: Path, before: set[str]) -> bool:
    try:
        return bool({p.name for p in spool_tasks.iterdir()} - before)
    except OSError:
        return False


def names_in(folder: Path) -> set[str]:
    try:
        return {p.name for p in folder.iterdir()}
    except OSError:
        return set()


@dataclass
class StopLog:
    """What the stops found, from every lane."""

    rounds: int = 0
    seen_running: int = 0  # task processes seen alive just before a stop: the scan does see them
    left: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, what: str, seen: int, leftovers: list[psutil.Process]) -> None:
        with self.lock:
            self.rounds += 1
            self.seen_running += seen
            if leftovers:
                self.left.append(f"{what}: {[(p.pid, p.name()) for p in leftovers]}")


def stop_at_random_moments(rounds: int, homes: list[Path], spool_of, start, log: StopLog,
                           rng: random.Random) -> None:
    """``rounds`` times: start (``start(home)`` returns the process) on the next
    home, SIGTERM it at a random moment after a launch began, and 2 s after it
    exited look for task processes left in that home's spool."""
    exited: dict[Path, float] = {}
    for n in range(rounds):
        home = homes[n % len(homes)]
        if home in exited:  # 2 s after its last stop, before anything there could adopt what it left
            time.sleep(max(0.0, exited[home] + 2.0 - time.monotonic()))
            leftovers = task_processes_under(spool_of(home))
            log.record(f"{home.name} round {n - len(homes)}", 0, leftovers)
            kill_all(leftovers)
        before = names_in(spool_of(home) / "tasks")
        began = time.monotonic()
        proc = start(home)
        try:
            wait_until(lambda: a_launch_began(spool_of(home) / "tasks", before) or proc.poll() is not None,
                       timeout=90, interval=0.02, what=f"a launch in {home}")
            time.sleep(rng.uniform(0.0, 0.8))
            seen = len(task_processes_under(spool_of(home)))
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == 0, f"{home}: exited {proc.returncode}"
        exited[home] = time.monotonic()
        log.seen_running += seen
        if os.environ.get("STOPS_VERBOSE"):
            print(f"{home.name} round {n}: {time.monotonic() - began:.1f} s, {seen} task processes seen", flush=True)
    for home, when in exited.items():
        time.sleep(max(0.0, when + 2.0 - time.monotonic()))
        leftovers = task_processes_under(spool_of(home))
        log.record(f"{home.name} last round", 0, leftovers)
        kill_all(leftovers)


def run_lanes(lanes: int, work) -> None:
    errors: list[BaseException] = []

    def lane(k: int) -> None:
        try:
            work(k)
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=lane, args=(k,)) for k in range(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@pytest.mark.timeout(900)  # about 2 min on a quiet 2-core machine; far more when it is shared
def test_a_master_stopped_at_100_random_moments_leaves_no_task_running(tmp_path):
    homes = [tmp_path / f"master-{k}" for k in range(2 * LANES)]
    for k, home in enumerate(homes):
        submit_tree_tasks(home, tmp_path / f"job-{k}", 600, sleep=0.3)
    log = StopLog()

    def start(home: Path) -> subprocess.Popen:
        return subprocess.Popen(sparecycles_command("master", "--slots", "2"),
                                env=sandboxed_env(home, **{HOLD_LAUNCH_VARIABLE: str(HOLD_S)}),
                                stdout=subprocess.DEVNULL, stderr=open(home / "master.log", "ab"))

    def lane(k: int) -> None:
        stop_at_random_moments(STOPS // LANES, homes[2 * k:2 * k + 2], lambda h: h / "local-spool", start, log,
                               random.Random(k))

    run_lanes(LANES, lane)
    assert log.rounds == STOPS
    assert log.left == [], "task processes alive 2 s after their master exited"
    assert log.seen_running > 0, "the scan must see task processes while they run, or it proves nothing"
    first_log = (homes[0] / "master.log").read_text()
    assert "tasks run in a bubblewrap sandbox" in first_log, first_log[-3000:]
    assert "the dispatcher was stopped" in first_log or "dispatcher stopping" in first_log


@pytest.mark.timeout(900)
def test_a_slave_daemon_stopped_at_100_random_moments_leaves_no_task_running(tmp_path, home, sshd):
    # One master feeds every slave over the real sshd; each lane stops and
    # restarts its slave daemons, and the master reconnects to them.
    # A lane restarts its one slave right after the check: a slave down for long
    # makes the master wait longer and longer before it tries again.
    lanes = 2 * LANES
    slave_homes = [tmp_path / f"slave-{k}" for k in range(lanes)]
    daemons = {}
    for slave_home in slave_homes:
        slave_home.mkdir()
        (slave_home / "config.toml").write_text("max_foreign_cpu = 1.0\n", encoding="utf-8")
        daemon = SlaveDaemon(slave_home, slots=2)
        daemon.env = sandboxed_env(slave_home, **{HOLD_LAUNCH_VARIABLE: str(HOLD_S)})
        register_slave(slave_home.name, sshd, daemon)
        daemons[slave_home] = daemon
    submit_tree_tasks(home.data_dir, tmp_path / "job", 2000, sleep=0.3)
    master = subprocess.Popen(sparecycles_command("master", "--no-local"), env=sandboxed_env(home.data_dir),
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "master.log", "ab"))
    log = StopLog()

    def start(slave_home: Path) -> subprocess.Popen:
        return daemons[slave_home].start().proc

    def lane(k: int) -> None:
        stop_at_random_moments(STOPS // lanes, slave_homes[k:k + 1], lambda h: h / "spool", start, log,
                               random.Random(100 + k))

    try:
        run_lanes(lanes, lane)
    finally:
        master.send_signal(signal.SIGTERM)
        master.wait(60)
        for daemon in daemons.values():
            daemon.stop()
    assert log.rounds == STOPS
    assert log.left == [], "task processes alive 2 s after their slave daemon exited"
    assert log.seen_running > 0, "the scan must see task processes while they run, or it proves nothing"
    daemon_log = daemons[slave_homes[0]].log()
    assert "tasks run in a bubblewrap sandbox" in daemon_log, daemon_log[-3000:]
    assert re.search(r"stopped [1-9]\d* running task", "".join(d.log() for d in daemons.values()))


def test_a_master_killed_outright_adopts_or_kills_each_orphan_at_its_next_start(tmp_path):
    home = tmp_path / "master"
    # Long enough that the orphans still run when the next master starts, on a loaded machine too.
    job = submit_tree_tasks(home, tmp_path / "job", 6, sleep=15.0)
    env = sandboxed_env(home)
    spool = home / "local-spool"

    first = subprocess.Popen(sparecycles_command("master", "--slots", "2"), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: len(task_processes_under(spool)) >= 4, timeout=60,
                   what="two task trees to run on the master's own cores")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    orphans = {p.pid for p in task_processes_under(spool)}
    assert orphans, "SIGKILL leaves the tasks running: the next master must find them"
    orphaned_tokens = {p.name for p in (spool / "tasks").iterdir() if (p / "task.json").exists()
                       and Spool(spool).load(p / "task.json").state == "running"}
    assert len(orphaned_tokens) == 2

    second = subprocess.Popen(sparecycles_command("master", "--slots", "2", "--until-idle", "1"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    restarted = time.monotonic()
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(second.stdout), daemon=True)
    reader.start()
    try:
        # "collecting": one that finished before the restart got that far is settled too.
        decided = re.compile(r"adopting task|killed what was left of it|finished while no slave engine ran")
        try:
            wait_until(lambda: sum(1 for line in lines if decided.search(line)) >= len(orphaned_tokens),
                       timeout=60, interval=0.02, what="the restarted master to adopt or kill each orphan")
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{''.join(lines)}") from None
        took = time.monotonic() - restarted
        assert second.wait(120) == 0
    finally:
        if second.poll() is None:
            second.kill()
        reader.join(10)
    output = "".join(lines)
    assert took < 5.0, f"the orphans were settled {took:.1f} s after the restart:\n{output}"
    assert not task_processes_under(spool), "nothing left running once the sweep is done"
    status = json.loads(cli("status", job, "--json", env={"SPARECYCLES_HOME": str(home)}).stdout)
    assert status["status"] == "done", output
    with sqlite3.connect(home / "queue.sqlite3") as db:
        succeeded = [idx for (idx,) in db.execute("SELECT idx FROM attempts WHERE outcome = 'succeeded'")]
    assert sorted(succeeded) == list(range(6)), "each task succeeds exactly once: none ran twice"
    assert len(decided.findall(output)) == len(orphaned_tokens), output
