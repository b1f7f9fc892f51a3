"""Memory of the dispatcher while it works through 10,000 queued tasks.

Submits one job of TASKS short tasks (each sleeps 0.05 s and writes one file),
starts ``master --slots SLOTS`` as a child and samples the resident set size
(RSS) of the dispatcher process alone (not of the tasks it spawns) every
INTERVAL s for SECONDS s, then stops it with SIGTERM and waits for it to exit.

Baselines measured in the same run:

* the same dispatcher serving an empty queue (another, empty home);
* a bare interpreter: ``sys.executable -c "import time; time.sleep(3)"``.

Also reported: how many tasks finished during the sampling window, how long
``submit`` of the TASKS parameter sets took, and how long ``status JOB
--json`` takes on that job afterwards.

    .venv/bin/python bench/dispatcher_memory.py [--tasks 10000] [--seconds 30] [--json]

Exit status: 0 when the run completed correctly (whether or not the target is
met: this is a measurement, not a test), 1 when something broke (a CLI call or
task failed, the dispatcher died, or it left tasks behind when stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
from _common import (  # noqa: E402
    MB,
    PYTHON,
    SLEEPING_MAIN,
    BenchError,
    Processes,
    bench_workspace,
    count_results,
    exit_cleanly_on_sigterm,
    home_env,
    loadavg,
    machine_info,
    median,
    print_machine_info,
    sparecycles,
    start_master,
    tail,
    write_job,
    write_params,
)

TARGET_PEAK_MB = 100.0
STATUS_REPEATS = 3


def sample_rss(proc: subprocess.Popen, seconds: float, interval: float, *, until_exit: bool = False) -> list[float]:
    """RSS of ``proc`` itself (children excluded), in MB, every ``interval`` s.

    Samples follow a fixed schedule rather than sleeping ``interval`` after
    each sample, so the window really is ``seconds`` long however slow psutil is.
    """
    process = psutil.Process(proc.pid)
    samples: list[float] = []
    start = time.monotonic()
    k = 0
    while True:
        if proc.poll() is not None:
            if until_exit:
                return samples
            raise BenchError(f"process {proc.pid} ({' '.join(map(str, proc.args))}) exited with "
                             f"{proc.returncode} while being sampled")
        try:
            samples.append(process.memory_info().rss / MB)
        except psutil.Error:
            continue  # it is exiting: poll() above says so on the next turn
        k += 1
        next_at = start + k * interval
        if next_at - start > seconds:
            return samples
        time.sleep(max(0.0, next_at - time.monotonic()))


def describe(samples: list[float]) -> dict:
    return {"samples": len(samples), "peak_mb": max(samples), "median_mb": median(samples),
            "first_mb": samples[0], "last_mb": samples[-1]}


def baseline_bare(processes: Processes, interval: float) -> dict:
    proc = processes.start([PYTHON, "-c", "import time; time.sleep(3)"], dict(os.environ))
    samples = sample_rss(proc, 10.0, interval, until_exit=True)
    if proc.wait() != 0 or not samples:
        raise BenchError(f"the bare interpreter exited {proc.returncode}")
    return describe(samples)


def baseline_idle_dispatcher(root: Path, processes: Processes, slots: int, seconds: float, interval: float) -> dict:
    home = root / "home-empty"
    log_file = root / "master-empty.log"
    master = start_master(processes, home_env(home), log_file, slots)
    try:
        samples = sample_rss(master, seconds, interval)
    except BenchError as exc:
        raise BenchError(f"{exc}\ndispatcher log ends:\n{tail(log_file)}") from None
    stopped = Processes.stop(master)
    if stopped.code != 0:
        raise BenchError(f"the idle dispatcher exited {stopped.code} on SIGTERM\n{tail(log_file)}")
    return describe(samples)


def loaded_dispatcher(root: Path, processes: Processes, tasks: int, slots: int, seconds: float,
                      interval: float) -> dict:
    home = root / "home"
    env = home_env(home)
    log_file = root / "master.log"
    job = write_job(root / "sleeper", SLEEPING_MAIN)
    params = write_params(root / "params.json", tasks)
    submitted, submit_s = sparecycles(["submit", str(job), "--params", str(params), "--json", "--no-start"], env)
    info = json.loads(submitted.stdout)
    if info["tasks"] != tasks:
        raise BenchError(f"submit queued {info['tasks']} tasks, not {tasks}")

    master = start_master(processes, env, log_file, slots)
    try:
        samples = sample_rss(master, seconds, interval)
    except BenchError as exc:
        raise BenchError(f"{exc}\ndispatcher log ends:\n{tail(log_file)}") from None
    stopped = Processes.stop(master)

    # status runs after the dispatcher has stopped, so it times the query and
    # the JSON, not contention for the queue's lock.
    status_times = []
    for _ in range(STATUS_REPEATS):
        status, seconds_taken = sparecycles(["status", info["job"], "--json"], env)
        status_times.append(seconds_taken)
    report = json.loads(status.stdout)
    counts = report["counts"]
    done = counts.get("done", 0)
    results_ok = count_results(Path(info["results"]), tasks)

    problems = []
    if stopped.code != 0:
        problems.append(f"the dispatcher exited {stopped.code} on SIGTERM")
    if stopped.survivors:
        problems.append(f"task processes {stopped.survivors} outlived the dispatcher")
    if counts.get("failed") or counts.get("cancelled"):
        failed = [t for t in report["tasks"] if t["status"] in ("failed", "cancelled")]
        problems.append(f"{len(failed)} tasks failed or were cancelled, e.g. {failed[0]}")
    if counts.get("running") or counts.get("dispatched"):
        problems.append(f"tasks still marked in flight after the dispatcher stopped: {counts}")
    if done == 0:
        problems.append("no task finished during the sampling window")
    if results_ok != done:
        problems.append(f"{done} tasks done but {results_ok} results correct in {info['results']}")
    if problems:
        raise BenchError("; ".join(problems) + f"\ndispatcher log ends:\n{tail(log_file)}")
    return {**describe(samples), "submit_seconds": submit_s, "tasks_done": done, "counts": counts,
            "shutdown_seconds": stopped.seconds, "status_seconds": median(status_times),
            "status_seconds_all": status_times, "status_json_bytes": len(status.stdout.encode())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="parameter sets in the job")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to sample the working dispatcher")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between RSS samples")
    parser.add_argument("--idle-seconds", type=float, default=5.0,
                        help="how long to sample the baseline dispatcher with an empty queue")
    parser.add_argument("--json", action="store_true", help="end with a one-line JSON summary")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (for debugging)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.slots < 1 or min(args.seconds, args.interval, args.idle_seconds) <= 0:
        parser.error("--tasks and --slots must be at least 1, durations more than 0")
    exit_cleanly_on_sigterm()

    info = machine_info()
    print(f"SpareCycles dispatcher memory: {args.tasks} queued tasks, {args.slots} slots, "
          f"RSS of the dispatcher process alone every {args.interval:g} s for {args.seconds:g} s")
    print_machine_info(info)
    try:
        with bench_workspace("sparecycles-bench-memory-", keep=args.keep) as (root, processes):
            bare = baseline_bare(processes, args.interval)
            print(f"baseline, bare interpreter (sleep 3):   peak {bare['peak_mb']:6.1f} MB, "
                  f"median {bare['median_mb']:6.1f} MB ({bare['samples']} samples)", flush=True)
            idle = baseline_idle_dispatcher(root, processes, args.slots, args.idle_seconds, args.interval)
            print(f"baseline, dispatcher with empty queue:  peak {idle['peak_mb']:6.1f} MB, "
                  f"median {idle['median_mb']:6.1f} MB ({idle['samples']} samples)", flush=True)
            loaded = loaded_dispatcher(root, processes, args.tasks, args.slots, args.seconds, args.interval)
    except BenchError as exc:
        print(f"\nBROKEN: {exc}", file=sys.stderr)
        return 1

    met = loaded["peak_mb"] < TARGET_PEAK_MB
    print(f"dispatcher with {args.tasks} queued:       peak {loaded['peak_mb']:6.1f} MB, "
          f"median {loaded['median_mb']:6.1f} MB ({loaded['samples']} samples; first {loaded['first_mb']:.1f}, "
          f"last {loaded['last_mb']:.1f} MB)")
    print(f"  over the idle dispatcher: peak +{loaded['peak_mb'] - idle['peak_mb']:.1f} MB; "
          f"over a bare interpreter: peak +{loaded['peak_mb'] - bare['peak_mb']:.1f} MB")
    print(f"tasks finished during the {args.seconds:g} s window: {loaded['tasks_done']} "
          f"({loaded['tasks_done'] / args.seconds:.1f}/s; queue after stop: {loaded['counts']})")
    print(f"submit of {args.tasks} parameter sets (whole CLI call): {loaded['submit_seconds']:.2f} s")
    print(f"status JOB --json on that job: {loaded['status_seconds']:.2f} s (median of {STATUS_REPEATS}; "
          f"{loaded['status_json_bytes'] / MB:.1f} MB of JSON)")
    print(f"dispatcher shutdown on SIGTERM: {loaded['shutdown_seconds']:.2f} s")
    print(f"target: peak < {TARGET_PEAK_MB:g} MB  -> {'MET' if met else 'NOT MET'}")
    print(f"load average at end {loadavg()}")
    if args.json:
        print(json.dumps({
            "benchmark": "dispatcher_memory", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": info,
            "tasks": args.tasks, "slots": args.slots, "seconds": args.seconds, "interval": args.interval,
            "loadavg_at_end": loadavg(), "baseline_bare": bare, "baseline_idle_dispatcher": idle,
            "loaded_dispatcher": loaded, "target_peak_mb": TARGET_PEAK_MB, "target_met": met,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
