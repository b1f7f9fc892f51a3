"""Per-task overhead of SpareCycles' local pool against bare process spawns.

Runs the same trivial ``main.py`` TASKS times in two ways, with the same
number of processes in flight (SLOTS):

* bare: ``sys.executable main.py '{"i": k}'`` spawned directly, SLOTS at a
  time, all in one folder: the least any runner could do;
* SpareCycles: ``master --slots SLOTS --until-idle 2`` started as a child, then
  ``submit --no-start`` and ``wait --quiet``, timed from just before submit
  until wait returns. Every task gets its own copy of the job folder, runs
  under the dispatcher's wrapper, and has its results collected.

SpareCycles runs twice per repeat: with its tasks in the bubblewrap sandbox
(``sandbox = "on"``, what a master's own cores do by default where bwrap
exists) and without it (``"off"``). The sandbox's own cost per task is
``(T_on - T_off) * SLOTS / TASKS`` (target: under 30 ms).

The per-task overhead is the extra wall time each task costs a slot:
``(T_sparecycles - T_bare) * SLOTS / TASKS``, median over the repeats. The
kinds of run rotate (bare first in the first repeat, then each kind in turn) so drift in the machine's load hits both alike. Every run's results
are checked file by file, so a broken run cannot look fast.

    .venv/bin/python bench/local_overhead.py [--tasks 500] [--slots 2] [--repeats 3] [--json]

Exit status: 0 when every run completed correctly (whether or not the target
is met: this is a measurement, not a test), 1 when something broke.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
from _common import (  # noqa: E402
    TRIVIAL_MAIN,
    BenchError,
    Processes,
    bare_spawns,
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
    wait_for_job,
    write_job,
    write_params,
)

# The marker SpareCycles writes into every collected results folder
# (trayapp.master.results.MARKER_FILE), spelled out: this script reads results as a user would.
MARKER_FILE = ".sparecycles.json"
TARGET_MS = 20.0
SANDBOX_TARGET_MS = 30.0
KINDS = ("bare", "sandbox-off", "sandbox-on")
UNTIL_IDLE_S = 2.0


def run_sparecycles(root: Path, job: Path, params: Path, tasks: int, slots: int, processes: Processes,
                    repeat: int, task_nice: int | None, sandbox: str) -> dict:
    """One job of TASKS tasks through a fresh home: dispatcher, submit, wait."""
    home = root / f"home-{repeat}-sandbox-{sandbox}"
    env = home_env(home)
    home.mkdir(parents=True, exist_ok=True)
    settings = f'sandbox = "{sandbox}"\n' + (f"nice = {task_nice}\n" if task_nice is not None else "")
    (home / "config.toml").write_text(settings, encoding="utf-8")
    log_file = root / f"master-{repeat}-sandbox-{sandbox}.log"
    # The dispatcher starts first, as a user who keeps one running would have it;
    # its start-up (imports, opening the queue) overlaps the submit call.
    master = start_master(processes, env, log_file, slots, until_idle=UNTIL_IDLE_S)
    t0, t0_epoch = time.perf_counter(), time.time()
    submitted, submit_s = sparecycles(["submit", str(job), "--params", str(params), "--json", "--no-start"], env)
    info = json.loads(submitted.stdout)
    wait_code, wait_err = wait_for_job(processes, info["job"], env, master, timeout=max(120.0, tasks * 0.5))
    elapsed = time.perf_counter() - t0
    end_epoch = time.time()
    # Read now, while the dispatcher idles before exiting: its own CPU time
    # (not its tasks'), i.e. what the dispatcher itself costs per task.
    dispatcher_cpu_s = _own_cpu_seconds(master.pid)

    try:
        # It exits by itself once the queue has been empty for UNTIL_IDLE_S.
        master_code = master.wait(timeout=UNTIL_IDLE_S + 30)
    except subprocess.TimeoutExpired:
        master_code = Processes.stop(master).code
    status, _ = sparecycles(["status", info["job"], "--json"], env)
    counts = json.loads(status.stdout)["counts"]
    ok = count_results(Path(info["results"]), tasks)
    problems = []
    if wait_code != 0:
        problems.append(f"wait exited {wait_code}: {wait_err.strip()}")
    if master_code != 0:
        problems.append(f"the dispatcher exited {master_code}")
    if counts.get("done") != tasks:
        problems.append(f"task counts {counts}")
    if ok != tasks:
        problems.append(f"{ok}/{tasks} results correct in {info['results']}")
    if problems:
        raise BenchError("SpareCycles run: " + "; ".join(problems) + f"\ndispatcher log ends:\n{tail(log_file)}")
    first_result, last_collected = _result_times(Path(info["results"]), tasks)
    return {"seconds": elapsed, "submit_seconds": submit_s, "results_ok": ok,
            "dispatcher_cpu_ms_per_task": dispatcher_cpu_s / tasks * 1000 if dispatcher_cpu_s is not None else None,
            "first_result_after_s": first_result - t0_epoch, "wait_returned_after_last_s": end_epoch - last_collected}


def _own_cpu_seconds(pid: int) -> float | None:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def _result_times(results: Path, tasks: int) -> tuple[float, float]:
    """When the first task wrote its output, and when the last result was
    collected (from the marker SpareCycles writes beside every task's results):
    together they separate the run's fixed costs (start-up, the end of
    ``wait``) from the per-task ones."""
    first = min((results / str(i) / f"out-{i}.txt").stat().st_mtime for i in range(tasks))
    last = max(json.loads((results / str(i) / MARKER_FILE).read_text())["collected"] for i in range(tasks))
    return first, last


def warm_up(root: Path, slots: int) -> None:
    """Load the interpreter, the project and the task script into the page
    cache, so the first timed run is not penalised for being first."""
    bare_spawns(root / "warmup-bare", 4 * slots, slots)
    sparecycles(["--version"], home_env(root / "warmup-home"))


def print_repeat(result: dict, tasks: int) -> None:
    bare, spare, boxed = result["bare"], result["sparecycles"], result["sandboxed"]
    print(f"repeat {result['repeat']} ({' then '.join(result['order'])}): "
          f"bare {bare['seconds']:6.2f} s ({bare['seconds'] / tasks * 1000:5.1f} ms/task wall), "
          f"sparecycles {spare['seconds']:6.2f} s ({spare['seconds'] / tasks * 1000:5.1f} ms/task wall), "
          f"sandboxed {boxed['seconds']:6.2f} s ({boxed['seconds'] / tasks * 1000:5.1f} ms/task wall); "
          f"overhead {result['overhead_ms']:5.1f} ms/task, sandbox +{result['sandbox_ms']:5.1f} ms/task  "
          f"[results correct: bare {bare['results_ok']}/{tasks}, sparecycles {spare['results_ok']}/{tasks}, "
          f"sandboxed {boxed['results_ok']}/{tasks}]")
    cpu = spare["dispatcher_cpu_ms_per_task"]
    print(f"    sparecycles: submit call {spare['submit_seconds'] * 1000:.0f} ms; first result written "
          f"{spare['first_result_after_s']:.2f} s after submit began; wait returned "
          f"{spare['wait_returned_after_last_s']:.2f} s after the last result was collected; dispatcher's own CPU "
          f"{'?' if cpu is None else f'{cpu:.1f}'} ms/task (its start-up included)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--slots", type=int, default=2, help="processes in flight, for both runners")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--task-nice", type=int, metavar="N",
                        help="niceness of SpareCycles' tasks (its config's 'nice'; default: SpareCycles' default, "
                             "10). 0 isolates the pool's own costs: the bare spawns always run at the "
                             "benchmark's niceness, and niced tasks lose CPU to any other load on the machine")
    parser.add_argument("--json", action="store_true", help="end with a one-line JSON summary")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (for debugging)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.slots < 1 or args.repeats < 1:
        parser.error("--tasks, --slots and --repeats must be at least 1")
    exit_cleanly_on_sigterm()

    info = machine_info()
    nice = "SpareCycles' default" if args.task_nice is None else args.task_nice
    print(f"SpareCycles local-pool overhead: {args.tasks} trivial tasks, {args.slots} slots, "
          f"{args.repeats} repeats, task niceness {nice}")
    print_machine_info(info)

    runs: list[dict] = []
    try:
        with bench_workspace("sparecycles-bench-overhead-", keep=args.keep) as (root, processes):
            job = write_job(root / "trivial", TRIVIAL_MAIN)
            params = write_params(root / "params.json", args.tasks)
            warm_up(root, args.slots)
            for repeat in range(1, args.repeats + 1):
                shift = (repeat - 1) % len(KINDS)
                order = KINDS[shift:] + KINDS[:shift]
                result = {"repeat": repeat, "order": list(order)}
                for kind in order:
                    if kind == "bare":
                        result["bare"] = bare_spawns(root / f"bare-{repeat}", args.tasks, args.slots)
                    else:
                        sandbox = kind.split("-")[1]
                        result["sparecycles" if sandbox == "off" else "sandboxed"] = run_sparecycles(
                            root, job, params, args.tasks, args.slots, processes, repeat, args.task_nice, sandbox)
                bare_s, spare_s = result["bare"]["seconds"], result["sparecycles"]["seconds"]
                result["overhead_ms"] = (spare_s - bare_s) * args.slots / args.tasks * 1000
                result["sandbox_ms"] = (result["sandboxed"]["seconds"] - spare_s) * args.slots / args.tasks * 1000
                runs.append(result)
                print_repeat(result, args.tasks)
    except BenchError as exc:
        print(f"\nBROKEN: {exc}", file=sys.stderr)
        return 1

    bare_wall = median([r["bare"]["seconds"] for r in runs]) / args.tasks * 1000
    spare_wall = median([r["sparecycles"]["seconds"] for r in runs]) / args.tasks * 1000
    overhead = median([r["overhead_ms"] for r in runs])
    sandbox_cost = median([r["sandbox_ms"] for r in runs])
    met = overhead <= TARGET_MS
    print()
    print(f"per-task wall time (median of {args.repeats}): bare {bare_wall:.1f} ms, sparecycles {spare_wall:.1f} ms "
          f"(wall time / tasks, {args.slots} in flight)")
    print(f"per-task overhead (median of {args.repeats}): {overhead:.1f} ms "
          f"= (T_sparecycles - T_bare) x {args.slots} slots / {args.tasks} tasks")
    print(f"target: <= {TARGET_MS:g} ms/task  -> {'MET' if met else 'NOT MET'}")
    print(f"the sandbox's cost per task (median of {args.repeats}): {sandbox_cost:+.1f} ms "
          f"= (T_sandboxed - T_sparecycles) x {args.slots} slots / {args.tasks} tasks; "
          f"target < {SANDBOX_TARGET_MS:g} ms -> {'MET' if sandbox_cost < SANDBOX_TARGET_MS else 'NOT MET'}")
    print(f"load average at end {loadavg()} (other load inflates the figures, the niced tasks' most)")
    if args.json:
        print(json.dumps({
            "benchmark": "local_overhead", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": info,
            "tasks": args.tasks, "slots": args.slots, "repeats": args.repeats, "task_nice": args.task_nice,
            "loadavg_at_end": loadavg(), "runs": runs,
            "bare_ms_per_task_wall": bare_wall, "sparecycles_ms_per_task_wall": spare_wall,
            "overhead_ms_per_task": overhead, "target_ms_per_task": TARGET_MS, "target_met": met,
            "sandbox_ms_per_task": sandbox_cost, "sandbox_target_ms_per_task": SANDBOX_TARGET_MS,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
