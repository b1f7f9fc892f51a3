"""Warm starts: a small Brian task through the pool against ``python main.py`` cold.

The task: 100 leaky neurons with noise, 50 ms of biological time, Brian's
``numpy`` target (then its ``cython`` target with a warm compiler cache). In
one run, for each target:

* cold: ``python main.py '{"i": k}'`` REPEATS_COLD times one after the other,
  in one folder (for Cython, after one untimed run that fills its cache): the
  median wall time is what one task costs started fresh;
* pool, warm: a master's own cores (``master --slots SLOTS``, sandbox on) run
  TASKS such tasks; per-task cost = wall time from submit to ``wait`` returning,
  times SLOTS, divided by TASKS. Every slot's first task starts cold while its
  warm parent imports Brian: that is counted, as a user would pay it. For
  Cython, an untimed job first fills each slot's compiler cache;
* pool, cold: the same with ``SPARECYCLES_WARM=off`` (every task a fresh
  interpreter, as before warm starts): the context.

Target: pool warm per-task cost <= 0.4 of a cold start. Every task's result
file is checked, so a broken run cannot look fast.

    .venv/bin/python bench/warm_start.py [--tasks 24] [--slots 1] [--cold-runs 5] [--targets numpy,cython]

Exit status: 0 when every run completed correctly (target met or not), 1 when something broke.
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

from _common import (  # noqa: E402
    PYTHON,
    BenchError,
    Processes,
    bench_workspace,
    count_results,
    exit_cleanly_on_sigterm,
    home_env,
    machine_info,
    median,
    print_machine_info,
    sparecycles,
    start_master,
    tail,
    wait_for_job,
    write_job,
)

TARGET_RATIO = 0.4
UNTIL_IDLE_S = 3.0

BRIAN_MAIN = """
import json, os, sys
from brian2 import *
p = json.loads(sys.argv[1])
prefs.codegen.target = p["target"]
G = NeuronGroup(100, "dv/dt = -v/(10*ms) + 0.8*xi/sqrt(ms) : 1", threshold="v>1", reset="v=0", method="euler")
M = SpikeMonitor(G)
run(50*ms)
os.makedirs("results", exist_ok=True)
with open(f"results/out-{p['i']}.txt", "w") as fh:
    fh.write(str(p["i"]))
with open(f"results/spikes-{p['i']}.txt", "w") as fh:
    fh.write(str(M.num_spikes))
"""


def cold_runs(folder: Path, runs: int, target: str) -> list[float]:
    """``python main.py`` one after the other; wall seconds of each (after one untimed run)."""
    write_job(folder, BRIAN_MAIN)
    # Its own Cython cache, filled by the untimed first run, as a slot's is.
    (folder / "brian_preferences").write_text(f"[codegen.runtime.cython]\ncache_dir = {str(folder / 'cache')!r}\n")
    times = []
    for k in range(runs + 1):
        t0 = time.perf_counter()
        done = subprocess.run([PYTHON, "main.py", json.dumps({"i": k, "target": target})], cwd=folder,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if done.returncode != 0 or (folder / "results" / f"out-{k}.txt").read_text() != str(k):
            raise BenchError(f"cold run {k} failed ({done.returncode}): {done.stderr[-800:]}")
        if k:
            times.append(elapsed)
    return times


def pool_run(root: Path, processes: Processes, tasks: int, slots: int, target: str, *, warm: bool) -> dict:
    name = f"{target}-{'warm' if warm else 'cold'}"
    home = root / f"home-{name}"
    home.mkdir(parents=True)
    (home / "config.toml").write_text('sandbox = "on"\n', encoding="utf-8")
    env = home_env(home)
    if not warm:
        env["SPARECYCLES_WARM"] = "off"
    log_file = root / f"master-{name}.log"
    job = write_job(root / f"job-{name}", BRIAN_MAIN)
    if target == "cython":  # every slot's compiler cache (kept in the home's spool) filled first, untimed
        one_job(root, processes, env, log_file, job, f"{name}-fill", 2 * slots, target, slots)
    seconds = one_job(root, processes, env, log_file, job, name, tasks, target, slots)
    return {"seconds": seconds, "per_task_s": seconds * slots / tasks}


def one_job(root: Path, processes: Processes, env: dict, log_file: Path, job: Path, name: str, tasks: int,
            target: str, slots: int) -> float:
    """One job through a dispatcher started for it (as in bench/local_overhead.py), timed from submit."""
    master = start_master(processes, env, log_file, slots, until_idle=UNTIL_IDLE_S)
    params = root / f"params-{name}.json"
    params.write_text(json.dumps([{"i": i, "target": target} for i in range(tasks)]))
    t0 = time.perf_counter()
    submitted, _ = sparecycles(["submit", str(job), "--params", str(params), "--json", "--no-start"], env)
    info = json.loads(submitted.stdout)
    code, err = wait_for_job(processes, info["job"], env, master, timeout=max(300.0, tasks * 20.0))
    elapsed = time.perf_counter() - t0
    try:
        master.wait(timeout=UNTIL_IDLE_S + 60)
    except subprocess.TimeoutExpired:
        Processes.stop(master)
    ok = count_results(Path(info["results"]), tasks)
    if code != 0 or ok != tasks:
        raise BenchError(f"pool run {name}: wait exited {code} ({err.strip()}), {ok}/{tasks} results correct\n"
                         f"dispatcher log ends:\n{tail(log_file)}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=24)
    # One slot by default: on a small shared machine, two slots' tasks compete for the
    # cores with each other, which the single cold run they are compared with does not.
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--targets", default="numpy,cython")
    parser.add_argument("--json", action="store_true", help="end with a one-line JSON summary")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    print(f"Warm starts: {args.tasks} small Brian tasks (100 neurons, 50 ms) through {args.slots} slots "
          f"of this PC, against {args.cold_runs} cold `python main.py` runs")
    print_machine_info(machine_info())
    summary = {}
    try:
        with bench_workspace("sparecycles-bench-warm-", keep=args.keep) as (root, processes):
            for target in args.targets.split(","):
                cold = cold_runs(root / f"cold-{target}", args.cold_runs, target)
                warm = pool_run(root, processes, args.tasks, args.slots, target, warm=True)
                pool_cold = pool_run(root, processes, args.tasks, args.slots, target, warm=False)
                cold_s = median(cold)
                ratio = warm["per_task_s"] / cold_s
                summary[target] = {"cold_s": cold_s, "cold_runs_s": cold, "pool_warm_per_task_s": warm["per_task_s"],
                                   "pool_cold_per_task_s": pool_cold["per_task_s"], "ratio": ratio,
                                   "loadavg": os.getloadavg()}
                print(f"{target:6}: cold `python main.py` median {cold_s:.2f} s "
                      f"(runs {', '.join(f'{t:.2f}' for t in cold)}); through the pool, warm: "
                      f"{warm['per_task_s']:.2f} s/task ({warm['seconds']:.1f} s wall), cold "
                      f"(SPARECYCLES_WARM=off): {pool_cold['per_task_s']:.2f} s/task "
                      f"({pool_cold['seconds']:.1f} s wall); warm/cold start = {ratio:.2f} "
                      f"(target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'NOT met'}); "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    except BenchError as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
