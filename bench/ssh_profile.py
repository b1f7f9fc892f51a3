"""Where one task's time goes over SSH: the master and the slave daemons under cProfile.

The set-up of ``ssh_overhead.py`` (a loopback sshd, SLAVES slave daemons x
SLOTS slots, one ``master --no-local``), but the master and every slave daemon
run under ``python -m cProfile``; TASKS trivial tasks run once (after a warm-up
job that is not profiled... cProfile cannot leave it out, so the warm-up is
small and its share is printed), then the processes are stopped with SIGTERM
(both exit cleanly, so cProfile writes its file) and the profiles are printed:
the functions with the most own time and the most cumulative time, per task.

cProfile profiles the main thread only: the engine's loop and the dispatcher's
loop, which is where a task's path runs (the slave forks tasks on a helper
thread, which shows as the main thread waiting for it). Its own overhead
inflates Python-heavy code, so compare the functions with each other, not
with the wall time of an unprofiled run.

``--sampler py-spy`` (``pip install py-spy``; needs ptrace rights) instead
samples every thread of the unprofiled master and slave daemons during the
timed run only (``py-spy record --format raw``, idle threads left out: what
burns CPU) and prints, per process, the functions seen most often on top of a
stack (own) and anywhere in it (inclusive), as a share of the samples.

    .venv/bin/python bench/ssh_profile.py [--tasks 200] [--slaves 2] [--slots-per-slave 2] [--top 30]
        [--sandbox on|off] [--sampler cprofile|py-spy] [--keep]
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PYTHON,
    TRIVIAL_MAIN,
    BenchError,
    bench_workspace,
    exit_cleanly_on_sigterm,
    print_machine_info,
    machine_info,
    write_job,
    write_params,
)
from _pool import Pool, with_leftovers  # noqa: E402
from ssh_overhead import run_sparecycles  # noqa: E402
from support.daemons import SlaveDaemon  # noqa: E402


class ProfiledPool(Pool):
    """A pool whose master and slave daemons run under cProfile (agents and CLI calls do not)."""

    def __init__(self, root: Path, processes, out: Path):
        super().__init__(root, processes)
        self.out = out

    def add_slave(self, name: str, slots: int) -> SlaveDaemon:
        slave = super().add_slave(name, slots)
        # Restarted under cProfile: the registered agent command stays the plain one.
        slave.stop()
        slave.program = [PYTHON, "-m", "cProfile", "-o", str(self.out / f"slave-{name}.prof"), "-m", "sparecycles"]
        slave.start()
        return slave

    def start_master(self) -> subprocess.Popen:
        with self.master_log.open("ab") as log:
            self.master = self.processes.start(
                [PYTHON, "-m", "cProfile", "-o", str(self.out / "master.prof"), "-m", "sparecycles", "master",
                 "--no-local"], self.master_env, stdout=log, stderr=subprocess.STDOUT)
        return self.master


def start_samplers(pool: Pool, out: Path, processes) -> list[subprocess.Popen]:
    """``py-spy record`` on the master and every slave daemon, until stopped with SIGINT."""
    targets = {"master": pool.master.pid, **{f"slave-{n}": s.proc.pid for n, s in pool.slaves.items()}}
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))  # a venv's, not on PATH
    return [processes.start([py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
                             "--nonblocking", "--output", str(out / f"{name}.txt")], dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in targets.items()]


def show_samples(path: Path, top: int) -> None:
    """Own and inclusive shares of the functions in a py-spy raw (collapsed stacks) file."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1] if " (" in f else f for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    print(f"\n=== {path.stem}: {total} samples of busy threads ===")
    for title, counter in (("own", own), ("inclusive", inclusive)):
        print(f"  -- top {top} by {title} share --")
        for frame, n in counter.most_common(top):
            print(f"  {100 * n / max(total, 1):5.1f}%  {frame}")


def show(path: Path, tasks: int, top: int) -> None:
    for key, what in (("tottime", "own time"), ("cumulative", "cumulative time")):
        buf = io.StringIO()
        stats = pstats.Stats(str(path), stream=buf)
        stats.strip_dirs().sort_stats(key).print_stats(top)
        print(f"\n=== {path.name}: top {top} by {what} (divide by {tasks} tasks for a per-task figure) ===")
        text = buf.getvalue()
        print(text[text.find("ncalls") - 2:] if "ncalls" in text else text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--slaves", type=int, default=2)
    parser.add_argument("--slots-per-slave", type=int, default=2)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sandbox", choices=("on", "off"), default="on")
    parser.add_argument("--sampler", choices=("cprofile", "py-spy"), default="cprofile")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    print_machine_info(machine_info())
    root_seen, broken = None, None
    try:
        with bench_workspace("sparecycles-bench-prof-", keep=args.keep) as (root, processes):
            root_seen = root
            out = root / "profiles"
            out.mkdir()
            with (ProfiledPool(root, processes, out) if args.sampler == "cprofile" else Pool(root, processes)) as pool:
                if args.sandbox == "off":
                    pool.slave_env = {**pool.slave_env, "SPARECYCLES_SANDBOX": "off"}
                for n in range(args.slaves):
                    pool.add_slave(chr(ord("a") + n), args.slots_per_slave)
                pool.start_master()
                pool.wait_connected()
                job = write_job(root / "trivial", TRIVIAL_MAIN)
                run_sparecycles(pool, job, write_params(root / "warm.json", 4), 4, "warmup")
                samplers = start_samplers(pool, out, processes) if args.sampler == "py-spy" else []
                time.sleep(1.0 if samplers else 0)  # py-spy attaches
                run = run_sparecycles(pool, job, write_params(root / "params.json", args.tasks), args.tasks, "prof")
                print(f"{args.tasks} tasks in {run['seconds']:.2f} s under {args.sampler}; CPU ms/task: "
                      f"{run['cpu_ms_per_task']}")
                for sampler in samplers:
                    sampler.send_signal(signal.SIGINT)  # py-spy writes its file and exits
                    sampler.wait(30)
                pool.close()  # SIGTERM: cProfile writes its files as the processes exit
                time.sleep(0.5)
                for prof in sorted(out.glob("*.prof")):
                    show(prof, args.tasks + 4, args.top)
                for samples in sorted(out.glob("*.txt")):
                    show_samples(samples, args.top)
    except BenchError as exc:
        broken = str(exc)
    finally:
        broken = with_leftovers(broken, root_seen)
    if broken:
        print(f"\nBROKEN: {broken}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
