"""Helpers shared by the benchmark scripts in this folder.

Every benchmark run works in one temporary folder (deleted at the end) and
gives each SpareCycles instance its own ``SPARECYCLES_HOME`` inside it, so a
run never touches the user's real queue or another run's. Every process a
benchmark starts goes through :class:`Processes`, which stops exactly those
processes (and the task processes they spawned) by PID when the run ends.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil

# The interpreter running the benchmark: the project's venv. Never a bare
# "python3" (on the dev machines that is a pyenv shim costing ~100 ms a call).
PYTHON = sys.executable

# A trivial task: write its parameter to results/out-<i>.txt. The file name
# carries the index so the bare baseline can run every spawn in one folder
# (one results/ for all), while under SpareCycles each task's results land in
# <results>/<i>/out-<i>.txt, which lets the checker prove that every task got
# its own parameter set, not merely that some file exists.
TRIVIAL_MAIN = """\
import json, os, sys
i = json.loads(sys.argv[1])["i"]
os.makedirs("results", exist_ok=True)
with open(f"results/out-{i}.txt", "w") as fh:
    fh.write(str(i))
"""

# A task that holds its slot a little while, so the dispatcher keeps working
# through the queue at a steady pace instead of spending all its time spawning.
SLEEPING_MAIN = """\
import json, os, sys, time
i = json.loads(sys.argv[1])["i"]
time.sleep(0.05)
os.makedirs("results", exist_ok=True)
with open(f"results/out-{i}.txt", "w") as fh:
    fh.write(str(i))
"""

MB = 1_000_000  # figures are in MB = 10^6 bytes (stricter than MiB against a "100 MB" target)

# How long wait_for_job still waits for ``wait`` once the dispatcher has exited.
GRACE_S = 5.0


class BenchError(RuntimeError):
    """Something broke (a CLI call failed, tasks failed, results are missing):
    the figures of this run would be meaningless."""


# ----- the machine -------------------------------------------------------------

def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def code_version() -> str | None:
    """The commit the benchmarked trayapp comes from, "+dirty" if trayapp/ has
    uncommitted changes: figures mean little without the code they measured."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "trayapp"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict:
    return {
        "trayapp_commit": code_version(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "interpreter": PYTHON,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_at_start": loadavg(),
    }


def print_machine_info(info: dict) -> None:
    print(f"python {info['python']} ({info['implementation']}), interpreter {info['interpreter']}")
    print(f"cpu count {info['cpu_count']}, {info['platform']}, load average at start {info['loadavg_at_start']}")
    print(f"trayapp from commit {info['trayapp_commit']}")


# ----- files --------------------------------------------------------------------

def write_job(folder: Path, main_source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(main_source, encoding="utf-8")
    return folder


def write_params(path: Path, count: int) -> Path:
    path.write_text(json.dumps([{"i": i} for i in range(count)]), encoding="utf-8")
    return path


def count_results(results_dir: Path, tasks: int) -> int:
    """How many tasks left ``<results>/<i>/out-<i>.txt`` holding their own index."""
    ok = 0
    for i in range(tasks):
        try:
            if (results_dir / str(i) / f"out-{i}.txt").read_text() == str(i):
                ok += 1
        except OSError:
            pass
    return ok


def count_bare_results(results_dir: Path, tasks: int) -> int:
    """Same check for the bare baseline, which writes every file in one folder."""
    ok = 0
    for i in range(tasks):
        try:
            if (results_dir / f"out-{i}.txt").read_text() == str(i):
                ok += 1
        except OSError:
            pass
    return ok


# ----- processes ---------------------------------------------------------------

@dataclass(frozen=True)
class Stopped:
    code: int | None  # None: it ignored SIGTERM and was killed
    seconds: float  # from SIGTERM until it exited
    survivors: list[int]  # its descendants still running after it exited (killed since)


class Processes:
    """The processes one benchmark run started, stopped by PID at the end.

    A dispatcher stops its own tasks when it gets SIGTERM; if it does not exit
    in time it is killed, and then the task processes it spawned would be left
    running, so their PIDs are snapshotted before the dispatcher is signalled
    and any survivor is killed too. psutil.Process objects remember the
    process's creation time, so a recycled PID is never hit.
    """

    def __init__(self) -> None:
        self._started: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, **kwargs)
        self._started.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen, timeout: float = 30.0) -> Stopped:
        """SIGTERM ``proc``, wait for it, SIGKILL it and its leftovers if needed."""
        if proc.poll() is not None:
            return Stopped(proc.returncode, 0.0, [])
        try:
            descendants = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code: int | None
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        seconds = time.perf_counter() - t0
        survivors = []
        for child in descendants:
            try:
                if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                    survivors.append(child.pid)
                    child.kill()
            except psutil.Error:
                pass
        return Stopped(code, seconds, survivors)

    def stop_all(self) -> None:
        for proc in reversed(self._started):
            self.stop(proc, timeout=10.0)


def bare_spawns(folder: Path, tasks: int, concurrency: int) -> dict:
    """The baseline: TASKS plain ``python main.py '{"i": k}'`` spawns of
    TRIVIAL_MAIN, CONCURRENCY at a time, in one folder; every result checked."""
    write_job(folder, TRIVIAL_MAIN)

    def one(k: int) -> int:
        return subprocess.run([PYTHON, "main.py", json.dumps({"i": k})], cwd=folder, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        codes = list(pool.map(one, range(tasks)))
    elapsed = time.perf_counter() - t0
    failed = sum(1 for code in codes if code != 0)
    ok = count_bare_results(folder / "results", tasks)
    if failed or ok != tasks:
        raise BenchError(f"bare run in {folder}: {failed} spawns failed, {ok}/{tasks} results correct")
    return {"seconds": elapsed, "results_ok": ok}


@contextmanager
def bench_workspace(prefix: str, keep: bool = False) -> Iterator[tuple[Path, Processes]]:
    """A temporary folder and a process registry, both cleaned up on exit
    (also on Ctrl-C or an exception)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    processes = Processes()
    try:
        yield root, processes
    finally:
        processes.stop_all()
        if keep:
            print(f"(kept {root})", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def home_env(home: Path) -> dict:
    """The environment for CLI calls and dispatchers serving ``home``."""
    env = dict(os.environ)
    env["SPARECYCLES_HOME"] = str(home)
    # Tasks must run with the benchmark's interpreter (what the bare baseline
    # uses), whatever the caller's environment says.
    env["SPARECYCLES_TASK_PYTHON"] = PYTHON
    return env


def sparecycles(args: list[str], env: dict, *, check: bool = True,
                program: list[str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``python -m sparecycles ARGS`` (or ``program ARGS``: another
    installation's command) to completion; returns it and its wall time in s."""
    t0 = time.perf_counter()
    done = subprocess.run([*(program or [PYTHON, "-m", "sparecycles"]), *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if check and done.returncode != 0:
        raise BenchError(f"sparecycles {' '.join(args)} exited {done.returncode}:\n{done.stderr.strip()}")
    return done, elapsed


def start_master(processes: Processes, env: dict, log_file: Path, slots: int,
                 until_idle: float | None = None) -> subprocess.Popen:
    args = [PYTHON, "-m", "sparecycles", "master", "--slots", str(slots)]
    if until_idle is not None:
        args += ["--until-idle", f"{until_idle:g}"]
    with log_file.open("ab") as log:
        return processes.start(args, env, stdout=log, stderr=subprocess.STDOUT)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so the workspace's cleanup still runs."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def wait_for_job(processes: Processes, job_id: str, env: dict, dispatcher: subprocess.Popen,
                 timeout: float) -> tuple[int, str]:
    """Run ``sparecycles wait JOB --quiet`` while watching the dispatcher.

    ``wait`` blocks for as long as the job has unfinished tasks, so if the
    dispatcher dies (or leaves the queue early) it would block forever; this
    gives up instead, GRACE_S after the dispatcher exited (``wait`` polls the
    queue a few times a second, so a job that did finish is seen by then) or
    after ``timeout``. Returns wait's exit code and stderr.
    """
    waiter = processes.start([PYTHON, "-m", "sparecycles", "wait", job_id, "--quiet"], env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    dispatcher_gone_at = None
    while True:
        try:
            # communicate() returns as soon as wait exits, so polling here adds
            # nothing to the measured time.
            _, err = waiter.communicate(timeout=0.05)
            return waiter.returncode, err
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if dispatcher_gone_at is None and dispatcher.poll() is not None:
            dispatcher_gone_at = now
        if dispatcher_gone_at is not None and now - dispatcher_gone_at > GRACE_S:
            Processes.stop(waiter)
            raise BenchError(f"the dispatcher exited ({dispatcher.returncode}) before job {job_id} finished")
        if now > deadline:
            Processes.stop(waiter)
            raise BenchError(f"job {job_id} did not finish within {timeout:g} s")

